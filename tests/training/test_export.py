"""The encoder's LiteRT export: float16 weights by default (half the file), float32 on request."""

import keras
import numpy as np
import pytest

from captioning.runtime import LiteRTEncoder, RuntimeOptions, _LiteRTModel
from training.export import export_tflite

pytestmark = pytest.mark.slow


def _small_encoder(classes: int = 0) -> keras.Model:
    """Same contract as the real encoders: raw pixels in, [grid, pooled] out, and with
    `classes` a classifier head's logits as a third output."""
    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 128.0, offset=-1.0)(image)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    grid = keras.layers.Conv2D(256, 3, strides=2, padding="same", activation="relu")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(grid)
    outputs = [grid, pooled]
    if classes:
        outputs.append(keras.layers.Dense(classes)(pooled))
    return keras.Model(image, outputs)


def test_float16_export_is_half_the_size_and_agrees_with_keras() -> None:
    model = _small_encoder()
    half, full = export_tflite(model), export_tflite(model, weights="float32")
    assert len(half) < 0.6 * len(full)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(model(pixels)[1])
    for flatbuffer, tolerance in ((full, 1e-4), (half, 2e-2)):
        pooled = LiteRTEncoder(flatbuffer)(pixels)[1]
        assert np.abs(pooled - expected).max() <= tolerance * np.abs(expected).max()


def test_unknown_weight_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="float16"):
        export_tflite(_small_encoder(), weights="int4")


def test_a_batch_runs_in_pieces_of_max_batch_with_the_same_features(monkeypatch) -> None:
    flatbuffer = export_tflite(_small_encoder(), weights="float32")
    pixels = np.random.default_rng(2).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    whole = LiteRTEncoder(flatbuffer, options=RuntimeOptions(encoder_max_batch=0))
    expected_grid, expected_pooled, _ = whole(pixels)

    pieces = LiteRTEncoder(flatbuffer, options=RuntimeOptions(encoder_max_batch=2))
    calls: list[tuple[int, int]] = []  # (which interpreter, images)
    original = _LiteRTModel.__call__

    def counted(self, batch):
        calls.append((id(self), len(batch)))
        return original(self, batch)

    monkeypatch.setattr(_LiteRTModel, "__call__", counted)
    grid, pooled, _ = pieces(pixels)
    np.testing.assert_allclose(grid, expected_grid, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(pooled, expected_pooled, rtol=1e-5, atol=1e-4)
    batched, single = id(pieces._batched), id(pieces._single)
    # The odd image out goes to the lone-image interpreter, which thus never changes shape.
    assert calls == [(batched, 2), (batched, 2), (single, 1)]


def test_the_classifier_head_comes_out_of_the_same_call_whole_or_in_pieces() -> None:
    model = _small_encoder(classes=10)
    flatbuffer = export_tflite(model, weights="float32")
    pixels = np.random.default_rng(3).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(model(pixels)[2])
    for max_batch in (0, 2):
        output = LiteRTEncoder(flatbuffer, options=RuntimeOptions(encoder_max_batch=max_batch))(
            pixels
        )
        assert output.pooled.shape == (3, 256)
        np.testing.assert_allclose(output.class_logits, expected, rtol=1e-4, atol=1e-4)
    assert LiteRTEncoder(export_tflite(_small_encoder(), weights="float32"))(pixels)[2] is None
