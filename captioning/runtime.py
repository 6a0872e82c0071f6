"""Encoder runtimes: the Keras model in TensorFlow graph mode, or its LiteRT export.

LiteRT with XNNPACK runs EfficientNet-Lite0 about twice as fast as TensorFlow on a CPU, so it is
used whenever the bundle carries `encoder.tflite` and `ai-edge-litert` is installed; the Keras
model stays the source of truth (and the fallback).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # TensorFlow loads only for the Keras runtime and the export, not for LiteRT
    import keras

logger = logging.getLogger(__name__)


class EncoderRuntime(Protocol):
    name: str

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch, size, size, 3) float32 pixels -> (grid (batch, h, w, C), pooled (batch, C))."""


class KerasEncoder:
    name = "tensorflow"

    def __init__(self, model: keras.Model) -> None:
        import tensorflow as tf

        self._tf = tf
        self.model = model
        # A traced graph function: model.predict re-enters Keras' loop machinery on every call.
        self._run = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid, pooled = self._run(self._tf.convert_to_tensor(pixels, self._tf.float32))[:2]
        return grid.numpy(), pooled.numpy()


class LiteRTEncoder:
    name = "litert"

    def __init__(self, model_content: bytes, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(
            model_content=model_content, num_threads=num_threads or os.cpu_count() or 1
        )
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        # The export's output order is not guaranteed: the grid is the 4-D one.
        self._grid = next(o["index"] for o in outputs if len(o["shape"]) == 4)
        self._pooled = next(o["index"] for o in outputs if len(o["shape"]) == 2)
        self._batch = int(self._interpreter.get_input_details()[0]["shape"][0])
        self._interpreter.allocate_tensors()

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(pixels) != self._batch:
            self._interpreter.resize_tensor_input(self._input, list(pixels.shape), strict=False)
            self._interpreter.allocate_tensors()
            self._batch = len(pixels)
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(pixels, np.float32))
        self._interpreter.invoke()
        return (
            self._interpreter.get_tensor(self._grid).copy(),
            self._interpreter.get_tensor(self._pooled).copy(),
        )


def litert_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


def make_encoder_runtime(
    model: keras.Model | None, tflite: bytes | None, preferred: str = "auto"
) -> EncoderRuntime:
    """`preferred`: "auto" (LiteRT when available), "litert" or "tensorflow"."""
    if preferred not in ("auto", "litert", "tensorflow"):
        raise ValueError(f"unknown encoder runtime {preferred!r}")
    if preferred != "tensorflow" and tflite is not None:
        try:
            return LiteRTEncoder(tflite)
        except ImportError:
            if preferred == "litert":
                raise
            logger.warning("ai-edge-litert is not installed; encoding with TensorFlow")
    elif preferred == "litert":
        raise ValueError("the artifacts have no encoder.tflite for the LiteRT runtime")
    if model is None:
        raise ValueError("no Keras encoder was loaded to fall back on")
    return KerasEncoder(model)


TFLITE_TOLERANCE = 1e-3  # max abs difference of pooled features, float32 export vs Keras


def export_tflite(model: keras.Model) -> bytes:
    """Convert the Keras encoder to a float32 LiteRT flatbuffer (dynamic batch size), checked
    against the Keras model on random pixels; raises RuntimeError if they disagree."""
    import tensorflow as tf

    signature = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(signature)
    # No `trackable_obj`: with one, TF 2.21 leaves the weights as variables that the
    # flatbuffer never fills in, and the export silently computes garbage.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    flatbuffer = converter.convert()
    pixels = np.random.default_rng(0).uniform(0, 255, (2, *model.input_shape[1:]))
    pixels = pixels.astype(np.float32)
    expected = KerasEncoder(model)(pixels)[1]
    exported = LiteRTEncoder(flatbuffer)(pixels)[1]
    difference = float(np.abs(expected - exported).max())
    if not np.isfinite(difference) or difference > TFLITE_TOLERANCE:
        raise RuntimeError(f"the LiteRT export disagrees with Keras (max difference {difference})")
    logger.info("LiteRT export matches Keras (max pooled difference %.2e)", difference)
    return flatbuffer
