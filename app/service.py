"""The captioning service behind the routes: model lifecycle, decoding uploads, batching.

Created (cheaply) with the app; `start()` in the lifespan loads and warms the model and starts
the batcher; `stop()` drains. Routes only translate HTTP to calls on this object.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import anyio
import numpy as np
from threadpoolctl import threadpool_limits

from app.batching import BatchOutput, MicroBatcher
from app.config import Settings
from app.errors import (
    ApiError,
    InferenceError,
    InferenceTimeoutError,
    NotReadyError,
    ShuttingDownError,
    describe,
)
from app.metrics import Metrics
from app.schemas import (
    CaptionHypothesis,
    CaptionResponse,
    ErrorDetail,
    ErrorResponse,
    EvidenceItem,
    TagItem,
    Timings,
    WordAttention,
)
from app.uploads import UploadedFile
from captioning.bundle import ArtifactError
from captioning.images import decode_upload
from captioning.predictor import CaptionPredictor
from captioning.runtime import DEFAULT_RUNTIME, RuntimeOptions
from captioning.search_settings import SearchSettings
from captioning.types import Caption, Predictor

logger = logging.getLogger(__name__)

PredictorFactory = Callable[[Path], Predictor]
ATTENTION_DECIMALS = 4  # plenty for a heatmap; keeps the JSON small


def real_predictor_factory(*, runtime: RuntimeOptions = DEFAULT_RUNTIME) -> PredictorFactory:
    def load(path: Path) -> Predictor:
        # Decoding multiplies small matrices: extra BLAS threads only spin and, with other
        # threads busy, made one caption 30x slower (measured). Process-wide on purpose.
        threadpool_limits(runtime.blas_threads, user_api="blas")
        return CaptionPredictor.from_artifacts(path, runtime=runtime)

    return load


class State(Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Ready:
    """A serving service's parts, as a request finds them once (`require_ready`)."""

    predictor: Predictor
    batcher: MicroBatcher
    search: SearchSettings  # the model's search settings with the server's defaults


@dataclass(frozen=True)
class DecodedUpload:
    pixels: np.ndarray  # (size, size, 3) model input
    width: int
    height: int
    decode_ms: float


class CaptionService:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        predictor_factory: PredictorFactory,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._factory = predictor_factory
        self.state = State.STARTING
        self._ready: Ready | None = None
        self._batcher: MicroBatcher | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._decode_executor: ThreadPoolExecutor | None = None
        self._decode_limiter: anyio.CapacityLimiter | None = None
        self.in_flight = 0  # HTTP requests being served, counted by the request middleware

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load, check and warm up the model, then start batching. Raises if it cannot serve."""
        started = time.perf_counter()
        # The encoder's thread: loading, warm-up and the encode stage of every batch run on it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        try:
            predictor = await self._load(self._executor)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        settings = self.settings
        # Decoding runs on other threads, at most one per core so it cannot starve the model.
        self._decode_limiter = anyio.CapacityLimiter(os.cpu_count() or 1)
        # The decode stage's thread: encoding the next batch overlaps decoding this one.
        self._decode_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoding")
        self._batcher = MicroBatcher(
            predictor,
            self._executor,
            decode_executor=self._decode_executor,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            max_queue_size=settings.max_queue_size,
            metrics=self.metrics,
        )
        self._batcher.start()
        search = predictor.search.with_options(
            beam_size=settings.default_beam_size,
            concepts=settings.concepts,
            grounding=settings.grounding,
            min_word_probability=settings.min_word_probability,
        )
        self._ready = Ready(predictor, self._batcher, search)
        self.state = State.READY
        self.metrics.ready.set(1)
        logger.info(
            "model %s ready in %.1f s (from %s)",
            predictor.model_id,
            time.perf_counter() - started,
            settings.artifacts_dir,
        )

    async def _load(self, executor: ThreadPoolExecutor) -> Predictor:
        loop = asyncio.get_running_loop()
        artifacts_dir = self.settings.artifacts_dir
        try:
            predictor = await loop.run_in_executor(executor, self._factory, artifacts_dir)
            await loop.run_in_executor(executor, predictor.warmup)  # also checks the outputs
        except ArtifactError as exc:  # the message names file and problem
            logger.error("cannot start: %s (artifacts_dir=%s)", exc, artifacts_dir)
            raise
        except Exception:
            logger.exception("cannot start: loading the model from %s failed", artifacts_dir)
            raise
        return predictor

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests and queued images finish, then stop."""
        if self.state is State.STOPPED:
            return
        self.state = State.DRAINING
        self.metrics.ready.set(0)
        timeout = self.settings.request_timeout_s
        deadline = time.monotonic() + timeout
        logger.info("draining: %d requests in flight", self.in_flight)
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._batcher is not None:
            await self._batcher.stop(timeout_s=max(0.0, deadline - time.monotonic()))
        for executor in (self._executor, self._decode_executor):
            if executor is not None:
                # Never block the event loop on a stuck model call.
                executor.shutdown(wait=False, cancel_futures=True)
        self.state = State.STOPPED
        logger.info("stopped")

    def require_ready(self) -> Ready:
        """What a request needs, once per request; raises 503 while starting or draining."""
        if self.state is State.READY and self._ready is not None:
            return self._ready
        if self.state in (State.DRAINING, State.STOPPED):
            raise ShuttingDownError("the server is shutting down")
        raise NotReadyError("the model is still loading; retry shortly")

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth if self._batcher else 0

    # --- captioning --------------------------------------------------------------------------
    async def caption_one(
        self, ready: Ready, data: bytes | bytearray, settings: SearchSettings
    ) -> CaptionResponse:
        started = time.perf_counter()
        predictor, batcher = ready.predictor, ready.batcher
        batcher.ensure_room(1)  # refuse before spending time on decoding
        try:
            decoded = await self._decode(predictor, data)
            output = await self._wait(batcher.submit_many([decoded.pixels], settings)[0])
        except Exception as exc:
            self._count_image(exc)
            raise
        self._count_image(None)
        return self._response(predictor, decoded, output, settings, started)

    async def caption_many(
        self, ready: Ready, files: list[UploadedFile], settings: SearchSettings
    ) -> list[CaptionResponse | ErrorResponse]:
        """Caption every file; a file that cannot be used gets an error entry of its own."""
        started = time.perf_counter()
        predictor, batcher = ready.predictor, ready.batcher
        batcher.ensure_room(len(files))
        decoded = await asyncio.gather(
            *(self._decode_file(predictor, upload) for upload in files), return_exceptions=True
        )
        entries: list[CaptionResponse | ErrorResponse | None] = [None] * len(files)
        usable: list[tuple[int, DecodedUpload]] = []
        for index, item in enumerate(decoded):
            if isinstance(item, DecodedUpload):
                usable.append((index, item))
            else:
                entries[index] = self._error_entry(item)
        futures = batcher.submit_many([upload.pixels for _, upload in usable], settings)
        outputs = await asyncio.gather(*(self._wait(f) for f in futures), return_exceptions=True)
        for (index, upload), output in zip(usable, outputs, strict=True):
            if isinstance(output, BaseException):
                entries[index] = self._error_entry(output)
            else:
                self._count_image(None)
                entries[index] = self._response(predictor, upload, output, settings, started)
        return [entry for entry in entries if entry is not None]

    def _error_entry(self, error: BaseException) -> ErrorResponse:
        if not isinstance(error, Exception):  # cancellation and the like are not per-image
            raise error
        self._count_image(error)
        info = describe(error)
        return ErrorResponse(error=ErrorDetail(code=info.code, message=info.message))

    async def _decode_file(self, predictor: Predictor, upload: UploadedFile) -> DecodedUpload:
        if upload.too_large is not None:
            raise upload.too_large
        return await self._decode(predictor, upload.data)

    async def _decode(self, predictor: Predictor, data: bytes | bytearray) -> DecodedUpload:
        """Decode and resize off the event loop; image errors keep their codes."""

        def work() -> DecodedUpload:
            started = time.perf_counter()
            image, (width, height) = decode_upload(
                data, max_pixels=self.settings.max_image_pixels, min_size=predictor.input_size
            )
            pixels = predictor.preprocess([image])[0]
            return DecodedUpload(pixels, width, height, (time.perf_counter() - started) * 1000)

        return await anyio.to_thread.run_sync(work, limiter=self._decode_limiter)

    async def _wait(self, future: asyncio.Future[BatchOutput]) -> BatchOutput:
        try:
            return await asyncio.wait_for(future, self.settings.request_timeout_s)
        except TimeoutError:
            raise InferenceTimeoutError(
                f"no captions within {self.settings.request_timeout_s:g} s; the server is busy"
            ) from None
        except ApiError:
            raise
        except Exception as exc:  # already logged with its traceback by the batcher
            raise InferenceError("the model failed on this image") from exc

    def _response(
        self,
        predictor: Predictor,
        decoded: DecodedUpload,
        output: BatchOutput,
        settings: SearchSettings,
        started: float,
    ) -> CaptionResponse:
        result = output.result
        hypotheses = [
            _hypothesis(caption, settings.return_attention)
            for caption in result.captions[: settings.num_captions]
        ]
        return CaptionResponse(
            caption=hypotheses[0].text,
            captions=hypotheses,
            tags=[TagItem(word=t.word, probability=t.probability) for t in result.tags],
            evidence=[
                EvidenceItem(label=e.label, score=round(e.score, 4), count=e.count, box=e.box)
                for e in result.evidence
            ],
            width=decoded.width,
            height=decoded.height,
            model=predictor.model_id,
            timings_ms=Timings(
                decode=round(decoded.decode_ms, 2),
                queue=round(output.queue_ms, 2),
                encode=round(output.encode_ms, 2),
                generate=round(output.generate_ms, 2),
                total=round((time.perf_counter() - started) * 1000, 2),
            ),
        )

    def _count_image(self, error: BaseException | None) -> None:
        self.metrics.images.labels("ok" if error is None else describe(error).code).inc()


def _hypothesis(caption: Caption, with_attention: bool) -> CaptionHypothesis:
    attention = None
    if with_attention and caption.attention is not None:
        weights = np.round(np.asarray(caption.attention, dtype=np.float64), ATTENTION_DECIMALS)
        attention = [
            WordAttention(word=word, weights=grid.tolist())
            for word, grid in zip(caption.tokens, weights, strict=False)
        ]
    return CaptionHypothesis(
        text=caption.text,
        log_prob=round(float(caption.log_prob), 4),
        score=round(float(caption.score), 4),
        attention=attention,
    )
