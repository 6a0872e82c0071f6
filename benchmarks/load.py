"""Concurrent clients posting photos to `POST /caption`: the one load loop of `make bench` and
`make reliability`. Each client has one request in flight at a time, as a browser tab would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass

import httpx

BEAM_SIZE = 3
REQUEST_TIMEOUT_S = 60.0
# After a 503 `overloaded` a client waits this long, as a well-behaved one would, but briefly:
# the load is there to keep the pressure on.
OVERLOADED_BACKOFF_S = 0.05


@dataclass(frozen=True)
class Answer:
    status: str  # "200", "503", or the transport error's name ("ConnectError", "ReadTimeout")
    latency_ms: float
    response: httpx.Response | None  # None for a transport error


def client_headers() -> dict[str, str]:
    """The first of CAPTIONER_API_KEYS as a bearer token, when the servers run with keys (they
    inherit this process's environment); no header otherwise."""
    keys = [k.strip() for k in os.environ.get("CAPTIONER_API_KEYS", "").split(",") if k.strip()]
    return {"Authorization": f"Bearer {keys[0]}"} if keys else {}


def upload(image: bytes) -> dict[str, dict[str, object]]:
    """The keyword arguments of one photo's `POST /caption` at the benchmark's beam size."""
    return {
        "files": {"file": ("photo.jpg", image, "image/jpeg")},
        "data": {"beam_size": str(BEAM_SIZE)},
    }


async def post_image(client: httpx.AsyncClient, image: bytes) -> httpx.Response:
    return await client.post("/caption", **upload(image))


def is_overloaded(response: httpx.Response) -> bool:
    with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
        return response.json()["error"]["code"] == "overloaded"
    return False


def load_client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits, headers=client_headers()
    )


async def post_images(
    client: httpx.AsyncClient,
    images: list[bytes],
    concurrency: int,
    deadline: float,
    max_requests: int | None = None,
) -> list[Answer]:
    """`concurrency` clients post `images` in turn, back to back, until `deadline`
    (time.perf_counter()) or until `max_requests` have been sent."""
    answers: list[Answer] = []
    issued = 0

    async def client_loop() -> None:
        nonlocal issued
        while time.perf_counter() < deadline and (max_requests is None or issued < max_requests):
            image = images[issued % len(images)]
            issued += 1
            sent = time.perf_counter()
            try:
                response = await post_image(client, image)
            except httpx.HTTPError as exc:
                answers.append(Answer(type(exc).__name__, 0.0, None))
                continue
            latency_ms = (time.perf_counter() - sent) * 1000
            answers.append(Answer(str(response.status_code), latency_ms, response))
            if response.status_code == 503 and is_overloaded(response):
                await asyncio.sleep(OVERLOADED_BACKOFF_S)

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return answers
