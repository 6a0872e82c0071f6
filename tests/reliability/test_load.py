"""Load (quick version): a real server on 127.0.0.1, concurrent clients, a small queue bound.

Up to the queue bound no request may fail; beyond it the surplus is refused with 503 and a
Retry-After header, and nothing else goes wrong. `make reliability` runs 2 minutes at
concurrency 32 and reports latency percentiles and memory over time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.reliability_server import rss_growth_mb, run_load
from benchmarks.server_process import ServerProcess, running_server
from tests.support.fixtures import jpeg_bytes, shape_image

pytestmark = pytest.mark.slow  # the tiny trained model in a real server process

QUEUE_BOUND = 16
# Small batches keep the images the two model stages hold (2 x 4) well below the surplus of the
# over-the-bound test (2 x QUEUE_BOUND clients): with the default 16, up to 32 images sit in the
# stages instead of the queue, so on a fast machine 32 clients never filled it.
MAX_BATCH_SIZE = 4
SECONDS = 6.0
# A coarse bound for seconds of load: TensorFlow's and the allocator's caches still grow in
# steps of a few MB right after start-up. The 2-minute run in `make reliability` is the real check.
MAX_RSS_GROWTH_MB = 150.0


@pytest.fixture(scope="module")
def server(
    tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    settings = {"max_queue_size": str(QUEUE_BOUND), "max_batch_size": str(MAX_BATCH_SIZE)}
    with running_server(tiny_artifacts, tmp_path_factory.mktemp("server"), settings) as process:
        yield process


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [
        jpeg_bytes(shape_image(colour, shape, "white"), quality=95)
        for colour, shape in (("red", "circle"), ("blue", "square"), ("green", "triangle"))
    ]


def test_no_failures_up_to_the_queue_bound(server: ServerProcess, images: list[bytes]) -> None:
    # Each client has one request at a time, so at most QUEUE_BOUND images can be waiting.
    asyncio.run(run_load(server.base_url, images, QUEUE_BOUND, 5.0))  # warm-up
    result = asyncio.run(
        run_load(server.base_url, images, QUEUE_BOUND, SECONDS, pid=server.process.pid)
    )
    summary = result.summary()
    print("load at the bound:", summary)
    assert result.requests > QUEUE_BOUND, summary
    assert result.failed == 0, (summary, result.unexpected_bodies)
    assert rss_growth_mb(result.rss_samples_mb) < MAX_RSS_GROWTH_MB, summary


def test_over_the_bound_the_surplus_gets_503_with_retry_after(
    server: ServerProcess, images: list[bytes]
) -> None:
    result = asyncio.run(run_load(server.base_url, images, 2 * QUEUE_BOUND, SECONDS))
    summary = result.summary()
    print("load over the bound:", summary)
    assert set(result.statuses) <= {"200", "503"}, (summary, result.unexpected_bodies)
    assert result.statuses["503"] > 0, f"the queue bound was never reached: {summary}"
    assert result.statuses["200"] > 0, summary
    assert result.overloaded_without_retry_after == 0, summary
    assert result.unexpected_bodies == [], result.unexpected_bodies
    # The server is still healthy afterwards.
    after = asyncio.run(run_load(server.base_url, images, 2, 1.0))
    assert after.failed == 0, after.summary()
