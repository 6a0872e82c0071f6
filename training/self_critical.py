"""Self-critical training: fine-tune the decoder on the caption metric itself.

Cross-entropy teaches the decoder to predict the next reference word given the reference
prefix; at test time it extends its own prefixes and is scored with CIDEr. Self-critical
training (Rennie et al. 2017) closes that gap with a policy gradient: for every image it takes
several of the decoder's own captions, scores each with CIDEr-D against the image's references,
and raises the log-probability of those that beat the image's mean, lowering the others.

The candidates are the n-best list of the same beam search the service runs (as in the M2
Transformer's training), not random samples: this decoder is trained with label smoothing, so
its samples wander into rare words, and learning from them made dev captions worse
(docs/experiments.md). The baseline of a candidate is the mean reward of its image's other
candidates.

Candidates come from the NumPy decoder (`captioning.search.beam_search`); the gradient step
re-scores them with the Keras decoder under teacher forcing, in one compiled function.
`run_self_critical` is the pipeline's phase: it fine-tunes the best cross-entropy weights,
scores every epoch on dev, and checkpoints so that `--resume` continues it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from captioning.bundle import atomic_write
from captioning.decoder_step import DecoderWeights
from captioning.search import beam_search
from captioning.search_settings import (
    DEFAULT_LENGTH_PENALTY,
    DEFAULT_NO_REPEAT_NGRAM,
    SearchSettings,
)
from captioning.text import END_ID, PAD_ID, START_ID, Vocabulary
from training.callbacks import DevSelection, WeightAverage, averaged_weights
from training.cider import CiderD
from training.config import EXPORT_RESERVE_MINUTES, TrainConfig
from training.data import LENGTH_BUCKET, Split
from training.features import Features
from training.modeling.decoder import DecoderConfig, build_decoder
from training.state import (
    BEST_WEIGHTS_FILE,
    SELF_CRITICAL,
    SELF_CRITICAL_AVERAGE_FILE,
    SELF_CRITICAL_FILE,
)

logger = logging.getLogger(__name__)

LOG_EVERY_BATCHES = 20


@dataclass(frozen=True)
class SelfCriticalConfig:
    learning_rate: float = 5e-5
    candidates_per_image: int = 5  # the beam size, and the n-best list's length
    batch_images: int = 32
    clipnorm: float = 5.0
    length_penalty: float = DEFAULT_LENGTH_PENALTY  # the trainer passes its own
    no_repeat_ngram: int = DEFAULT_NO_REPEAT_NGRAM


class SelfCriticalTrainer:
    """Owns the optimizer and the compiled gradient step for one decoder."""

    def __init__(
        self,
        model: keras.Model,
        vocabulary: Vocabulary,
        references: Sequence[Sequence[Sequence[str]]],
        max_length: int,
        config: SelfCriticalConfig,
        seed: int,
    ) -> None:
        """`references[i]`: the reference captions (lists of words) of training image i."""
        if config.candidates_per_image < 2:
            raise ValueError("self-critical training needs at least 2 candidates per image")
        self.model, self.vocabulary, self.config = model, vocabulary, config
        self.max_length = max_length
        self.cider = CiderD(references)
        self.rng = np.random.default_rng(seed)
        self.optimizer = keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm)
        self.optimizer.build(model.trainable_variables)
        self._step = self._compile_step()

    def _compile_step(self):
        model, optimizer = self.model, self.optimizer

        # No input signature: one graph per padded caption length (a multiple of LENGTH_BUCKET),
        # whose static shape makes a batch about a third faster (docs/experiments.md).
        @tf.function(reduce_retracing=False)
        def step(grid, pooled, inputs, targets, advantages, entities=None):
            with tf.GradientTape() as tape:
                # No dropout: the gradient must be that of the decoder that made the candidates.
                model_inputs = [grid, pooled, inputs]
                if entities is not None:
                    model_inputs.append(entities)
                logits = model(model_inputs, training=False)
                log_probs = tf.nn.log_softmax(logits)
                chosen = tf.gather(log_probs, targets, batch_dims=2)  # (rows, steps)
                mask = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
                per_word = tf.reduce_sum(chosen * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1)
                loss = -tf.reduce_mean(advantages * per_word)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss

        return step

    def candidates(
        self, grid: np.ndarray, pooled: np.ndarray, entities: np.ndarray | None = None
    ) -> np.ndarray:
        """The n-best captions of each image under the current weights: (images * n, steps)
        ids, each ending with <end> and padding. An image with fewer than n finished beams
        (tiny vocabularies) repeats its list. `entities`: each image's concept, for a decoder
        conditioned on concepts."""
        n, config = self.config.candidates_per_image, self.config
        results = beam_search(
            DecoderWeights.from_model(self.model),
            grid,
            pooled,
            settings=SearchSettings(
                max_length=self.max_length,
                beam_size=n,
                num_captions=n,
                length_penalty=config.length_penalty,
                no_repeat_ngram=config.no_repeat_ngram,
            ),
            entities=entities,
        )
        rows = [
            [*per_image[k % len(per_image)].token_ids, END_ID]
            for per_image in results
            for k in range(n)
        ]
        steps = -(-max(map(len, rows)) // LENGTH_BUCKET) * LENGTH_BUCKET
        ids = np.full((len(rows), steps), PAD_ID, np.int32)
        for row, words in enumerate(rows):
            ids[row, : len(words)] = words
        return ids

    def rewards(self, images: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """CIDEr-D of every candidate; rows come `candidates_per_image` per image."""
        n = self.config.candidates_per_image
        return np.array(
            [
                self.cider.score(int(images[row // n]), self.vocabulary.decode(ids))
                for row, ids in enumerate(candidates.tolist())
            ],
            np.float32,
        )

    def advantages(self, rewards: np.ndarray) -> np.ndarray:
        """Each candidate's reward minus the mean reward of its image's other candidates."""
        n = self.config.candidates_per_image
        per_image = rewards.reshape(-1, n)
        others = (per_image.sum(axis=1, keepdims=True) - per_image) / (n - 1)
        return (per_image - others).reshape(-1)

    def train_batch(
        self,
        images: np.ndarray,
        grid: np.ndarray,
        pooled: np.ndarray,
        entities: np.ndarray | None = None,
    ) -> dict:
        """One gradient step on the candidates of `images` (indices into the references)."""
        n = self.config.candidates_per_image
        targets = self.candidates(grid, pooled, entities)
        rewards = self.rewards(images, targets)
        inputs = np.concatenate([np.full((len(targets), 1), START_ID, np.int32), targets], 1)
        extra = () if entities is None else (np.repeat(entities[:, None], n, axis=1),)
        loss = self._step(
            grid,
            pooled,
            inputs[:, :-1].reshape(len(images), n, -1),
            targets,
            self.advantages(rewards),
            *extra,
        )
        return {"reward": float(rewards.mean()), "loss": float(loss)}

    def train_epoch(
        self,
        features: Features,
        deadline: float | None = None,
        after_batch: Callable[[], None] | None = None,
    ) -> dict:
        """One pass over the images in random order, or until `deadline` (a time.time());
        `after_batch` runs after every gradient step (the weight average's update). A decoder
        conditioned on concepts is given each photo's (`features.entities`)."""
        order = self.rng.permutation(len(features))
        size = self.config.batch_images
        total = -(-len(order) // size)
        started, rewards = time.time(), []
        for start in range(0, len(order), size):
            if deadline is not None and time.time() > deadline:
                logger.info("self-critical: time is up after %d of %d batches", len(rewards), total)
                break
            images = np.sort(order[start : start + size])
            grid = np.asarray(features.grid[images], np.float32)
            concepts = None if features.entities is None else features.entities[images]
            pooled = features.pooled[images]
            rewards.append(self.train_batch(images, grid, pooled, concepts)["reward"])
            if after_batch is not None:
                after_batch()
            if len(rewards) % LOG_EVERY_BATCHES == 0:
                logger.info(
                    "self-critical batch %d/%d: mean CIDEr-D of the candidates %.3f",
                    len(rewards),
                    total,
                    float(np.mean(rewards[-LOG_EVERY_BATCHES:])),
                )
        return {
            "batches": len(rewards),
            "complete": len(rewards) == total,
            "mean_reward": float(np.mean(rewards)) if rewards else float("nan"),
            "minutes": (time.time() - started) / 60,
        }


# --- the pipeline's phase ------------------------------------------------------------------------


def run_self_critical(
    config: TrainConfig,
    decoder: keras.Model,
    decoder_config: DecoderConfig,
    vocabulary: Vocabulary,
    max_words: int,
    split: Split,
    features: Features,
    selection: DevSelection,
) -> None:
    """Fine-tune the best cross-entropy weights (unless configured off); `decoder` ends up
    holding the last weights trained."""
    if config.self_critical_minutes <= 0 or config.self_critical_epochs <= 0:
        return
    best = selection.checkpoint_dir / BEST_WEIGHTS_FILE
    if best.is_file():  # fine-tune the best cross-entropy weights, not the last ones
        decoder.load_weights(best)
    # On a single-device copy, built outside any distribution strategy: its compiled gradient
    # step updates plain variables, and the phase is short.
    tuned = build_decoder(decoder_config)
    tuned.set_weights(decoder.get_weights())
    selection.set_model(tuned)
    fine_tune_self_critical(config, tuned, vocabulary, max_words, split, features, selection)
    decoder.set_weights(tuned.get_weights())


def _self_critical_average(
    config: TrainConfig, decoder: keras.Model, checkpoint_dir: Path
) -> WeightAverage | None:
    if not config.self_critical_weight_average:
        return None
    average = WeightAverage(
        config.self_critical_weight_average,
        checkpoint_dir / SELF_CRITICAL_AVERAGE_FILE,
        warmup=False,
    )
    average.set_model(decoder)
    return average


def _deadline(config: TrainConfig, selection: DevSelection) -> float:
    """When the phase stops: its own minutes, or the run's budget less the export's reserve."""
    remaining = config.self_critical_minutes - selection.state.self_critical_minutes
    deadline = time.time() + remaining * 60
    if config.time_budget_minutes is not None:
        budget_minutes = config.time_budget_minutes - EXPORT_RESERVE_MINUTES
        deadline = min(deadline, selection.started + budget_minutes * 60)
    return deadline


def fine_tune_self_critical(
    config: TrainConfig,
    decoder: keras.Model,
    vocabulary: Vocabulary,
    max_words: int,
    split: Split,
    features: Features,
    selection: DevSelection,
) -> None:
    """Self-critical epochs, each scored on dev (and kept if best), until
    `self_critical_epochs` are done or its minutes (or the budget) run out.

    The decoder's weights are checkpointed after every epoch, so `--resume` continues this
    phase; its optimizer restarts, as Adam's moments settle within a few batches.
    """
    state, checkpoint_dir = selection.state, selection.checkpoint_dir
    average = _self_critical_average(config, decoder, checkpoint_dir)
    if state.in_self_critical:
        decoder.load_weights(checkpoint_dir / SELF_CRITICAL_FILE)
        logger.info("resuming self-critical training after %d epoch(s)", state.self_critical_epochs)
    else:
        state.phase, state.self_critical_epochs, state.self_critical_minutes = SELF_CRITICAL, 0, 0.0
        # A fresh phase: the average starts from these (cross-entropy) weights.
        (checkpoint_dir / SELF_CRITICAL_AVERAGE_FILE).unlink(missing_ok=True)
    if average is not None:
        average.on_train_begin()
    deadline = _deadline(config, selection)
    trainer = SelfCriticalTrainer(
        decoder,
        vocabulary,
        split.captions,
        max_words,
        SelfCriticalConfig(
            learning_rate=config.self_critical_learning_rate,
            length_penalty=config.length_penalty,
            no_repeat_ngram=config.no_repeat_ngram,
        ),
        seed=config.seed + state.epoch + state.self_critical_epochs,
    )
    after_batch = (lambda: average.on_train_batch_end(0)) if average is not None else None
    while state.self_critical_epochs < config.self_critical_epochs and time.time() < deadline:
        started = time.time()
        result = trainer.train_epoch(features, deadline, after_batch)
        if not result["batches"]:
            break
        state.self_critical_epochs += 1
        with averaged_weights(average):  # score (and keep, if best) the averaged weights
            selection.score_and_keep_best(
                state.epoch + state.self_critical_epochs - 1,
                {"mean_reward": result["mean_reward"], "batches": result["batches"]},
                phase=SELF_CRITICAL,
                learning_rate=config.self_critical_learning_rate,
            )
        state.self_critical_minutes += (time.time() - started) / 60
        atomic_write(checkpoint_dir / SELF_CRITICAL_FILE, decoder.save_weights)
        if average is not None:
            average.save()
        state.save(checkpoint_dir)
