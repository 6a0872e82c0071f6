"""Training: vocabulary, cached features, teacher-forced decoder, dev-metric selection, artifacts.

    python -m training train --data ../shared/flickr8k --artifacts artifacts

Checkpoints (model, optimizer and loop state) are written every epoch to the work folder, so an
interrupted run resumes with `--resume` without losing a finished epoch. The kept model is the
epoch with the best dev CIDEr: dev loss is a poor guide to caption quality.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import captioning
from captioning.bundle import ArtifactBundle, atomic_write, write_json
from captioning.decoding import DecoderWeights
from captioning.predictor import CaptionPredictor, DecodeOptions, EncodedImages
from captioning.runtime import EncoderRuntime
from captioning.text import PAD_ID, UNKNOWN_ID, Vocabulary
from training.data import LENGTH_BUCKET, Flickr8k, Split, load_flickr8k
from training.export import export_decoder_step, export_tflite
from training.features import Features, cache_key, extract_features
from training.metrics import score_captions
from training.modeling.decoder import DecoderConfig, build_decoder, masked_caption_loss
from training.modeling.encoders import DEFAULT_ENCODER, build_encoder, get_spec
from training.modeling.keras_runtime import KerasEncoder, make_encoder_runtime
from training.self_critical import SelfCriticalConfig, SelfCriticalTrainer

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "model_checkpoint.keras"
FINAL_FILE = "model_final.keras"
BEST_WEIGHTS_FILE = "best.weights.h5"
AVERAGE_FILE = "weight_average.npz"
STATE_FILE = "train_state.json"
SELF_CRITICAL_FILE = "self_critical.weights.h5"
SELF_CRITICAL_AVERAGE_FILE = "self_critical_average.npz"
MIRRORED_TRAIN = "train_mirrored"  # the features of the mirrored training photos
# Minutes kept back from --time-budget-minutes for the LiteRT export and the final dev scoring.
EXPORT_RESERVE_MINUTES = 3.0


@dataclass
class TrainConfig:
    data_dir: Path
    artifacts_dir: Path = Path("artifacts")
    work_dir: Path = Path("work")
    backbone: str = DEFAULT_ENCODER
    encoder_weights: str | None = "imagenet"
    min_word_count: int = 5
    max_caption_words: int = 30
    embedding_dim: int = 256
    hidden_dim: int = 512
    dropout: float = 0.2  # 0.3 and 0.5 learned slower within the time budget (README)
    region_dropout: float = 0.1
    label_smoothing: float = 0.1
    learning_rate: float = 1e-3
    lr_decay: float = 0.5  # applied whenever dev CIDEr does not improve
    epoch_lr_decay: float = 0.9  # applied after every epoch (1.0: constant between plateaus)
    min_learning_rate: float = 1e-5
    clipnorm: float = 5.0
    batch_images: int = 32
    captions_per_image: int = 5
    # Cross-entropy batches show each photo mirrored (left and right swapped, in the words too)
    # half the time: features of the mirrored training photos are extracted once more.
    mirror_images: bool = False
    # Cross-entropy epochs at most. Self-critical training gains most from a model that has
    # not yet settled: after 7 epochs one self-critical epoch took dev CIDEr from 0.526 to
    # 0.556 (seeds 43 and 44: 0.517 to 0.541, 0.528 to 0.537), after 9 epochs (0.538, seed
    # 42) it lost (0.535). Evidence on dev from few runs; it also saves 4 of the 45 minutes.
    epochs: int = 7
    patience: int = 4
    time_budget_minutes: float | None = None
    eval_beam_size: int = 3
    # Beam score = log-prob / length**penalty. 1.0 (the mean log-prob per word) was chosen on
    # dev over 0.5: CIDEr +0.012 and +0.020 for two Lite1 models, and ahead on both halves of
    # dev for each; captions grew from 8.9 to 9.6 words (`evaluate --length-penalty`).
    length_penalty: float = 1.0
    no_repeat_ngram: int = 3  # decoding never repeats a trigram (0: off); chosen on dev
    # Dev scoring and export use an exponential moving average of the weights (0: off); see
    # WeightAverage.
    weight_average: float = 0.999
    # Self-critical fine-tuning on CIDEr-D after cross-entropy (see training.self_critical):
    # at most this many minutes (0: off), taken out of --time-budget-minutes, and epochs.
    self_critical_minutes: float = 7.0
    self_critical_epochs: int = 10
    self_critical_learning_rate: float = 5e-5
    # Dev scoring and export use a moving average of the self-critical weights too, anchored at
    # the cross-entropy weights it starts from (no warm-up; 0: off). Measured on the same
    # self-critical epoch (Lite1, dev CIDEr quick score, beam 3): raw weights 0.546, averages
    # with decay 0.98 / 0.99 / 0.995: 0.552 / 0.556 / 0.556.
    self_critical_weight_average: float = 0.99
    seed: int = 42
    resume: bool = False
    export_tflite: bool = True
    max_train_images: int | None = None  # for quick experiments
    strategy: str = "default"  # "default", "mirrored" or "multiworker"
    extra: dict = field(default_factory=dict)


# --- data to arrays ---------------------------------------------------------------------------


def encode_captions(
    split: Split, vocabulary: Vocabulary, per_image: int, max_words: int
) -> np.ndarray:
    """(images, per_image, max_words + 2) ids, <start> ... <end> then padding.

    Images with fewer references than `per_image` repeat theirs (cyclically).
    """
    array = np.full((len(split), per_image, max_words + 2), PAD_ID, np.int32)
    for i, references in enumerate(split.captions):
        for j in range(per_image):
            ids = vocabulary.encode(references[j % len(references)][:max_words])
            array[i, j, : len(ids)] = ids
    return array


MIRRORED_WORDS = {"left": "right", "right": "left"}


def mirror_captions(captions: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """`encode_captions` ids for the mirrored photo: "left" and "right" trade places."""
    mirrored = captions.copy()
    for word, other in MIRRORED_WORDS.items():
        word_id, other_id = vocabulary.id_of(word), vocabulary.id_of(other)
        if UNKNOWN_ID not in (word_id, other_id):
            mirrored[captions == word_id] = other_id
    return mirrored


@dataclass
class MirroredImages:
    """The features and caption ids of the mirrored photos, row for row as the originals."""

    features: Features
    captions: np.ndarray


class CaptionBatches(keras.utils.PyDataset):
    """Shuffled batches of images with all their captions: ((grid, pooled, inputs), targets).

    Images are shuffled, then sorted by caption length within pools of `POOL_BATCHES` batches,
    so that a batch pads its captions to a similar length: on a CPU the padded steps cost as
    much as real ones, and this cuts an epoch by about a third. With `mirrored`, each image of
    a batch is the mirrored photo with probability one half, drawn anew every epoch.
    """

    POOL_BATCHES = 16

    def __init__(
        self,
        features: Features,
        captions: np.ndarray,
        batch_images: int,
        seed: int,
        mirrored: MirroredImages | None = None,
    ):
        super().__init__()
        self.features, self.captions, self.batch_images = features, captions, batch_images
        self.mirrored = mirrored
        self.lengths = (captions != PAD_ID).sum(axis=2).max(axis=1)
        self.rng = np.random.default_rng(seed)
        self.batches = self._plan()
        self.mirror_masks = self._plan_mirroring()

    def _plan(self) -> list[np.ndarray]:
        order = self.rng.permutation(len(self.captions))
        pool = self.batch_images * self.POOL_BATCHES
        batches = []
        for start in range(0, len(order), pool):
            part = order[start : start + pool]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [
                part[i : i + self.batch_images] for i in range(0, len(part), self.batch_images)
            ]
        self.rng.shuffle(batches)
        return [np.sort(batch) for batch in batches]

    def _plan_mirroring(self) -> list[np.ndarray]:
        """Which rows of each batch are mirrored (drawn here so a batch is the same however
        often it is asked for)."""
        if self.mirrored is None:
            return [np.zeros(len(batch), bool) for batch in self.batches]
        return [self.rng.random(len(batch)) < 0.5 for batch in self.batches]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        rows, mirror = self.batches[index], self.mirror_masks[index]
        captions = self.captions[rows]
        used = int(self.lengths[rows].max())
        length = min(captions.shape[2], math.ceil((used - 1) / LENGTH_BUCKET) * LENGTH_BUCKET + 1)
        captions = captions[:, :, :length]
        grid = np.asarray(self.features.grid[rows], np.float32)
        pooled = self.features.pooled[rows]
        if self.mirrored is not None and mirror.any():
            flipped = rows[mirror]
            grid[mirror] = self.mirrored.features.grid[flipped]
            # `grid`, `pooled` and `captions` are fresh arrays (fancy indexing copies), so
            # writing into them leaves the originals alone.
            pooled[mirror] = self.mirrored.features.pooled[flipped]
            captions[mirror] = self.mirrored.captions[flipped, :, : captions.shape[2]]
        inputs, targets = captions[:, :, :-1], captions[:, :, 1:]
        return (grid, pooled, inputs), targets.reshape(-1, targets.shape[-1])

    def on_epoch_end(self) -> None:
        self.batches = self._plan()
        self.mirror_masks = self._plan_mirroring()

    def as_dataset(self) -> tf.data.Dataset:
        """A tf.data pipeline with the caption length left open in its signature.

        Handing the PyDataset to Keras directly would make it guess the signature from the
        first few batches; when those happen to share a length, a longer batch later crashes.
        """
        regions, channels = self.features.grid.shape[1:]
        per_image = self.captions.shape[1]
        signature = (
            (
                tf.TensorSpec((None, regions, channels), tf.float32),
                tf.TensorSpec((None, channels), tf.float32),
                tf.TensorSpec((None, per_image, None), tf.int32),
            ),
            tf.TensorSpec((None, None), tf.int32),
        )

        def generate():
            for index in range(len(self)):
                yield self[index]
            self.on_epoch_end()

        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
        # The batch count is fixed; saying so lets Keras size its epochs without a warning.
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(2)


def _keep_readable(split: Split, features: Features) -> tuple[Split, Features]:
    """Drop (after reporting, in extract_features) images whose file could not be decoded."""
    if not features.failed:
        return split, features
    failed = set(features.failed)
    keep = np.array([i for i, name in enumerate(split.image_ids) if name not in failed])
    kept_split = Split(
        split.name,
        [split.image_paths[i] for i in keep],
        [split.captions[i] for i in keep],
        [split.raw_captions[i] for i in keep],
    )
    kept = Features(
        np.asarray(features.grid[keep]),
        features.pooled[keep],
        [features.image_ids[i] for i in keep],
        [],
    )
    return kept_split, kept


# --- the loop's callbacks -----------------------------------------------------------------------


class WeightAverage(keras.callbacks.Callback):
    """An exponential moving average of the weights, updated after every training step.

    The weights of any single step carry the noise of its batch; their recent average usually
    captions better, and it makes the per-epoch dev scores (and so the selection) less noisy.
    Early on the average follows quickly: the decay is min(decay, (1 + t) / (10 + t)) at step t,
    as in tf.train.ExponentialMovingAverage; without `warmup` the decay is constant, so the
    average stays anchored at the weights it started from (self-critical fine-tuning). Training
    itself continues on the raw weights; dev scoring and the export swap the average in
    (`swapped_in`). Saved with every checkpoint, so `--resume` continues the same average.
    """

    def __init__(self, decay: float, path: Path, warmup: bool = True) -> None:
        super().__init__()
        self.decay, self.path, self.warmup = decay, path, warmup
        self.average: list[np.ndarray] | None = None
        self.updates = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.average is not None:
            return
        if self.path.is_file():
            with np.load(self.path) as stored:
                self.updates = int(stored["updates"])
                self.average = [stored[f"w{i}"] for i in range(len(stored.files) - 1)]
            logger.info("resuming the weight average after %d steps", self.updates)
        else:
            self.average = [np.array(w, np.float32) for w in self.model.get_weights()]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        decay = self.decay
        if self.warmup:
            decay = min(decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.average, self.model.get_weights(), strict=True):
            average *= decay
            average += (1 - decay) * current
        self.updates += 1

    def save(self) -> None:
        arrays = {f"w{i}": a for i, a in enumerate(self.average)}

        def write(path: Path) -> None:
            with path.open("wb") as handle:
                np.savez(handle, updates=self.updates, **arrays)

        atomic_write(self.path, write)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones again after."""
        raw = self.model.get_weights()
        self.model.set_weights(self.average)
        try:
            yield
        finally:
            self.model.set_weights(raw)


def averaged_weights(average: WeightAverage | None) -> contextlib.AbstractContextManager:
    """The model holds `average`'s weights inside the block; with no average, its own."""
    return average.swapped_in() if average is not None else contextlib.nullcontext()


class DevSelection(keras.callbacks.Callback):
    """Scores dev captions after each epoch, keeps the best weights, decays the LR on plateaus,
    stops early, and checkpoints everything needed to resume."""

    def __init__(
        self,
        config: TrainConfig,
        make_predictor,
        dev: Split,
        dev_features: Features,
        state: dict,
        started: float,
        average: WeightAverage | None = None,
    ) -> None:
        super().__init__()
        self.average = average
        self.config, self.make_predictor, self.state, self.started = (
            config,
            make_predictor,
            state,
            started,
        )
        self.dev, self.dev_encoded = (
            dev,
            EncodedImages(np.asarray(dev_features.grid, np.float32), dev_features.pooled),
        )
        self.checkpoint_dir = config.work_dir / "checkpoints"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.epoch_started = time.time()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with averaged_weights(self.average):  # score (and keep, if best) the averaged weights
            improved = self.score_and_keep_best(epoch, logs or {})
        self._adjust_learning_rate(improved)
        self.state["epoch"] = epoch + 1
        # Model + optimizer (+ average) first, then the state that points at them: a crash in
        # between resumes from the previous epoch's state and loses nothing already recorded.
        atomic_write(self.checkpoint_dir / CHECKPOINT_FILE, self.model.save)
        if self.average is not None:
            self.average.save()
        write_json(self.checkpoint_dir / STATE_FILE, self.state)
        if self.state["stale_epochs"] >= self.config.patience:
            logger.info("no dev improvement for %d epochs: stopping", self.config.patience)
            self.model.stop_training = True
        if self._next_epoch_overruns_budget(
            self.state["history"][-1]["minutes"], self.epoch_started
        ):
            logger.info(
                "another epoch would overrun the %.0f-minute budget: stopping",
                self.config.time_budget_minutes,
            )
            self.model.stop_training = True

    def score_and_keep_best(
        self,
        epoch: int,
        logs: dict,
        phase: str = "cross-entropy",
        learning_rate: float | None = None,
    ) -> bool:
        """Score the model's current weights on dev; save them if they are the best so far."""
        predictor = self.make_predictor(self.model)
        options = DecodeOptions(beam_size=self.config.eval_beam_size)
        started = time.perf_counter()
        captions = [c[0].text for c in predictor.generate(self.dev_encoded, options)]
        scores = score_captions(self.dev.raw_captions, captions, full=False)
        cider, bleu4 = float(scores["CIDEr"]), float(scores["BLEU-4"])
        if learning_rate is None:
            learning_rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        record = {
            "epoch": epoch + 1,
            "phase": phase,
            **{name: float(value) for name, value in logs.items()},  # loss, or mean reward
            "dev_BLEU-4": bleu4,
            "dev_CIDEr": cider,
            "distinct_words": len({w for c in captions for w in c.split()}),
            "learning_rate": float(learning_rate),
            "minutes": (time.time() - self.started) / 60,
            "eval_seconds": time.perf_counter() - started,
        }
        self.state["history"].append(record)
        logger.info(
            "epoch %(epoch)d (%(phase)s): dev BLEU-4 %(dev_BLEU-4).4f CIDEr %(dev_CIDEr).4f "
            "(%(distinct_words)d words) lr %(learning_rate).2e",
            record,
        )
        if cider > self.state["best_cider"]:
            self.state.update(best_cider=cider, best_epoch=epoch + 1, stale_epochs=0)
            atomic_write(self.checkpoint_dir / BEST_WEIGHTS_FILE, self.model.save_weights)
            return True
        self.state["stale_epochs"] += 1
        return False

    def _adjust_learning_rate(self, improved: bool) -> None:
        decay = self.config.epoch_lr_decay
        if not improved:
            decay *= self.config.lr_decay
            logger.info("dev CIDEr did not improve: learning rate x %.2f", self.config.lr_decay)
        if decay != 1.0:
            current = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            new_lr = max(current * decay, self.config.min_learning_rate)
            self.model.optimizer.learning_rate.assign(new_lr)

    def _next_epoch_overruns_budget(self, minutes: float, epoch_started: float) -> bool:
        """Stop while another epoch (as long as this one, dev scoring included), self-critical
        training and the export still fit in the budget, rather than noticing only once it is
        spent."""
        budget = self.config.time_budget_minutes
        if budget is None:
            return False
        epoch_minutes = (time.time() - epoch_started) / 60
        reserved = EXPORT_RESERVE_MINUTES + self.config.self_critical_minutes
        return minutes + epoch_minutes + reserved > budget


# --- the pipeline -------------------------------------------------------------------------------


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`mirrored`: every local GPU (or logical CPU device); `multiworker`: hosts from TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}: default, mirrored or multiworker")


def compile_decoder(model: keras.Model, config: TrainConfig) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm),
        loss=masked_caption_loss(config.label_smoothing),
        # Keras defaults to XLA ("auto") on TensorFlow: on a CPU it is several times slower
        # than plain graph mode, and it recompiles for every caption-length bucket.
        jit_compile=False,
    )


def run_cross_entropy(
    decoder: keras.Model,
    batches: CaptionBatches,
    callbacks: list[keras.callbacks.Callback],
    initial_epoch: int,
    epochs: int,
    distributed: bool,
) -> None:
    """Teacher-forced epochs, with the Keras callbacks called as `fit` would call them.

    On one device the batches go in one by one through `train_on_batch`: on this 2-core CPU
    that ran 1.6x faster than `fit` over a tf.data pipeline of the same batches (1.11 against
    1.79 s per batch of 32 images). Static caption lengths are not the reason: Keras traces
    `train_on_batch` with the length unknown from the second length bucket on, and graphs
    traced for each bucket's static shape (with or without the LSTM unrolled) measured the
    same within the machine's noise (0.94-1.17 s per batch). Under a distribution strategy
    `fit` stays in charge, as it splits every batch over the replicas.
    """
    if distributed:
        decoder.fit(
            batches.as_dataset(),
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=2,
        )
        return
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_progbar=True, model=decoder, verbose=2, epochs=epochs, steps=len(batches)
    )
    decoder.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        loss_sum, weight_sum = 0.0, 0
        for step in range(len(batches)):
            callback_list.on_train_batch_begin(step)
            inputs, targets = batches[step]
            logs = decoder.train_on_batch(inputs, targets, return_dict=True)
            words = int(np.count_nonzero(targets != PAD_ID))  # the loss is a mean per word
            loss_sum, weight_sum = loss_sum + logs["loss"] * words, weight_sum + words
            callback_list.on_train_batch_end(step, logs)
        batches.on_epoch_end()
        callback_list.on_epoch_end(epoch, {"loss": loss_sum / max(weight_sum, 1)})
        if decoder.stop_training:
            break
    callback_list.on_train_end()


def export_encoder(config: TrainConfig, encoder: keras.Model) -> bytes | None:
    """The encoder's LiteRT export, made before the features so that they come from it."""
    if not config.export_tflite:
        return None
    try:
        return export_tflite(encoder)
    except Exception:  # the Keras model stays usable on its own
        logger.exception("LiteRT export failed; the service will encode with TensorFlow")
        return None


def prepare_features(
    config: TrainConfig, dataset: Flickr8k, runner: EncoderRuntime
) -> dict[str, Features]:
    spec = get_spec(config.backbone)
    logger.info("features from the %s encoder", runner.name)
    features = {}
    caches = {}
    for name in ("train", "dev"):
        split = dataset.splits[name]
        key = cache_key(
            config.backbone,
            f"{config.encoder_weights}|{runner.name}",
            spec.input_size,
            split.image_paths,
        )
        caches[name] = config.work_dir / "features" / f"{config.backbone}-{key}"
        features[name] = extract_features(
            runner, split.image_paths, spec.input_size, caches[name], name
        )
    if config.mirror_images:
        features[MIRRORED_TRAIN] = extract_features(
            runner,
            dataset.splits["train"].image_paths,
            spec.input_size,
            caches["train"],
            MIRRORED_TRAIN,
            mirror=True,
        )
    return features


def train(config: TrainConfig) -> dict:
    """The whole pipeline from dataset folder to artifacts; returns the manifest."""
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    dataset = load_flickr8k(config.data_dir)
    for name in ("train", "dev"):
        if not len(dataset.splits[name]):
            raise RuntimeError(f"the {name} split has no usable images in {config.data_dir}")
    if config.max_train_images:
        train_split = dataset.splits["train"]
        n = config.max_train_images
        dataset.splits["train"] = Split(
            "train",
            train_split.image_paths[:n],
            train_split.captions[:n],
            train_split.raw_captions[:n],
        )
    spec = get_spec(config.backbone)
    encoder = build_encoder(config.backbone, config.encoder_weights)
    encoder_tflite = export_encoder(config, encoder)
    # Features from the encoder the service will run (LiteRT when exported and installed): its
    # float16 weights move them by about 0.4%, so training sees what serving computes, and it
    # extracts them about 3x faster than TensorFlow's graph mode (Lite1, 2 cores: 62 against
    # 19 images/s).
    runner = make_encoder_runtime(encoder, encoder_tflite)
    features = prepare_features(config, dataset, runner)
    train_split, train_features = _keep_readable(dataset.splits["train"], features["train"])
    dev_split, dev_features = _keep_readable(dataset.splits["dev"], features["dev"])

    vocabulary = Vocabulary.build(
        train_split.captions and [c for refs in train_split.captions for c in refs],
        config.min_word_count,
    )
    lengths = [len(c) for refs in train_split.captions for c in refs]
    max_words = min(config.max_caption_words, int(np.percentile(lengths, 99.5)))
    logger.info(
        "vocabulary: %d words (count >= %d); captions up to %d words",
        len(vocabulary),
        config.min_word_count,
        max_words,
    )
    train_captions = encode_captions(train_split, vocabulary, config.captions_per_image, max_words)
    mirrored = None
    if config.mirror_images:  # the same images are unreadable mirrored or not
        mirrored_features = _keep_readable(dataset.splits["train"], features[MIRRORED_TRAIN])[1]
        mirrored = MirroredImages(mirrored_features, mirror_captions(train_captions, vocabulary))

    decoder_config = DecoderConfig(
        vocab_size=len(vocabulary),
        feature_dim=spec.feature_dim,
        regions=spec.grid_size**2,
        embedding_dim=config.embedding_dim,
        hidden_dim=config.hidden_dim,
        dropout=config.dropout,
        region_dropout=config.region_dropout,
    )
    manifest_base = _manifest(config, spec, decoder_config, vocabulary, max_words, dataset)

    def make_predictor(model: keras.Model) -> CaptionPredictor:
        bundle = ArtifactBundle(encoder, model, vocabulary, manifest_base)
        return CaptionPredictor(bundle, encoder=KerasEncoder(encoder))

    strategy = make_strategy(config.strategy)
    logger.info(
        "distribution: %s with %d replica(s)", config.strategy, strategy.num_replicas_in_sync
    )
    manifest_base["training"]["replicas"] = strategy.num_replicas_in_sync
    checkpoint_dir = config.work_dir / "checkpoints"
    state = {"epoch": 0, "best_cider": -1.0, "best_epoch": 0, "stale_epochs": 0, "history": []}
    with strategy.scope():
        if config.resume and (checkpoint_dir / STATE_FILE).is_file():
            state = json.loads((checkpoint_dir / STATE_FILE).read_text())
            decoder = keras.saving.load_model(
                checkpoint_dir / CHECKPOINT_FILE,
                safe_mode=True,
                custom_objects={"masked_caption_loss": masked_caption_loss(config.label_smoothing)},
            )
            decoder.jit_compile = False  # see compile_decoder
            logger.info(
                "resuming after epoch %d (best dev CIDEr %.4f at epoch %d)",
                state["epoch"],
                state["best_cider"],
                state["best_epoch"],
            )
        else:
            decoder = build_decoder(decoder_config)
            compile_decoder(decoder, config)
    batches = CaptionBatches(
        train_features,
        train_captions,
        config.batch_images,
        config.seed + state["epoch"],
        mirrored,
    )
    average = None
    if config.weight_average:
        average = WeightAverage(config.weight_average, checkpoint_dir / AVERAGE_FILE)
        if state["epoch"] == 0:  # a fresh run: no average left over from another one
            (checkpoint_dir / AVERAGE_FILE).unlink(missing_ok=True)
    selection = DevSelection(
        config, make_predictor, dev_split, dev_features, state, started, average
    )
    cross_entropy_done = (
        state.get("phase") == "self-critical"
        or state["epoch"] >= config.epochs
        or state["stale_epochs"] >= config.patience
    )
    if not cross_entropy_done:
        run_cross_entropy(
            decoder,
            batches,
            [c for c in (average, selection) if c is not None],
            initial_epoch=state["epoch"],
            epochs=config.epochs,
            distributed=config.strategy != "default",
        )
    best = checkpoint_dir / BEST_WEIGHTS_FILE
    if config.self_critical_minutes > 0 and config.self_critical_epochs > 0:
        if best.is_file():  # fine-tune the best cross-entropy weights, not the last ones
            decoder.load_weights(best)
        # On a single-device copy, built outside any distribution strategy: its compiled
        # gradient step updates plain variables, and the phase is short.
        tuned = build_decoder(decoder_config)
        tuned.set_weights(decoder.get_weights())
        selection.set_model(tuned)
        fine_tune_self_critical(
            config, tuned, vocabulary, max_words, train_split, train_features, selection
        )
        decoder.set_weights(tuned.get_weights())
    atomic_write(checkpoint_dir / FINAL_FILE, decoder.save)  # the last weights trained
    if best.is_file():
        decoder.load_weights(best)

    manifest = dict(manifest_base)
    manifest["training"].update(
        features_runtime=runner.name,
        epochs_run=state["epoch"],
        self_critical_epochs_run=state.get("sc_epochs", 0),
        best_epoch=state["best_epoch"],
        history=state["history"],
        minutes=round((time.time() - started) / 60, 1),
    )
    return export_artifacts(
        config,
        encoder,
        encoder_tflite,
        decoder,
        decoder_config,
        vocabulary,
        manifest,
        dev_split,
        dev_features,
    )


def fine_tune_self_critical(
    config: TrainConfig,
    decoder: keras.Model,
    vocabulary: Vocabulary,
    max_words: int,
    split: Split,
    features: Features,
    selection: DevSelection,
) -> None:
    """Self-critical epochs from the best cross-entropy weights, each scored on dev (and kept
    if best), until `self_critical_epochs` are done or its minutes (or the budget) run out.

    The decoder's weights are checkpointed after every epoch, so `--resume` continues this
    phase; its optimizer restarts, as Adam's moments settle within a few batches.
    """
    state, checkpoint_dir = selection.state, config.work_dir / "checkpoints"
    average = None
    if config.self_critical_weight_average:
        average = WeightAverage(
            config.self_critical_weight_average,
            checkpoint_dir / SELF_CRITICAL_AVERAGE_FILE,
            warmup=False,
        )
        average.set_model(decoder)
    if state.get("phase") == "self-critical":
        decoder.load_weights(checkpoint_dir / SELF_CRITICAL_FILE)
        logger.info("resuming self-critical training after %d epoch(s)", state["sc_epochs"])
    else:
        state.update(phase="self-critical", sc_epochs=0, sc_minutes=0.0)
        # A fresh phase: the average starts from these (cross-entropy) weights.
        (checkpoint_dir / SELF_CRITICAL_AVERAGE_FILE).unlink(missing_ok=True)
    if average is not None:
        average.on_train_begin()
    now = time.time()
    deadline = now + (config.self_critical_minutes - state["sc_minutes"]) * 60
    if config.time_budget_minutes is not None:
        budget_end = selection.started + (config.time_budget_minutes - EXPORT_RESERVE_MINUTES) * 60
        deadline = min(deadline, budget_end)
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
        seed=config.seed + state["epoch"] + state["sc_epochs"],
    )
    after_batch = (lambda: average.on_train_batch_end(0)) if average is not None else None
    while state["sc_epochs"] < config.self_critical_epochs and time.time() < deadline:
        started = time.time()
        result = trainer.train_epoch(features, deadline, after_batch)
        if not result["batches"]:
            break
        state["sc_epochs"] += 1
        with averaged_weights(average):  # score (and keep, if best) the averaged weights
            selection.score_and_keep_best(
                state["epoch"] + state["sc_epochs"] - 1,
                {"mean_reward": result["mean_reward"], "batches": result["batches"]},
                phase="self-critical",
                learning_rate=config.self_critical_learning_rate,
            )
        state["sc_minutes"] += (time.time() - started) / 60
        atomic_write(checkpoint_dir / SELF_CRITICAL_FILE, decoder.save_weights)
        if average is not None:
            average.save()
        write_json(checkpoint_dir / STATE_FILE, state)


def export_artifacts(
    config: TrainConfig,
    encoder: keras.Model,
    encoder_tflite: bytes | None,
    decoder: keras.Model,
    decoder_config: DecoderConfig,
    vocabulary: Vocabulary,
    manifest: dict,
    dev: Split,
    dev_features: Features,
) -> dict:
    """Strip the optimizer (a fresh, uncompiled copy), score dev with beam search, write."""
    serving_decoder = build_decoder(decoder_config)
    serving_decoder.set_weights(decoder.get_weights())
    step = None
    if config.export_tflite:
        try:
            step = export_decoder_step(DecoderWeights.from_model(serving_decoder))
        except Exception:  # NumPy decodes from decoder.keras alone
            logger.exception("LiteRT decoder-step export failed; the service will use NumPy")
    bundle = ArtifactBundle(encoder, serving_decoder, vocabulary, manifest, encoder_tflite, step)
    predictor = CaptionPredictor(bundle, encoder=KerasEncoder(encoder))
    encoded = EncodedImages(np.asarray(dev_features.grid, np.float32), dev_features.pooled)
    captions = predictor.generate(encoded, DecodeOptions(beam_size=config.eval_beam_size))
    metrics = score_captions(dev.raw_captions, [c[0].text for c in captions], full=True)
    manifest["metrics"] = {
        "dev": {"beam_size": config.eval_beam_size, "images": len(dev), **metrics}
    }
    logger.info("dev metrics (beam %d): %s", config.eval_beam_size, metrics)
    return bundle.save(config.artifacts_dir)


def _manifest(
    config: TrainConfig,
    spec,
    decoder_config: DecoderConfig,
    vocabulary: Vocabulary,
    max_words: int,
    dataset: Flickr8k,
) -> dict:
    created = datetime.now(UTC)
    return {
        "model_id": f"{config.backbone}-attention-lstm-{created:%Y%m%d-%H%M%S}",
        "created_at": created.isoformat(timespec="seconds"),
        "encoder": {
            "backbone": spec.name,
            "weights": str(config.encoder_weights),
            "input_size": spec.input_size,
            "grid_size": spec.grid_size,
            "feature_dim": spec.feature_dim,
            "preprocessing": f"upright RGB, resized without cropping to {spec.input_size}x"
            f"{spec.input_size} (bilinear), float pixels 0..255; normalisation inside the model",
        },
        "decoder": {
            **decoder_config.to_dict(),
            "architecture": "LSTM, state from pooled features, attention over the grid",
            "max_length": max_words,
            "length_penalty": config.length_penalty,
            "no_repeat_ngram": config.no_repeat_ngram,
            "default_beam_size": config.eval_beam_size,
        },
        "vocabulary": {"size": len(vocabulary), "min_count": config.min_word_count},
        "dataset": {
            "name": "Flickr8k",
            "layout": dataset.layout,
            "splits": dataset.split_sizes(),
            "problems": dataset.report.summary(),
        },
        "training": {
            k: v
            for k, v in asdict(config).items()
            if k not in ("data_dir", "artifacts_dir", "work_dir", "extra")
        },
        "versions": {
            "captioner": captioning.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
    }
