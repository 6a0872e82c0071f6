"""Fuzzing image decoding with mutated JPEG, PNG, GIF, WebP and BMP files (quick version).

`make reliability` runs the same strategy for many more examples. Only the documented
`ImageError` codes may come out, every decode is quick, and memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from benchmarks.reliability_images import (
    FORMATS,
    IMAGE_ERROR_CODES,
    DecodeStats,
    decode_and_record,
    mutated_images,
    seed_images,
)
from captioning.images import decode_image
from tests.support.apps import fake_model_app

# Generous for a busy 2-core CI machine: the seeds are tiny, so real decodes take milliseconds.
MAX_DECODE_S = 2.0
# Peak memory above the start: a few copies of a FUZZ_MAX_PIXELS (2 MP) RGBA image, plus slack.
MAX_PEAK_GROWTH_MB = 256.0
FUZZ = settings(
    max_examples=300,
    deadline=None,  # timing is asserted on the decode itself, not on Hypothesis' bookkeeping
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_every_seed_is_a_valid_image() -> None:
    """Otherwise the fuzzer would only ever mutate garbage."""
    for image_format in FORMATS:
        image = decode_image(seed_images()[image_format])
        assert image.size == (32, 24), image_format


@pytest.fixture(scope="module")
def stats() -> DecodeStats:
    return DecodeStats()


@FUZZ
@given(sample=mutated_images())
def test_decode_image_raises_only_documented_errors(
    stats: DecodeStats, sample: tuple[str, bytes]
) -> None:
    image_format, data = sample
    outcome = decode_and_record(stats, image_format, data)
    assert outcome == "ok" or outcome in IMAGE_ERROR_CODES


def test_decoding_was_fast_and_memory_bounded(stats: DecodeStats) -> None:
    """Runs after the fuzz test above (same module-scoped stats)."""
    summary = stats.summary()
    print("image fuzzing:", summary)  # shown with -s; the long run writes it to the report
    assert stats.examples >= 100, "the fuzz test did not run"
    assert stats.max_seconds < MAX_DECODE_S, summary
    assert len(summary["outcomes"]) >= 3, f"the mutations reach too few paths: {summary}"
    if stats.peak_measured:
        assert stats.peak_growth_mb < MAX_PEAK_GROWTH_MB, summary


# --- the same bytes through the upload route ------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = fake_model_app(
        tmp_path_factory.mktemp("unused"), max_image_pixels=2_000_000, max_batch_wait_ms=0
    )
    with TestClient(app) as test_client:
        yield test_client


@settings(FUZZ, max_examples=60)
@given(sample=mutated_images())
def test_upload_route_answers_documented_errors(
    client: TestClient, sample: tuple[str, bytes]
) -> None:
    _, data = sample
    response = client.post("/caption", files={"file": ("upload.bin", data, "image/jpeg")})
    body = response.json()
    if response.status_code == 200:
        assert body["caption"]
        return
    assert response.status_code in (413, 415, 422), body
    assert body["error"]["code"] in IMAGE_ERROR_CODES, body
    assert body["error"]["message"]
