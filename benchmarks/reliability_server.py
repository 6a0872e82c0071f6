"""Reliability under load, overload and SIGTERM, on a real server process: shared by tests and
`python -m benchmarks.reliability`. The server is benchmarks/server_process.py's, the clients
benchmarks/load.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from benchmarks.load import (
    REQUEST_TIMEOUT_S,
    Answer,
    client_headers,
    is_overloaded,
    load_client,
    post_image,
    post_images,
)
from benchmarks.procfs import rss_mb
from benchmarks.server_process import ServerProcess

RSS_SAMPLE_S = 1.0
# Lines uvicorn logs when its shutdown ran to the end (lifespan drained, process finished).
SHUTDOWN_COMPLETE = "Application shutdown complete"
# uvicorn (>= 0.29) re-raises the signal it caught once it has shut down gracefully, so a server
# stopped by SIGTERM ends "killed by SIGTERM" (-15 here, 143 in a shell) after a clean exit path.
CLEAN_SIGTERM_EXITS = frozenset({0, -signal.SIGTERM})


# --- load ---------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    concurrency: int
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "503", "ConnectError"...
    latencies_ms: list[float] = field(default_factory=list)  # of the 200 answers
    overloaded_without_retry_after: int = 0
    unexpected_bodies: list[str] = field(default_factory=list)  # first few, for the report
    rss_samples_mb: list[tuple[float, float]] = field(default_factory=list)  # (second, MB)

    def record(self, answer: Answer) -> None:
        self.statuses[answer.status] += 1
        response = answer.response
        if response is None:
            return
        if response.status_code == 200:
            self.latencies_ms.append(answer.latency_ms)
        elif response.status_code == 503 and is_overloaded(response):
            if not response.headers.get("Retry-After", "").isdigit():
                self.overloaded_without_retry_after += 1
        elif len(self.unexpected_bodies) < 5:
            self.unexpected_bodies.append(f"{answer.status}: {response.text[:300]}")

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        """Anything but 200, and 503s that lack their Retry-After."""
        return self.requests - self.statuses["200"]

    def summary(self) -> dict[str, Any]:
        latencies = self.latencies_ms
        result: dict[str, Any] = {
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 1),
            "requests": self.requests,
            "statuses": dict(sorted(self.statuses.items())),
            "requests_per_s": round(self.requests / self.seconds, 2) if self.seconds else 0.0,
            "overloaded_without_retry_after": self.overloaded_without_retry_after,
        }
        if latencies:
            quantiles = (50, 90, 95, 99)
            points = np.percentile(latencies, quantiles)
            result["latency_ms"] = {
                f"p{q}": round(float(point), 1) for q, point in zip(quantiles, points, strict=True)
            } | {"max": round(max(latencies), 1)}
        if self.rss_samples_mb:
            values = [mb for _, mb in self.rss_samples_mb]
            result["rss_mb"] = {
                "first": round(values[0], 1),
                "last": round(values[-1], 1),
                "min": round(min(values), 1),
                "max": round(max(values), 1),
                "samples": len(values),
            }
        return result


def rss_growth_mb(samples: list[tuple[float, float]]) -> float:
    """Memory growth across a run: median of the last third minus that of the first third.

    Medians of thirds, not last minus first: batches come and go, and a single sample can
    land on a momentary peak. A leak shows up as a steady climb that this still catches."""
    values = [mb for _, mb in samples]
    third = max(1, len(values) // 3)
    return float(np.median(values[-third:]) - np.median(values[:third]))


async def run_load(
    base_url: str,
    images: list[bytes],
    concurrency: int,
    seconds: float,
    pid: int | None = None,
) -> LoadResult:
    """`concurrency` clients post images back to back for `seconds`; RSS of `pid` is sampled."""
    result = LoadResult(concurrency)
    started = time.perf_counter()
    deadline = started + seconds

    async def sample_rss() -> None:
        while pid is not None and time.perf_counter() < deadline:
            result.rss_samples_mb.append((time.perf_counter() - started, rss_mb(pid)))
            await asyncio.sleep(RSS_SAMPLE_S)

    async with load_client(base_url, concurrency) as client:
        answers, _ = await asyncio.gather(
            post_images(client, images, concurrency, deadline), sample_rss()
        )
    result.seconds = time.perf_counter() - started
    for answer in answers:
        result.record(answer)
    return result


# --- SIGTERM under load ---------------------------------------------------------------------------


@dataclass
class SigtermResult:
    in_flight: Counter[str] = field(default_factory=Counter)  # requests sent before SIGTERM
    after: Counter[str] = field(default_factory=Counter)  # requests sent after it
    exit_code: int | None = None
    shutdown_complete: bool = False
    seconds_to_exit: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "in_flight": dict(self.in_flight),
            "after_sigterm": dict(self.after),
            "exit_code": self.exit_code,
            "shutdown_complete_logged": self.shutdown_complete,
            "seconds_to_exit": round(self.seconds_to_exit, 2),
        }


def _outcome(response: httpx.Response | BaseException) -> str:
    if isinstance(response, httpx.Response):
        return str(response.status_code)
    return type(response).__name__


async def sigterm_under_load(
    server: ServerProcess, images: list[bytes], in_flight: int, late_requests: int
) -> SigtermResult:
    """Send `in_flight` requests, SIGTERM the server while it is serving them, then try
    `late_requests` more on new connections, and wait for the process to exit.

    Run the server with `max_batch_size=1`: images then queue one behind the other, and the
    queue depth in /metrics shows that the server has received the requests before the signal.
    """
    result = SigtermResult()
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=REQUEST_TIMEOUT_S, limits=limits, headers=client_headers()
    ) as client:
        tasks = [
            asyncio.create_task(post_image(client, images[i % len(images)]))
            for i in range(in_flight)
        ]
        await _wait_for_queue(server.base_url, max(1, in_flight // 2))
        server.process.send_signal(signal.SIGTERM)
        signalled = time.perf_counter()
        await asyncio.sleep(0.2)  # uvicorn closes its listening socket first thing
        late: list[httpx.Response | BaseException] = []
        async with httpx.AsyncClient(
            base_url=server.base_url, timeout=10.0, headers=client_headers()
        ) as fresh:
            for i in range(late_requests):
                try:
                    late.append(await post_image(fresh, images[i % len(images)]))
                except httpx.HTTPError as exc:
                    late.append(exc)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    result.in_flight.update(_outcome(o) for o in outcomes)
    result.after.update(_outcome(o) for o in late)
    loop = asyncio.get_running_loop()
    result.exit_code = await loop.run_in_executor(None, server.process.wait, 60)
    result.seconds_to_exit = time.perf_counter() - signalled
    result.shutdown_complete = SHUTDOWN_COMPLETE in server.log_text()
    return result


async def _wait_for_queue(base_url: str, depth: int, timeout_s: float = 60.0) -> None:
    """Poll /metrics until at least `depth` images wait for the model."""
    deadline = time.perf_counter() + timeout_s
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0, headers=client_headers()) as probe:
        while time.perf_counter() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                value = _metric((await probe.get("/metrics")).text, "captioner_queue_depth")
                if value is not None and value >= depth:
                    return
            await asyncio.sleep(0.01)
    raise TimeoutError(f"the queue never reached {depth} images")


def _metric(text: str, name: str) -> float | None:
    """The value of an unlabelled sample in Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
