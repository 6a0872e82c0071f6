"""Dynamic micro-batching in front of the model, in the manner of TF Serving or Triton.

Requests put one image each on a bounded queue. A collector task takes up to `max_batch_size`
images (waiting at most `max_wait_s` after the first one for more to arrive), runs the encoder
once for all of them and the decoder once per group of identical `SearchSettings`. While a batch
runs, new requests queue up and form the next, larger, batch: under load batches grow by
themselves.

Two stages, one thread each: the encoder thread encodes batch N+1 while the decoder thread
decodes batch N (at most one batch per stage, so memory stays bounded). Each model runtime is
only ever called from its own thread. With one executor for both, the stages simply alternate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from app.errors import OverloadedError, ShuttingDownError
from app.metrics import Metrics
from captioning.search_settings import SearchSettings
from captioning.types import CaptionResult, EncodedImages, Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutput:
    """The captions of one image (with its tags and evidence), and where its time went."""

    result: CaptionResult
    queue_ms: float
    encode_ms: float  # of the whole batch the image was part of
    generate_ms: float  # of its group of identical search settings
    batch_size: int


@dataclass(eq=False)
class _Job:
    pixels: np.ndarray  # (size, size, 3) float32, already preprocessed
    settings: SearchSettings
    future: asyncio.Future[BatchOutput]
    enqueued_at: float = field(default_factory=time.perf_counter)
    queue_ms: float = 0.0


class MicroBatcher:
    def __init__(
        self,
        predictor: Predictor,
        executor: Executor,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue_size: int,
        metrics: Metrics | None = None,
        decode_executor: Executor | None = None,
    ) -> None:
        self._predictor = predictor
        self._executor = executor
        self._decode_executor = decode_executor or executor
        self._decoding: asyncio.Task[None] | None = None  # the batch in the decode stage
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._max_queue_size = max_queue_size
        self._metrics = metrics
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._waiting = 0  # accepted, inference not started (the bounded "queue depth")
        self._running = 0  # in the batches being encoded or decoded now
        self._accepting = False
        self._task: asyncio.Task[None] | None = None
        self._forming: list[_Job] = []  # taken off the queue for the next batch, not yet run
        self._batch_seconds_ema = 0.1  # for Retry-After; refined by every batch

    # --- admission ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self._waiting

    def ensure_room(self, count: int = 1) -> None:
        """Raise `ShuttingDownError` or `OverloadedError` unless `count` more images fit."""
        if not self._accepting:
            raise ShuttingDownError("the server is shutting down")
        if self._waiting + count > self._max_queue_size:
            raise OverloadedError(
                "the server is busy: the request queue is full; retry after the Retry-After delay",
                retry_after_s=self.retry_after_s(),
            )

    def submit_many(
        self, pixels: list[np.ndarray], settings: SearchSettings
    ) -> list[asyncio.Future[BatchOutput]]:
        """Queue several images at once, all or none (one request is never half-refused)."""
        self.ensure_room(len(pixels))
        loop = asyncio.get_running_loop()
        futures = []
        for image in pixels:
            job = _Job(image, settings, loop.create_future())
            self._queue.put_nowait(job)
            futures.append(job.future)
        self._waiting += len(pixels)
        self._report_depth()
        return futures

    async def submit(self, pixels: np.ndarray, settings: SearchSettings) -> BatchOutput:
        (future,) = self.submit_many([pixels], settings)
        return await future

    def retry_after_s(self) -> int:
        """Rough time to clear the current queue, in whole seconds (at least 1)."""
        batches_ahead = self._waiting / self._max_batch_size + 1
        return max(1, math.ceil(self._batch_seconds_ema * batches_ahead))

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._accepting = True
        self._task = asyncio.create_task(self._collect_forever(), name="micro-batcher")

    async def stop(self, timeout_s: float) -> None:
        """Refuse new work, let queued work finish (up to `timeout_s`), then stop."""
        self._accepting = False
        deadline = time.monotonic() + timeout_s
        while self._waiting + self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._waiting + self._running:
            logger.warning("shutdown: %d queued images were not captioned in time", self._waiting)
        for task in (self._task, self._decoding):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        # Whatever is left (only after a timeout) is answered rather than left hanging.
        left = self._forming + [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        _fail(left, ShuttingDownError("the server is shutting down"))
        self._forming = []
        self._waiting = 0
        self._report_depth()

    # --- collecting and running batches ------------------------------------------------------
    async def _collect_forever(self) -> None:
        while True:
            batch = await self._next_batch()
            self._waiting -= len(batch)
            self._report_depth()
            # Requests that timed out or went away while queued are skipped, not computed.
            live = [job for job in batch if not job.future.done()]
            try:
                if live:
                    await self._run_batch(live)
            except Exception as exc:  # a bug here must not stop batching for everyone after
                logger.error("batching failed", exc_info=exc)
                _fail(live, exc)
            self._forming = []

    async def _next_batch(self) -> list[_Job]:
        batch = self._forming = [await self._queue.get()]
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run_batch(self, jobs: list[_Job]) -> None:
        """Encode `jobs`, then hand them to the decode stage and return: the next batch can be
        encoded while this one decodes."""
        started = time.perf_counter()
        for job in jobs:
            job.queue_ms = (started - job.enqueued_at) * 1000
        self._running += len(jobs)
        loop = asyncio.get_running_loop()
        try:
            encoded, encode_ms = await loop.run_in_executor(self._executor, self._encode, jobs)
        except Exception as exc:  # the encoder failed: every image of the batch fails
            logger.error("encoder failed on a batch of %d images", len(jobs), exc_info=exc)
            self._running -= len(jobs)
            self._settle(jobs, [exc] * len(jobs), started)
            return
        if self._decoding is not None:  # one batch at a time in the decode stage
            await asyncio.wait([self._decoding])  # never raises: that batch settles itself
        self._decoding = asyncio.create_task(self._decode_stage(jobs, encoded, encode_ms, started))

    async def _decode_stage(
        self, jobs: list[_Job], encoded: EncodedImages, encode_ms: float, started: float
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(
                self._decode_executor, self._decode, jobs, encoded, encode_ms
            )
        except Exception as exc:  # a bug here must not leave the requests hanging
            logger.error("decoding failed for a batch of %d images", len(jobs), exc_info=exc)
            outcomes = [exc] * len(jobs)
        finally:
            self._running -= len(jobs)
        self._settle(jobs, outcomes, started)

    def _settle(
        self, jobs: list[_Job], outcomes: list[BatchOutput | Exception], started: float
    ) -> None:
        elapsed = time.perf_counter() - started
        self._batch_seconds_ema = 0.8 * self._batch_seconds_ema + 0.2 * elapsed
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(jobs))
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _encode(self, jobs: list[_Job]) -> tuple[EncodedImages, float]:
        """Encoder thread: one encoder call for the whole batch."""
        started = time.perf_counter()
        encoded = self._predictor.encode(np.stack([job.pixels for job in jobs]))
        encode_ms = (time.perf_counter() - started) * 1000
        self._observe("encode", encode_ms)
        return encoded, encode_ms

    def _decode(
        self, jobs: list[_Job], encoded: EncodedImages, encode_ms: float
    ) -> list[BatchOutput | Exception]:
        """Decoder thread: one decoder call per distinct option set."""
        groups: dict[SearchSettings, list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault(job.settings, []).append(index)
        outcomes: list[BatchOutput | Exception] = [RuntimeError("not generated")] * len(jobs)
        for settings, indices in groups.items():
            group_started = time.perf_counter()
            try:
                subset = encoded if len(groups) == 1 else encoded[indices]
                results = self._predictor.generate(subset, settings)
            except Exception as exc:  # only this group fails; the others still get captions
                logger.error("caption decoding failed for %d images", len(indices), exc_info=exc)
                for index in indices:
                    outcomes[index] = exc
                continue
            generate_ms = (time.perf_counter() - group_started) * 1000
            self._observe("generate", generate_ms)
            for index, result in zip(indices, results, strict=True):
                if not result.captions:  # never answer 200 with an empty caption
                    logger.error("the model returned no caption for an image")
                    outcomes[index] = RuntimeError("the model returned no caption")
                    continue
                outcomes[index] = BatchOutput(
                    result=result,
                    queue_ms=jobs[index].queue_ms,
                    encode_ms=encode_ms,
                    generate_ms=generate_ms,
                    batch_size=len(jobs),
                )
        return outcomes

    def _observe(self, stage: str, milliseconds: float) -> None:
        if self._metrics is not None:
            self._metrics.inference_latency.labels(stage).observe(milliseconds / 1000)

    def _report_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._waiting)


def _fail(jobs: list[_Job], error: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)
