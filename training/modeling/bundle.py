"""A bundle with its Keras models, for training's re-export and the benchmarks; serving reads
the same folder without Keras (`captioning.bundle.load_bundle`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

# Imported for their side effect: they register the custom layers the saved models name.
import training.modeling.decoder
import training.modeling.encoders  # noqa: F401
from captioning.bundle import (
    DECODER_KERAS,
    ENCODER_KERAS,
    ArtifactBundle,
    ArtifactError,
    load_bundle,
)


def load_keras_bundle(directory: Path | str) -> ArtifactBundle:
    """`load_bundle` (every hash checked) plus `encoder.keras` and `decoder.keras` as models."""
    directory = Path(directory)
    bundle = load_bundle(directory)
    return dataclasses.replace(
        bundle,
        encoder=load_keras_model(directory / ENCODER_KERAS),
        decoder=load_keras_model(directory / DECODER_KERAS),
        decoder_layers=None,
    )


def load_keras_model(path: Path) -> keras.Model:
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ArtifactError(f"{path} cannot be loaded as a Keras model: {exc}") from exc
