"""The service's model runtimes: the encoder and the decoder's step on LiteRT/XNNPACK.

The encoder runs from the bundle's `encoder.tflite`; the decoder's step from
`decoder_step.tflite` or in NumPy (`captioning.decoder_step`). TensorFlow plays no part here: the
Keras models, their exports and the Keras encoder runtime are training's (`training.modeling`,
`training.export`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, TypeVar

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from captioning.bundle import DECODER_STEP_TFLITE, ArtifactError

logger = logging.getLogger(__name__)

DecoderRuntimeName = Literal["auto", "litert", "numpy"]
DECODER_RUNTIMES: tuple[DecoderRuntimeName, ...] = ("auto", "litert", "numpy")

# Images per LiteRT encoder call: a large batch's activations outgrow the CPU caches, and two
# at a time were fastest per image (docs/experiments.md, "Serving speed").
LITERT_MAX_BATCH = 2


@dataclass(frozen=True)
class RuntimeOptions:
    """How the model runs, resolved once (the service builds it from its `Settings`) and passed
    by keyword to `CaptionPredictor` and the runtimes.

    - `decoder_runtime`: "auto" (LiteRT when the bundle has decoder_step.tflite, else NumPy),
      "litert", or "numpy" (float32, the reference);
    - `blas_threads`: NumPy's BLAS threads for the NumPy decoder (the service caps them);
    - `encoder_batch_threads`: LiteRT encoder threads for batches of two or more images
      (0: as many as for one image, which always gets every core);
    - `encoder_max_batch`: images per LiteRT encoder call; a larger batch runs in pieces of
      this size (0: the whole batch in one call).
    """

    decoder_runtime: DecoderRuntimeName = "auto"
    blas_threads: int = 1
    encoder_batch_threads: int = 0
    encoder_max_batch: int = LITERT_MAX_BATCH

    def __post_init__(self) -> None:
        if self.decoder_runtime not in DECODER_RUNTIMES:
            raise ValueError(f"unknown decoder runtime {self.decoder_runtime!r}")
        for name in ("blas_threads", "encoder_batch_threads", "encoder_max_batch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


DEFAULT_RUNTIME = RuntimeOptions()


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


class _LiteRTModel:
    """One LiteRT interpreter of the encoder, resized to each batch size it is given."""

    def __init__(self, model_content: bytes, num_threads: int) -> None:
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


class LiteRTEncoder:
    """The encoder on LiteRT/XNNPACK.

    A single image always gets every core; `options.encoder_batch_threads` sets the threads
    for batches of two or more images. In the service, batches form only under load, while
    other requests' uploads are being decoded on the other cores; which wins depends on the
    encoder's share of the work (docs/experiments.md).

    A batch larger than `options.encoder_max_batch` runs as several calls of at most that many
    images, on an interpreter of its own, so that the lone-image interpreter is never resized.
    """

    name = "litert"

    def __init__(self, model_content: bytes, *, options: RuntimeOptions = DEFAULT_RUNTIME) -> None:
        self._max_batch = options.encoder_max_batch or None
        # Chunks of `max_batch` keep the batch interpreter at one shape; a separate one, even
        # on as many threads, spares the lone-image interpreter a resize at every batch.
        self._single, self._batched = _one_and_batched(
            lambda threads: _LiteRTModel(model_content, threads),
            None,
            options.encoder_batch_threads,
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


# --- the decoder's step on LiteRT ----------------------------------------------------------------

# The export's entry points; `training.export.export_decoder_step` writes these keys.
STEP_SIGNATURE, INIT_SIGNATURE, BEAM_STEP_SIGNATURE = "step", "init", "beam_step"
DECODER_STEP_SIGNATURES = (STEP_SIGNATURE, INIT_SIGNATURE, BEAM_STEP_SIGNATURE)


class _DecoderInterpreter:
    """One LiteRT interpreter of the decoder export and its three entry points."""

    def __init__(self, model_content: bytes, num_threads: int) -> None:
        self._interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        signatures = set(self._interpreter.get_signature_list())
        if not set(DECODER_STEP_SIGNATURES) <= signatures:
            raise ArtifactError(
                f"{DECODER_STEP_TFLITE} has the signatures {sorted(signatures)}, not "
                f"{', '.join(DECODER_STEP_SIGNATURES)}: re-export it with "
                "`python -m training export-tflite --artifacts <folder>`"
            )
        self.step = self._interpreter.get_signature_runner(STEP_SIGNATURE)
        self.init = self._interpreter.get_signature_runner(INIT_SIGNATURE)
        self.beam_step = self._interpreter.get_signature_runner(BEAM_STEP_SIGNATURE)


class LiteRTDecoderStep:
    """The decoder's equations (`captioning.decoder_step.DecoderStepper`) as a LiteRT model
    with int8 weights (dynamic-range quantisation), with three entry points (signatures):

    - "step": one word for every row -> log-probs, h, c, attention (greedy decoding);
    - "init": the image's regions and pooled vector -> region keys, h0, c0 (once per caption);
    - "beam_step": one word of beam search, with the scoring and the top-k in the graph, so
      that only K candidates per image come back to Python instead of K x vocabulary.

    Decoding on a CPU is bound by reading the weights from memory at every word: the LSTM's
    recurrent matrix, the attention output layer and the vocabulary layer. In int8 they are a
    quarter of the float32 bytes, and XNNPACK's kernels take the few rows of a beam in one pass
    where OpenBLAS falls back to slow small-matrix code. On dev the captions move within noise
    of the float32 NumPy decoder (docs/model-card.md).
    """

    name = "litert-int8"

    def __init__(
        self,
        model_content: bytes,
        num_threads: int | None = None,
        batch_threads: int | None = 1,
    ) -> None:
        """`num_threads`: threads for one image's rows (default: every core, faster for a lone
        caption); `batch_threads`: for several
        images' (default 1; see `_one_and_batched`). Raises ArtifactError for an export
        without the three signatures."""
        self._single, self._batched = _one_and_batched(
            lambda threads: _DecoderInterpreter(model_content, threads), num_threads, batch_threads
        )

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


def make_decoder_step(
    tflite: bytes | None, *, options: RuntimeOptions = DEFAULT_RUNTIME
) -> LiteRTDecoderStep | None:
    """The decoder step `options.decoder_runtime` asks for; None means NumPy."""
    if options.decoder_runtime == "numpy":
        return None
    if tflite is None:
        if options.decoder_runtime == "litert":
            raise ArtifactError(f"the artifacts have no {DECODER_STEP_TFLITE} for LiteRT to run")
        return None
    return LiteRTDecoderStep(tflite)
