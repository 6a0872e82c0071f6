"""Encoder runtimes: the Keras model in TensorFlow graph mode, or its LiteRT export.

LiteRT with XNNPACK runs EfficientNet-Lite0 about twice as fast as TensorFlow on a CPU, so it is
used whenever the bundle carries `encoder.tflite` and `ai-edge-litert` is installed; the Keras
model stays the source of truth (and the fallback).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:  # TensorFlow loads only for the Keras runtime and the export, not for LiteRT
    import keras

    from captioning.decoding import DecoderWeights

logger = logging.getLogger(__name__)


class EncoderOutput(NamedTuple):
    grid: np.ndarray  # (batch, h, w, C)
    pooled: np.ndarray  # (batch, C)
    class_logits: np.ndarray | None  # (batch, classes) ImageNet logits; None without the head


class EncoderRuntime(Protocol):
    name: str

    def __call__(self, pixels: np.ndarray) -> EncoderOutput:
        """(batch, size, size, 3) float32 pixels -> the grid, its pooled vector and, when the
        export has its classifier head, the class logits, all from one call."""


def _concatenate(parts: list[EncoderOutput]) -> EncoderOutput:
    logits = [p.class_logits for p in parts]
    return EncoderOutput(
        np.concatenate([p.grid for p in parts]),
        np.concatenate([p.pooled for p in parts]),
        None if logits[0] is None else np.concatenate(logits),
    )


class KerasEncoder:
    name = "tensorflow"

    def __init__(self, model: keras.Model) -> None:
        import tensorflow as tf

        self._tf = tf
        self.model = model
        # A traced graph function: model.predict re-enters Keras' loop machinery on every call.
        self._run = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, pixels: np.ndarray) -> EncoderOutput:
        outputs = self._run(self._tf.convert_to_tensor(pixels, self._tf.float32))
        logits = outputs[2].numpy() if len(outputs) > 2 else None
        return EncoderOutput(outputs[0].numpy(), outputs[1].numpy(), logits)


class _LiteRTModel:
    """One LiteRT interpreter of the encoder, resized to each batch size it is given."""

    def __init__(self, model_content: bytes, num_threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        # The export's output order is not guaranteed: the grid is the 4-D one, the pooled
        # vector has its channels, and the class logits (if any) are the other 2-D output.
        grid = next(o for o in outputs if len(o["shape"]) == 4)
        channels = int(grid["shape"][-1])
        vectors = [o for o in outputs if len(o["shape"]) == 2]
        self._grid = grid["index"]
        self._pooled = next(o["index"] for o in vectors if int(o["shape"][-1]) == channels)
        self._logits = next((o["index"] for o in vectors if int(o["shape"][-1]) != channels), None)
        self._batch = int(self._interpreter.get_input_details()[0]["shape"][0])
        self._interpreter.allocate_tensors()

    def __call__(self, pixels: np.ndarray) -> EncoderOutput:
        if len(pixels) != self._batch:
            self._interpreter.resize_tensor_input(self._input, list(pixels.shape), strict=False)
            self._interpreter.allocate_tensors()
            self._batch = len(pixels)
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(pixels, np.float32))
        self._interpreter.invoke()
        logits = None if self._logits is None else self._interpreter.get_tensor(self._logits)
        return EncoderOutput(
            self._interpreter.get_tensor(self._grid).copy(),
            self._interpreter.get_tensor(self._pooled).copy(),
            None if logits is None else logits.copy(),
        )


Runner = TypeVar("Runner")


def _one_and_batched(
    make: Callable[[int], Runner],
    num_threads: int | None,
    batch_threads: int | None,
    separate: bool = False,
) -> tuple[Runner, Runner]:
    """An interpreter for a lone image, on `num_threads` (default: every core), and one for
    batches of several images, on `batch_threads` (None or 0: as many). They are the same
    interpreter when the thread counts match, unless `separate`. In the service, batches form
    only under load, when the other stage keeps cores busy; a lone image has them to itself."""
    threads = num_threads or os.cpu_count() or 1
    single = make(threads)
    if not separate and (not batch_threads or batch_threads == threads):
        return single, single
    return single, make(batch_threads or threads)


# Images per LiteRT encoder call. A batch's activations outgrow the CPU caches: on the 2-core
# machine, 8 photos took 14.8 ms each in one call, 11.7 ms one at a time and 10.8 ms two at a
# time (5 interleaved rounds, two wins in every round; `work/prof8/enc_chunk.py`, a throwaway).
LITERT_MAX_BATCH = 2


class LiteRTEncoder:
    """The encoder on LiteRT/XNNPACK.

    `batch_threads` sets the threads for batches of two or more images (None or 0: as many as
    for one image); a single image always gets `num_threads` (default: every core). In the
    service, batches form only under load, while other requests' uploads are being decoded on
    the other cores. Which wins depends on the encoder's share of the work (2-core machine,
    concurrency 8): with Lite0 one thread that left the other core free beat two (41 against
    34 images/s); with Lite1, the heavier encoder, two beat one (30.7 against 25.6). The
    service's setting is `CAPTIONER_ENCODER_BATCH_THREADS`.

    A batch larger than `max_batch` runs as several calls of at most `max_batch` images (None:
    `LITERT_MAX_BATCH`; 0: one call), on an interpreter of its own, so that the lone-image
    interpreter is never resized. Setting: `CAPTIONER_ENCODER_MAX_BATCH`.
    """

    name = "litert"

    def __init__(
        self,
        model_content: bytes,
        num_threads: int | None = None,
        batch_threads: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        self._max_batch = (LITERT_MAX_BATCH if max_batch is None else max_batch) or None
        # Chunks of `max_batch` keep the batch interpreter at one shape; a separate one, even
        # on as many threads, spares the lone-image interpreter a resize at every batch.
        self._single, self._batched = _one_and_batched(
            lambda threads: _LiteRTModel(model_content, threads),
            num_threads,
            batch_threads,
            separate=self._max_batch is not None and self._max_batch > 1,
        )

    def __call__(self, pixels: np.ndarray) -> EncoderOutput:
        if self._max_batch and len(pixels) > self._max_batch:
            return _concatenate(
                [
                    self(pixels[start : start + self._max_batch])
                    for start in range(0, len(pixels), self._max_batch)
                ]
            )
        return (self._single if len(pixels) == 1 else self._batched)(pixels)


def litert_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


def make_encoder_runtime(
    model: keras.Model | None,
    tflite: bytes | None,
    preferred: str = "auto",
    batch_threads: int | None = None,
    max_batch: int | None = None,
) -> EncoderRuntime:
    """`preferred`: "auto" (LiteRT when available), "litert" or "tensorflow";
    `batch_threads` and `max_batch`: LiteRT threads for batches of several images, and images
    per LiteRT call (see LiteRTEncoder). TensorFlow takes every batch whole: it gains from
    batching (48 against 41 ms per image at batch 1 and 8)."""
    if preferred not in ("auto", "litert", "tensorflow"):
        raise ValueError(f"unknown encoder runtime {preferred!r}")
    if preferred != "tensorflow" and tflite is not None:
        try:
            return LiteRTEncoder(tflite, batch_threads=batch_threads, max_batch=max_batch)
        except ImportError:
            if preferred == "litert":
                raise
            logger.warning("ai-edge-litert is not installed; encoding with TensorFlow")
    elif preferred == "litert":
        raise ValueError("the artifacts have no encoder.tflite for the LiteRT runtime")
    if model is None:
        raise ValueError("no Keras encoder was loaded to fall back on")
    return KerasEncoder(model)


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
    import tensorflow as tf

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


# --- the decoder's step on LiteRT ----------------------------------------------------------------

DECODER_STEP_LOG_PROB_TOLERANCE = 0.5  # max |difference| of log-probs against NumPy (int8)
STEP_SIGNATURE, INIT_SIGNATURE, BEAM_STEP_SIGNATURE = "step", "init", "beam_step"


class _DecoderInterpreter:
    """One LiteRT interpreter of the decoder export and its entry points."""

    def __init__(self, model_content: bytes, num_threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        signatures = self._interpreter.get_signature_list()
        runners = {key: self._interpreter.get_signature_runner(key) for key in signatures}
        # An export with only the step has one signature, whatever its key.
        self.step = runners.get(STEP_SIGNATURE) or next(iter(runners.values()))
        self.init = runners.get(INIT_SIGNATURE)
        self.beam_step = runners.get(BEAM_STEP_SIGNATURE)


class LiteRTDecoderStep:
    """The decoder's equations (`captioning.decoding._Stepper`) as a LiteRT model with int8
    weights (dynamic-range quantisation), with up to three entry points (signatures):

    - "step": one word for every row -> log-probs, h, c, attention (greedy decoding);
    - "init": the image's regions and pooled vector -> region keys, h0, c0 (once per caption);
    - "beam_step": one word of beam search, with the scoring and the top-k in the graph, so
      that only K candidates per image come back to Python instead of K x vocabulary.

    Decoding on a CPU is bound by reading the weights from memory at every word: the LSTM's
    recurrent matrix, the attention output layer and the vocabulary layer. In int8 they are a
    quarter of the float32 bytes, and XNNPACK's kernels take the few rows of a beam in one pass
    where OpenBLAS falls back to slow small-matrix code. Measured on dev (1,000 images, beam
    3), the captions move within noise of the float32 NumPy decoder; see the README. Exports
    older than "init" and "beam_step" still work: those parts then run in NumPy.
    """

    name = "litert-int8"

    def __init__(
        self,
        model_content: bytes,
        num_threads: int | None = None,
        batch_threads: int | None = 1,
    ) -> None:
        """`num_threads`: threads for one image's rows (default: every core); `batch_threads`:
        for several images' (default 1; see `_one_and_batched`). Beam 3 at batch 1 (2-core
        machine, committed model, 60 dev images, 3 rounds; `work/prof5/threads.py`, a
        throwaway): 6.7-9.2 ms on one thread, 5.4-6.5 on two."""
        self._single, self._batched = _one_and_batched(
            lambda threads: _DecoderInterpreter(model_content, threads), num_threads, batch_threads
        )
        self.has_init = self._single.init is not None
        self.has_beam_step = self._single.beam_step is not None

    def _runners(self, images: int) -> _DecoderInterpreter:
        return self._single if images == 1 else self._batched

    def __call__(
        self, input_gates: np.ndarray, h: np.ndarray, c: np.ndarray, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        out = self._runners(len(input_gates)).step(
            input_gates=np.ascontiguousarray(input_gates, np.float32),
            h=np.ascontiguousarray(h, np.float32),
            c=np.ascontiguousarray(c, np.float32),
            keys=np.ascontiguousarray(keys, np.float32),
        )
        return out["log_probs"], out["h"], out["c"], out["attention"]

    def init(
        self, grid: np.ndarray, pooled: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, R, C) regions and (B, C) pooled -> keys (B, R, H), h0 and c0 (B, H)."""
        assert self.has_init, "this export has no init signature"
        out = self._runners(len(grid)).init(
            grid=np.ascontiguousarray(grid, np.float32),
            pooled=np.ascontiguousarray(pooled, np.float32),
        )
        return out["keys"], out["h0"], out["c0"]

    def beam_step(
        self,
        input_gates: np.ndarray,
        h: np.ndarray,
        c: np.ndarray,
        keys: np.ndarray,
        beam_scores: np.ndarray,
        finished: np.ndarray,
        penalty: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Arrays grouped per image, as in `__call__`, plus the beams' scores (B, K), which
        beams have finished (B, K) and an additive penalty on the log-probs (B, K, V) ->
        the K best (score, index into K x V) per image, best first, then h, c, attention."""
        assert self.has_beam_step, "this export has no beam_step signature"
        out = self._runners(len(input_gates)).beam_step(
            input_gates=np.ascontiguousarray(input_gates, np.float32),
            h=np.ascontiguousarray(h, np.float32),
            c=np.ascontiguousarray(c, np.float32),
            keys=np.ascontiguousarray(keys, np.float32),
            beam_scores=np.ascontiguousarray(beam_scores, np.float32),
            finished=np.ascontiguousarray(finished, np.float32),
            penalty=np.ascontiguousarray(penalty, np.float32),
        )
        return out["scores"], out["index"], out["h"], out["c"], out["attention"]


DECODER_RUNTIMES = ("auto", "litert", "numpy")


def make_decoder_step(tflite: bytes | None, preferred: str = "auto") -> LiteRTDecoderStep | None:
    """`preferred`: "auto" (LiteRT when the bundle has decoder_step.tflite and ai-edge-litert
    is installed), "litert", or "numpy" (float32, the reference). None means NumPy."""
    if preferred not in DECODER_RUNTIMES:
        raise ValueError(f"unknown decoder runtime {preferred!r}")
    if preferred == "numpy":
        return None
    if tflite is None:
        if preferred == "litert":
            raise ValueError("the artifacts have no decoder_step.tflite for the LiteRT decoder")
        return None
    try:
        return LiteRTDecoderStep(tflite)
    except ImportError:
        if preferred == "litert":
            raise
        logger.warning("ai-edge-litert is not installed; decoding with NumPy")
        return None


def export_decoder_step(weights: DecoderWeights) -> bytes:
    """The decoder's equations as an int8-weight LiteRT flatbuffer with the signatures
    "step", "init" and "beam_step" (see LiteRTDecoderStep), checked against NumPy on random
    states; raises RuntimeError if they disagree (a broken export must not ship)."""
    import tensorflow as tf

    from captioning.decoding import finished_row

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

    def decode_word(input_gates, h, c, keys):  # the equations of `_Stepper.step`
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
    def init(grid, pooled):  # `_Stepper.__init__`: once per caption
        keys = tf.matmul(rows(grid), keys_kernel) + keys_bias
        keys = tf.reshape(keys, [tf.shape(grid)[0], -1, hidden])
        return {
            "keys": keys,
            "h0": tf.tanh(tf.matmul(pooled, init_h_kernel) + init_h_bias),
            "c0": tf.tanh(tf.matmul(pooled, init_c_kernel) + init_c_bias),
        }

    @tf.function
    def beam_step(input_gates, h, c, keys, beam_scores, finished, penalty):  # `_Stepper.beam_step`
        log_probs, h_next, c_next, attention = decode_word(input_gates, h, c, keys)
        # expand_dims, not [..., None]: that strided slice has no LiteRT kernel.
        finished = tf.expand_dims(finished, -1) > 0.5
        log_probs = tf.where(finished, only_padding, log_probs + penalty)
        candidates = tf.expand_dims(beam_scores, -1) + log_probs
        beams = tf.shape(candidates)[1]
        flat = tf.reshape(candidates, [tf.shape(candidates)[0], -1])
        scores, index = tf.math.top_k(flat, k=beams)
        return {"scores": scores, "index": index, "h": h_next, "c": c_next, "attention": attention}

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
    flatbuffer = converter.convert()
    _check_decoder_step(weights, flatbuffer)
    return flatbuffer


def _check_decoder_step(weights: DecoderWeights, flatbuffer: bytes) -> None:
    from captioning.decoding import _Stepper

    rng = np.random.default_rng(0)
    images, beams, regions = 2, 3, 9
    grid = rng.normal(0, 1, (images, regions, weights.init_h[0].shape[0])).astype(np.float32)
    pooled = grid.mean(axis=1)
    tokens = rng.integers(0, len(weights.word_gates), images * beams)
    exact = _Stepper(weights, grid, pooled)
    fast = _Stepper(weights, grid, pooled, LiteRTDecoderStep(flatbuffer))
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
