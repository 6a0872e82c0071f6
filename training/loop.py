"""The cross-entropy phase: the decoder (fresh or resumed), its optimizer, and the epochs."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from captioning.text import PAD_ID
from training.batches import CaptionBatches
from training.config import TrainConfig
from training.modeling.decoder import (
    DecoderConfig,
    build_decoder,
    masked_caption_loss,
    set_entity_vectors,
)
from training.state import CHECKPOINT_FILE, TrainState

logger = logging.getLogger(__name__)


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


def build_or_resume_decoder(
    config: TrainConfig,
    decoder_config: DecoderConfig,
    strategy: tf.distribute.Strategy,
    checkpoint_dir: Path,
    entity_vectors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[keras.Model, TrainState]:
    """A compiled decoder and its loop state: from the checkpoint with `resume`, else fresh
    (a decoder conditioned on concepts gets its fixed tables, `entity_vectors`: the
    concepts' vectors and the words')."""
    with strategy.scope():
        if config.resume and TrainState.exists(checkpoint_dir):
            state = TrainState.load(checkpoint_dir)
            decoder = keras.saving.load_model(
                checkpoint_dir / CHECKPOINT_FILE,
                safe_mode=True,
                custom_objects={"masked_caption_loss": masked_caption_loss(config.label_smoothing)},
            )
            decoder.jit_compile = False  # see compile_decoder
            logger.info(
                "resuming after epoch %d (best dev CIDEr %.4f at epoch %d)",
                state.epoch,
                state.best_cider,
                state.best_epoch,
            )
            return decoder, state
        decoder = build_decoder(decoder_config)
        if entity_vectors is not None:
            set_entity_vectors(decoder, *entity_vectors)
        compile_decoder(decoder, config)
        return decoder, TrainState()


def cross_entropy_done(config: TrainConfig, state: TrainState) -> bool:
    return (
        state.in_self_critical
        or state.epoch >= config.epochs
        or state.stale_epochs >= config.patience
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

    On one device the batches go in one by one through `train_on_batch`, which runs much faster
    on a CPU than `fit` over a tf.data pipeline of the same batches (docs/experiments.md).
    Under a distribution strategy `fit` stays in charge, as it splits every batch over the
    replicas.
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
