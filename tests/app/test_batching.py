"""Micro-batching: requests share model calls, the queue is bounded, failures stay local."""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sample_images import BLUE, GREEN, RED, png

from app.batching import MicroBatcher
from app.errors import OverloadedError, ShuttingDownError
from app.metrics import Metrics
from captioning.search_settings import SearchSettings

COLOURS = {RED: "red", GREEN: "green", BLUE: "blue"}


async def post(client: httpx.AsyncClient, colour=RED, **fields: object) -> httpx.Response:
    return await client.post(
        "/caption",
        files={"file": ("photo.png", png(colour), "image/png")},
        data={name: str(value) for name, value in fields.items()},
    )


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def test_concurrent_requests_are_batched(make_app, make_predictor, serve) -> None:
    predictor = make_predictor(encode_delay_s=0.05)
    app = make_app(predictor, max_batch_wait_ms=50, max_batch_size=16)
    colours = [RED, GREEN, BLUE] * 5 + [GREEN]

    async def main() -> tuple[list[httpx.Response], str]:
        async with serve(app) as client:
            responses = await asyncio.gather(*(post(client, c) for c in colours))
            return responses, (await client.get("/metrics")).text

    responses, metrics = asyncio.run(main())
    # Every answer went back to its own request.
    for colour, response in zip(colours, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["caption"] == f"a {COLOURS[colour]} square on a table"
    assert sum(predictor.encode_batches) == 16
    assert max(predictor.encode_batches) > 1
    batches = metric(metrics, "captioner_batch_size_count")
    assert batches == len(predictor.encode_batches)
    assert metric(metrics, 'captioner_batch_size_bucket{le="1.0"}') < batches
    assert metric(metrics, "captioner_batch_size_sum") == 16
    # One inference thread for loading, warm-up and every batch.
    assert predictor.threads == {"inference_0"}


def test_mixed_options_share_the_encoder_and_split_the_decoder(
    make_app, make_predictor, serve, until
) -> None:
    gate = threading.Event()
    predictor = make_predictor(gate=gate)
    app = make_app(predictor)
    service = app.state.service
    queued_options = [
        (GREEN, {"beam_size": 1}),
        (BLUE, {"beam_size": 3, "num_captions": 2}),
        (RED, {"beam_size": 1}),
        (GREEN, {"beam_size": 3, "num_captions": 2}),
    ]

    async def main() -> list[httpx.Response]:
        async with serve(app) as client:
            first = asyncio.create_task(post(client, RED, beam_size=1))
            await until(predictor.encode_started.is_set)
            rest = [asyncio.create_task(post(client, c, **o)) for c, o in queued_options]
            await until(lambda: service.queue_depth == len(queued_options))
            gate.set()
            return [await first, *await asyncio.gather(*rest)]

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 5
    assert [len(r.json()["captions"]) for r in responses] == [1, 1, 2, 1, 2]
    assert [r.json()["caption"].split()[1] for r in responses] == [
        "red",
        "green",
        "blue",
        "red",
        "green",
    ]
    assert predictor.encode_batches == [1, 4]  # the four queued images: one encoder call
    second_batch = predictor.generate_calls[-2:]
    assert sorted((size, o.beam_size) for size, o in second_batch) == [(2, 1), (2, 3)]


def test_full_queue_answers_503_with_retry_after(make_app, make_predictor, serve, until) -> None:
    gate = threading.Event()
    predictor = make_predictor(gate=gate)
    app = make_app(predictor, max_batch_size=1, max_queue_size=2, max_images_per_request=2)
    service = app.state.service

    async def main() -> dict[str, object]:
        async with serve(app) as client:
            running = asyncio.create_task(post(client, RED))
            await until(predictor.encode_started.is_set)
            queued = [asyncio.create_task(post(client, c)) for c in (GREEN, BLUE)]
            await until(lambda: service.queue_depth == 2)
            seen = {
                "refused": await post(client, RED),
                "refused_batch": await client.post(
                    "/captions", files=[("files", ("a.png", png(), "image/png"))]
                ),
                "health": await client.get("/health"),
                "metrics": (await client.get("/metrics")).text,
            }
            gate.set()
            seen["served"] = [await running, *await asyncio.gather(*queued)]
            seen["after"] = await post(client, BLUE)
            return seen

    seen = asyncio.run(main())
    for key in ("refused", "refused_batch"):
        response = seen[key]
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "overloaded"
        assert int(response.headers["retry-after"]) >= 1
    assert seen["health"].status_code == 200
    assert metric(seen["metrics"], "captioner_queue_depth") == 2
    assert 'route="/caption",status="503"} 1.0' in seen["metrics"]
    assert 'route="/captions",status="503"} 1.0' in seen["metrics"]
    assert [r.status_code for r in seen["served"]] == [200, 200, 200]
    assert seen["after"].status_code == 200


def test_slow_answers_time_out_and_are_not_computed_late(
    make_app, make_predictor, serve, until
) -> None:
    gate = threading.Event()
    predictor = make_predictor(gate=gate)
    app = make_app(predictor, request_timeout_s=0.3, max_batch_size=1)

    async def main() -> list[httpx.Response]:
        async with serve(app) as client:
            running = asyncio.create_task(post(client, RED))
            await until(predictor.encode_started.is_set)
            waiting = asyncio.create_task(post(client, GREEN))
            timed_out = [await running, await waiting]
            gate.set()
            return [*timed_out, await post(client, BLUE)]

    first, second, later = asyncio.run(main())
    for response in (first, second):
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "timeout"
    assert later.status_code == 200
    # The image that timed out while queued was skipped, not encoded for nobody.
    assert predictor.encode_batches == [1, 1]


def test_encoder_failure_fails_the_batch_not_the_server(make_client, make_predictor) -> None:
    predictor = make_predictor(fail_encode=True)
    client = make_client(predictor)
    files = {"file": ("a.png", png(), "image/png")}
    response = client.post("/caption", files=files)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "inference_failed"
    assert "secret" not in response.text
    predictor.fail_encode = False
    assert client.post("/caption", files=files).status_code == 200


def test_an_empty_answer_from_the_model_is_an_error(client, predictor) -> None:
    predictor.no_captions = True
    response = client.post("/caption", files={"file": ("a.png", png(), "image/png")})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "inference_failed"


def test_decoder_failure_stays_in_its_option_group(make_app, make_predictor, serve, until) -> None:
    gate = threading.Event()
    predictor = make_predictor(gate=gate, fail_generate=lambda options: options.beam_size == 2)
    app = make_app(predictor)
    service = app.state.service

    async def main() -> list[httpx.Response]:
        async with serve(app) as client:
            first = asyncio.create_task(post(client, RED))
            await until(predictor.encode_started.is_set)
            failing = asyncio.create_task(post(client, GREEN, beam_size=2))
            fine = asyncio.create_task(post(client, BLUE, beam_size=1))
            await until(lambda: service.queue_depth == 2)
            gate.set()
            return [await first, await failing, await fine]

    first, failing, fine = asyncio.run(main())
    assert predictor.encode_batches == [1, 2]
    assert first.status_code == 200 and fine.status_code == 200
    assert failing.status_code == 500
    assert failing.json()["error"]["code"] == "inference_failed"


# --- the batcher on its own ----------------------------------------------------------------------
def _batcher(predictor, executor, **limits: int) -> MicroBatcher:
    predictor.warmup()  # as the service does before batching starts
    return MicroBatcher(
        predictor,
        executor,
        max_batch_size=limits.get("max_batch_size", 4),
        max_wait_s=0.001,
        max_queue_size=limits.get("max_queue_size", 8),
        metrics=Metrics(),
    )


def _pixels(predictor) -> list:
    from PIL import Image

    return list(predictor.preprocess([Image.new("RGB", (8, 8), RED)]))


def test_batcher_admits_a_request_whole_or_not_at_all(make_predictor, until) -> None:
    gate = threading.Event()
    predictor = make_predictor(gate=gate)

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            batcher = _batcher(predictor, executor, max_batch_size=1, max_queue_size=3)
            batcher.start()
            image = _pixels(predictor)[0]
            running = batcher.submit_many([image], SearchSettings(max_length=12))
            await until(predictor.encode_started.is_set)
            batcher.submit_many([image, image], SearchSettings(max_length=12))
            with pytest.raises(OverloadedError) as refused:
                batcher.submit_many([image, image], SearchSettings(max_length=12))
            assert refused.value.headers["Retry-After"].isdigit()
            assert batcher.depth == 2  # nothing of the refused request was queued
            batcher.submit_many([image], SearchSettings(max_length=12))
            gate.set()
            await asyncio.gather(*running)
            await batcher.stop(timeout_s=5)
            assert batcher.depth == 0

    asyncio.run(main())


def test_batcher_stop_finishes_queued_work_then_refuses(make_predictor) -> None:
    predictor = make_predictor(encode_delay_s=0.02)

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            batcher = _batcher(predictor, executor, max_batch_size=2)
            batcher.start()
            image = _pixels(predictor)[0]
            futures = batcher.submit_many([image] * 5, SearchSettings(max_length=12, beam_size=1))
            await batcher.stop(timeout_s=5)
            outputs = [future.result() for future in futures]  # all done, none failed
            assert [o.result.captions[0].text for o in outputs] == ["a red square on a table"] * 5
            assert sum(predictor.encode_batches) == 5
            with pytest.raises(ShuttingDownError):
                batcher.submit_many([image], SearchSettings(max_length=12))

    asyncio.run(main())


def test_batcher_stop_timeout_answers_what_is_left(make_predictor, until) -> None:
    gate = threading.Event()
    predictor = make_predictor(gate=gate)

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            batcher = _batcher(predictor, executor, max_batch_size=1)
            batcher.start()
            image = _pixels(predictor)[0]
            running = batcher.submit_many([image], SearchSettings(max_length=12))
            await until(predictor.encode_started.is_set)
            queued = batcher.submit_many([image], SearchSettings(max_length=12))
            await batcher.stop(timeout_s=0.1)  # the model is stuck: give up waiting
            for future in running + queued:
                assert isinstance(future.exception(), ShuttingDownError)
            gate.set()  # let the worker thread finish so the executor can shut down

    asyncio.run(main())
