"""The LiteRT exports of the trained models, each checked against its reference before it may
ship: the encoder against Keras, the decoder's step against the NumPy decoder."""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

from captioning.decoder_step import DecoderStepper, DecoderWeights, finished_row
from captioning.runtime import (
    BEAM_STEP_SIGNATURE,
    INIT_SIGNATURE,
    STEP_SIGNATURE,
    LiteRTDecoderStep,
    LiteRTEncoder,
)
from training.modeling.keras_runtime import KerasEncoder

logger = logging.getLogger(__name__)

# Max |difference| of pooled features, export vs Keras, relative to the largest feature: float32
# agrees to rounding; float16 weights move features by about 0.4% of their range.
TFLITE_TOLERANCE = {"float32": 1e-3, "float16": 2e-2}


def export_tflite(model: keras.Model, weights: str = "float16") -> bytes:
    """Convert the Keras encoder to a LiteRT flatbuffer (dynamic batch size), checked against
    the Keras model on random pixels; raises RuntimeError if they disagree.

    `weights`: "float16" stores the weights in half precision - half the file, and XNNPACK
    unpacks them to float32 once when the model loads, so inference runs in float32 as
    before - or "float32".
    """
    if weights not in TFLITE_TOLERANCE:
        raise ValueError(f"weights must be one of {sorted(TFLITE_TOLERANCE)}, not {weights!r}")
    signature = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(signature)
    # No `trackable_obj`: with one, TF 2.21 leaves the weights as variables that the
    # flatbuffer never fills in, and the export silently computes garbage.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if weights == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    flatbuffer = converter.convert()
    pixels = np.random.default_rng(0).uniform(0, 255, (2, *model.input_shape[1:]))
    pixels = pixels.astype(np.float32)
    expected, exported = KerasEncoder(model)(pixels), LiteRTEncoder(flatbuffer)(pixels)
    difference = 0.0
    for name in ("pooled", "class_logits"):  # the head, when there is one, must agree too
        want, got = getattr(expected, name), getattr(exported, name)
        if (want is None) != (got is None):
            raise RuntimeError(f"the LiteRT export and Keras disagree on having {name}")
        if want is not None:
            scale = max(float(np.abs(want).max()), 1e-6)
            difference = max(difference, float(np.abs(want - got).max()) / scale)
    if not np.isfinite(difference) or difference > TFLITE_TOLERANCE[weights]:
        raise RuntimeError(
            f"the LiteRT export disagrees with Keras (max relative difference {difference:.2e})"
        )
    logger.info(
        "LiteRT export (%s weights) matches Keras (max relative difference %.2e)",
        weights,
        difference,
    )
    return flatbuffer


# --- the decoder's step ----------------------------------------------------------------------

DECODER_STEP_LOG_PROB_TOLERANCE = 0.5  # max |difference| of log-probs against NumPy (int8)


def export_decoder_step(weights: DecoderWeights) -> bytes:
    """The decoder's equations as an int8-weight LiteRT flatbuffer with the signatures
    "step", "init" and "beam_step" (see LiteRTDecoderStep), checked against NumPy on random
    states; raises RuntimeError if they disagree (a broken export must not ship)."""
    hidden = weights.hidden_dim
    recurrent = tf.constant(weights.recurrent_kernel)
    combine_kernel, combine_bias = (tf.constant(a) for a in weights.combine)
    logit_kernel, logit_bias = (tf.constant(a) for a in weights.logits)
    keys_kernel, keys_bias = (tf.constant(a) for a in weights.region_keys)
    init_h_kernel, init_h_bias = (tf.constant(a) for a in weights.init_h)
    init_c_kernel, init_c_bias = (tf.constant(a) for a in weights.init_c)
    only_padding = tf.constant(finished_row(len(weights.word_gates)), tf.float32)
    scale = float(1.0 / np.sqrt(hidden))

    def rows(x: tf.Tensor) -> tf.Tensor:  # (B, K, X) -> (B*K, X): plain matrix products
        return tf.reshape(x, [-1, x.shape[-1]])

    def decode_word(input_gates, h, c, keys):  # the equations of `DecoderStepper.step`
        shape = tf.shape(h)
        gates = rows(input_gates) + tf.matmul(rows(h), recurrent)
        i, f, g, o = tf.split(gates, 4, axis=-1)
        c_next = tf.sigmoid(f) * rows(c) + tf.sigmoid(i) * tf.tanh(g)
        h_next = tf.sigmoid(o) * tf.tanh(c_next)
        queries = tf.reshape(h_next, shape)
        attention = tf.nn.softmax(tf.matmul(queries, keys, transpose_b=True) * scale, axis=-1)
        context = rows(tf.matmul(attention, keys))
        joined = tf.concat([h_next, context], axis=-1)
        combined = tf.tanh(tf.matmul(joined, combine_kernel) + combine_bias)
        log_probs = tf.nn.log_softmax(tf.matmul(combined, logit_kernel) + logit_bias)
        return (
            tf.reshape(log_probs, [shape[0], shape[1], -1]),
            tf.reshape(h_next, shape),
            tf.reshape(c_next, shape),
            attention,
        )

    @tf.function
    def step(input_gates, h, c, keys):
        log_probs, h_next, c_next, attention = decode_word(input_gates, h, c, keys)
        return {"log_probs": log_probs, "h": h_next, "c": c_next, "attention": attention}

    @tf.function
    def init(grid, pooled):  # `DecoderStepper.__init__`: once per caption
        keys = tf.matmul(rows(grid), keys_kernel) + keys_bias
        keys = tf.reshape(keys, [tf.shape(grid)[0], -1, hidden])
        return {
            "keys": keys,
            "h0": tf.tanh(tf.matmul(pooled, init_h_kernel) + init_h_bias),
            "c0": tf.tanh(tf.matmul(pooled, init_c_kernel) + init_c_bias),
        }

    # `DecoderStepper.beam_step`
    @tf.function
    def beam_step(input_gates, h, c, keys, beam_scores, finished, penalty):
        log_probs, h_next, c_next, attention = decode_word(input_gates, h, c, keys)
        # expand_dims, not [..., None]: that strided slice has no LiteRT kernel.
        finished = tf.expand_dims(finished, -1) > 0.5
        log_probs = tf.where(finished, only_padding, log_probs + penalty)
        candidates = tf.expand_dims(beam_scores, -1) + log_probs
        beams = tf.shape(candidates)[1]
        flat = tf.reshape(candidates, [tf.shape(candidates)[0], -1])
        scores, index = tf.math.top_k(flat, k=beams)
        return {"scores": scores, "index": index, "h": h_next, "c": c_next, "attention": attention}

    flatbuffer = _convert_signatures(weights, step, init, beam_step)
    _check_decoder_step(weights, flatbuffer)
    return flatbuffer


def _convert_signatures(weights: DecoderWeights, step, init, beam_step) -> bytes:
    """The three traced functions, with their input shapes, as one int8-weight flatbuffer."""
    hidden = weights.hidden_dim
    per_row = [
        tf.TensorSpec([None, None, 4 * hidden], tf.float32, name="input_gates"),
        tf.TensorSpec([None, None, hidden], tf.float32, name="h"),
        tf.TensorSpec([None, None, hidden], tf.float32, name="c"),
        tf.TensorSpec([None, None, hidden], tf.float32, name="keys"),
    ]
    features = weights.region_keys[0].shape[0]
    module = tf.Module()
    # The attribute names become the flatbuffer's signature keys.
    setattr(module, STEP_SIGNATURE, step)
    setattr(module, INIT_SIGNATURE, init)
    setattr(module, BEAM_STEP_SIGNATURE, beam_step)
    functions = [
        step.get_concrete_function(*per_row),
        init.get_concrete_function(
            tf.TensorSpec([None, None, features], tf.float32, name="grid"),
            tf.TensorSpec([None, features], tf.float32, name="pooled"),
        ),
        beam_step.get_concrete_function(
            *per_row,
            tf.TensorSpec([None, None], tf.float32, name="beam_scores"),
            tf.TensorSpec([None, None], tf.float32, name="finished"),
            tf.TensorSpec([None, None, len(weights.word_gates)], tf.float32, name="penalty"),
        ),
    ]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float activations
    return converter.convert()


def _check_decoder_step(weights: DecoderWeights, flatbuffer: bytes) -> None:
    rng = np.random.default_rng(0)
    images, beams, regions = 2, 3, 9
    grid = rng.normal(0, 1, (images, regions, weights.init_h[0].shape[0])).astype(np.float32)
    pooled = grid.mean(axis=1)
    tokens = rng.integers(0, len(weights.word_gates), images * beams)
    entities = rng.integers(0, weights.entities + 1, images) if weights.entities else None
    exact = DecoderStepper(weights, grid, pooled, entities=entities)
    fast = DecoderStepper(weights, grid, pooled, LiteRTDecoderStep(flatbuffer), entities)
    h = np.repeat(exact.h0, beams, axis=0)
    c = np.repeat(exact.c0, beams, axis=0)
    expected, ours = exact.step(tokens, h, c, beams), fast.step(tokens, h, c, beams)
    allowed = weights.logits[1] > -1e8  # banned words sit at -1e9 either way
    difference = float(np.abs(expected[0][:, allowed] - ours[0][:, allowed]).max())
    # The K best scores of a beam step: a perturbation of every candidate by at most d moves
    # each of them by at most d, whichever candidates they are.
    scores = rng.normal(-5, 1, images * beams)
    finished = np.arange(images * beams) % beams == beams - 1
    penalty = np.zeros((images * beams, len(weights.word_gates)), np.float32)
    penalty[:, 1::7] = -1e9
    top = [
        stepper.beam_step(tokens, h, c, beams, scores, finished, penalty)[0]
        for stepper in (exact, fast)
    ]
    difference = max(difference, float(np.abs(top[0] - top[1]).max()))
    if not np.isfinite(difference) or difference > DECODER_STEP_LOG_PROB_TOLERANCE:
        raise RuntimeError(
            f"the LiteRT decoder step disagrees with NumPy (max log-prob difference {difference})"
        )
    logger.info("LiteRT decoder step matches NumPy (max log-prob difference %.3f)", difference)
