"""End to end over HTTP: the real service in a uvicorn subprocess on 127.0.0.1, under load.

Measures the time from process start to `/ready` answering 200, latency and images/s at
several concurrency levels (JPEG uploads to `POST /caption`), the CPU time that server and
client spend per request (what bounds throughput once the cores are busy), and the peak
resident memory (VmHWM) of the server process and its children.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.images import PHOTO_SIZE, jpeg_set
from benchmarks.load import (
    BEAM_SIZE,
    REQUEST_TIMEOUT_S,
    client_headers,
    load_client,
    post_image,
    post_images,
    upload,
)
from benchmarks.machine import usable_cores
from benchmarks.server_process import HOST, running_server
from benchmarks.stats import summarize

logger = logging.getLogger(__name__)

CONCURRENCY_LEVELS = (1, 4, 8, 16)
UPLOAD_IMAGES = 8  # distinct JPEGs, sent in turn


@dataclass(frozen=True)
class LoadPlan:
    requests_per_level: dict[int, int]  # timed requests per run, by concurrency
    repeats: int  # runs per concurrency level
    max_seconds_per_run: float  # a run stops early (with what it has) after this long
    server_starts: int  # the ready time is measured this many times


def own_cpu_seconds() -> float:
    """User + system CPU time of this (the client's) process so far."""
    times = os.times()
    return times.user + times.system


async def load_run(
    base_url: str,
    images: list[bytes],
    concurrency: int,
    requests: int,
    max_seconds: float,
    server_cpu_seconds: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """`concurrency` clients post `requests` images in total (after one untimed round).

    With `server_cpu_seconds` (the server's CPU time so far), the timed part's CPU time of
    server and client (this process) is measured too."""
    async with load_client(base_url, concurrency) as client:
        await asyncio.gather(
            *(post_image(client, images[i % len(images)]) for i in range(concurrency))
        )
        cpu_before = (server_cpu_seconds() if server_cpu_seconds else 0.0), own_cpu_seconds()
        started = time.perf_counter()
        answers = await post_images(client, images, concurrency, started + max_seconds, requests)
        elapsed = time.perf_counter() - started
        cpu: dict[str, float] = {}
        if server_cpu_seconds is not None:
            cpu["server_cpu_s"] = server_cpu_seconds() - cpu_before[0]
            cpu["client_cpu_s"] = own_cpu_seconds() - cpu_before[1]
    answered = [answer for answer in answers if answer.status == "200" and answer.response]
    return {
        **cpu,
        "seconds": elapsed,
        "ok": len(answered),
        "errors": dict(Counter(answer.status for answer in answers if answer.status != "200")),
        "images_per_s": len(answered) / elapsed if elapsed > 0 else 0.0,
        "latencies_ms": [answer.latency_ms for answer in answered],
        # The server's own timings_ms per request.
        "server_ms": [a.response.json().get("timings_ms", {}) for a in answered if a.response],
    }


def sample_caption(base_url: str, image: bytes) -> str:
    """The caption of one upload, to show in the log that the service really captions."""
    response = httpx.post(
        f"{base_url}/caption", **upload(image), headers=client_headers(), timeout=REQUEST_TIMEOUT_S
    )
    response.raise_for_status()
    body = response.json()
    captions = body.get("captions") or [{}]
    return str(captions[0].get("text", body))


def summarize_level(runs: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """Median images/s over the runs; latency percentiles over all their requests; CPU time
    per answered request and the share of the `cores` that server and client kept busy."""
    latencies = [value for run in runs for value in run["latencies_ms"]]
    errors: dict[str, int] = {}
    for run in runs:
        for status, count in run["errors"].items():
            errors[status] = errors.get(status, 0) + count
    level: dict[str, Any] = {
        "images_per_s": float(np.median([run["images_per_s"] for run in runs])),
        "images_per_s_runs": [round(run["images_per_s"], 3) for run in runs],
        "requests": sum(run["ok"] for run in runs),
        "errors": errors,
    }
    answered = level["requests"]
    if answered and all("server_cpu_s" in run for run in runs):
        server_cpu = sum(run["server_cpu_s"] for run in runs)
        client_cpu = sum(run["client_cpu_s"] for run in runs)
        level.update(
            server_cpu_ms_per_request=1000 * server_cpu / answered,
            client_cpu_ms_per_request=1000 * client_cpu / answered,
            cores_busy=(server_cpu + client_cpu) / (sum(run["seconds"] for run in runs) * cores),
        )
    if latencies:
        level.update(
            p50_ms=float(np.percentile(latencies, 50)),
            p95_ms=float(np.percentile(latencies, 95)),
            latency_ms=summarize(latencies),
        )
    # Where a request's time goes on the server (median per stage): the rest of the latency
    # is HTTP, multipart parsing and the client.
    stages: dict[str, list[float]] = {}
    for run in runs:
        for timings in run.get("server_ms", []):
            for stage, value in timings.items():
                stages.setdefault(stage, []).append(float(value))
    if stages:
        level["server_median_ms"] = {
            stage: float(np.median(values)) for stage, values in stages.items()
        }
    return level


def bench_http(artifacts: Path, plan: LoadPlan) -> dict[str, Any]:
    """Start the server `plan.server_starts` times (ready time); load the last one."""
    images = jpeg_set(UPLOAD_IMAGES)
    ready_s: list[float] = []
    results: dict[str, Any] = {
        "host": HOST,
        "beam_size": BEAM_SIZE,
        "upload_bytes_mean": sum(map(len, images)) / len(images),
        "upload_size": "x".join(map(str, PHOTO_SIZE)),
        "concurrency": {},
    }
    with tempfile.TemporaryDirectory(prefix="captioner-bench-") as log_dir:
        for start in range(plan.server_starts):
            with running_server(artifacts, Path(log_dir)) as server:
                ready_s.append(server.ready_s)
                logger.info("server %d ready in %.2f s", start + 1, ready_s[-1])
                if start < plan.server_starts - 1:
                    continue
                results["peak_rss_at_ready_mb"] = server.peak_rss_mb()
                results["sample_caption"] = sample_caption(server.base_url, images[0])
                logger.info("sample caption: %r", results["sample_caption"])
                runs: dict[int, list[dict[str, Any]]] = {c: [] for c in CONCURRENCY_LEVELS}
                for _ in range(plan.repeats):  # levels interleaved, as the micro-benchmarks
                    for concurrency in CONCURRENCY_LEVELS:
                        run = asyncio.run(
                            load_run(
                                server.base_url,
                                images,
                                concurrency,
                                plan.requests_per_level[concurrency],
                                plan.max_seconds_per_run,
                                server.cpu_seconds,
                            )
                        )
                        runs[concurrency].append(run)
                        logger.info(
                            "concurrency %d: %.2f images/s, %d ok, errors %s",
                            concurrency,
                            run["images_per_s"],
                            run["ok"],
                            run["errors"] or "none",
                        )
                for concurrency, level_runs in runs.items():
                    results["concurrency"][str(concurrency)] = summarize_level(
                        level_runs, usable_cores()
                    )
                results["peak_rss_mb"] = server.peak_rss_mb()
                results["rss_after_load_mb"] = server.rss_mb()
    results["ready_s"] = summarize(ready_s)
    return results
