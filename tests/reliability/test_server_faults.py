"""Faults around the server: tampered artifacts, and SIGTERM while requests are in flight."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from benchmarks.reliability_server import CLEAN_SIGTERM_EXITS, sigterm_under_load
from benchmarks.server_process import running_server
from captioning.bundle import ArtifactError
from tests.support.fixtures import jpeg_bytes, shape_image

pytestmark = pytest.mark.slow  # the tiny trained model; a real server process


def test_a_tampered_optional_file_stops_startup(tiny_artifacts: Path, tmp_path: Path) -> None:
    """tests/app/test_real_model.py covers required files; the optional LiteRT encoder is
    hash-checked too: a swapped encoder.tflite must not be served in place of the real one."""
    folder = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, folder)
    tflite = folder / "encoder.tflite"
    assert tflite.is_file(), "the tiny model was exported without its LiteRT encoder"
    data = bytearray(tflite.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the middle: still a plausible file
    tflite.write_bytes(bytes(data))
    settings = Settings(_env_file=None, artifacts_dir=folder)  # type: ignore[call-arg]
    failure = pytest.raises(
        ArtifactError, match=re.escape("encoder.tflite does not match the sha256")
    )
    with failure, TestClient(create_app(settings)):
        pass


def test_sigterm_under_load_finishes_in_flight_requests(
    tiny_artifacts: Path, tmp_path: Path
) -> None:
    images = [jpeg_bytes(shape_image("red", "circle", "white"), quality=95)]
    # One image per batch: the requests queue up, and /metrics shows they have arrived.
    with running_server(tiny_artifacts, tmp_path, {"max_batch_size": "1"}) as server:
        result = asyncio.run(sigterm_under_load(server, images, in_flight=12, late_requests=3))
    summary = result.summary()
    assert result.in_flight == {"200": 12}, summary  # every accepted request was answered
    # New requests find the port closed (or a 503 during the drain): never a hang or a 500.
    assert set(result.after) <= {"ConnectError", "503"}, summary
    assert result.shutdown_complete, server.log_text()[-3000:]
    assert result.exit_code in CLEAN_SIGTERM_EXITS, summary
    assert "Traceback" not in server.log_text()
