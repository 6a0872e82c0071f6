"""The classic `keras.applications` backbones, wrapped into the encoder contract.

Contract (shared with `efficientnet_lite`): one input named "image" of raw float32 pixels in
[0, 255]; the application's own `preprocess_input` is the model's first layer; outputs
``[grid, pooled]`` — the last feature map and its global average.

The preprocessing is a small registered layer rather than a Lambda, because the encoder is
saved inside the artifact bundle as a `.keras` file and must reload with ``safe_mode=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
# The registered names ("captioning>...") are stored in every saved .keras file: keep them.
SERIALIZATION_PACKAGE = "captioning"
IMAGENET = "imagenet"


@dataclass(frozen=True)
class _Application:
    """How to build one backbone and how it wants its pixels."""

    constructor: Callable[..., keras.Model]
    preprocess_input: Callable[..., Any]
    input_size: int


_apps = keras.applications
APPLICATIONS: dict[str, _Application] = {
    # "tf" style: x / 127.5 - 1
    "inception_v3": _Application(_apps.InceptionV3, _apps.inception_v3.preprocess_input, 299),
    "xception": _Application(_apps.Xception, _apps.xception.preprocess_input, 299),
    # "caffe" style: RGB -> BGR, then subtract the ImageNet BGR mean, no scaling
    "resnet50": _Application(_apps.ResNet50, _apps.resnet50.preprocess_input, 224),
}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ApplicationPreprocess(keras.layers.Layer):
    """Applies a `keras.applications` backbone's `preprocess_input` inside the model.

    Only the application's name is serialised, so reloading recreates the exact function
    without storing code in the artifact.
    """

    def __init__(self, application: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if application not in APPLICATIONS:
            raise ValueError(
                f"unknown application {application!r}; choose from {tuple(APPLICATIONS)}"
            )
        self.application = application
        self._preprocess = APPLICATIONS[application].preprocess_input

    def call(self, inputs: Any) -> Any:
        return self._preprocess(inputs, data_format="channels_last")

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "application": self.application}


def _build_backbone(
    app: _Application, name: str, inputs: keras.KerasTensor, weights: str | Path | None
) -> keras.Model:
    """Build the headless application on our preprocessed input tensor.

    Passing `input_tensor` makes the application's layers part of our flat functional graph
    (no nested model), which keeps layer-wise freezing for fine-tuning simple.
    """
    x = ApplicationPreprocess(name, name="preprocess")(inputs)
    if weights is not None and str(weights) != IMAGENET:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{name} weights file not found: {path}")
        weights = str(path)
    try:
        return app.constructor(include_top=False, weights=weights, input_tensor=x)
    except Exception as exc:
        if weights != IMAGENET:
            raise
        raise RuntimeError(
            f"could not get the ImageNet weights for {name} (Keras downloads them on first "
            f"use; are you offline?). Pass a local weights file instead, e.g. the "
            f"'*_notop.h5' from the Keras applications release. Cause: {exc}"
        ) from exc


def build_keras_application(name: str, weights: str | Path | None = IMAGENET) -> keras.Model:
    """Build a `keras.applications` backbone as an encoder taking raw [0, 255] pixels.

    `weights`: "imagenet" (downloaded by Keras, needs network on first use), a local path to
    the headless application's weights file, or None for random initialisation.
    """
    if name not in APPLICATIONS:
        raise ValueError(f"unknown keras application {name!r}; choose from {tuple(APPLICATIONS)}")
    app = APPLICATIONS[name]
    size = app.input_size
    inputs = keras.Input((size, size, 3), dtype="float32", name=INPUT_NAME)
    backbone = _build_backbone(app, name, inputs, weights)
    grid = backbone.output
    pooled = keras.layers.GlobalAveragePooling2D(name="feature_pool")(grid)
    logger.info("built %s encoder (weights=%s)", name, weights)
    return keras.Model(inputs, [grid, pooled], name=name)
