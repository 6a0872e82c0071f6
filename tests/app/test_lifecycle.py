"""Startup, readiness, graceful shutdown, settings and the `captioner-serve` entry point."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sample_images import RED, png

import app.main
from app.config import Settings, get_settings
from app.log import JsonFormatter, configure_logging
from app.main import create_app
from app.service import State
from captioning.bundle import ArtifactError
from captioning.runtime import RuntimeOptions

REPO = Path(__file__).resolve().parents[2]
UPLOAD = {"file": ("photo.png", png(RED), "image/png")}


def start_and_stop(application) -> None:
    with TestClient(application):
        pass


def test_not_ready_until_the_lifespan_has_loaded_the_model(make_app) -> None:
    client = TestClient(make_app())  # no `with`: the lifespan does not run
    for path in ("/ready", "/model"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "not_ready"
    response = client.post("/caption", files=UPLOAD)
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
    assert client.get("/health").status_code == 200
    assert "captioner_ready 0.0" in client.get("/metrics").text


def test_model_is_loaded_once_at_startup_and_warmed_up(make_settings, make_predictor) -> None:
    loaded: list[Path] = []
    predictor = make_predictor()

    def factory(path: Path):
        loaded.append(path)
        return predictor

    settings = make_settings()
    application = create_app(settings, factory)
    assert loaded == []  # creating the app loads nothing
    with TestClient(application) as client:
        for _ in range(3):
            assert client.post("/caption", files=UPLOAD).status_code == 200
    assert loaded == [settings.artifacts_dir]
    assert predictor.warmed_up


def test_artifact_error_stops_startup_with_a_clear_message(make_settings, caplog) -> None:
    def factory(path: Path):
        raise ArtifactError(f"{path / 'manifest.json'} is missing")

    settings = make_settings()
    with caplog.at_level(logging.ERROR), pytest.raises(ArtifactError):
        start_and_stop(create_app(settings, factory))
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("manifest.json is missing" in m and "cannot start" in m for m in messages)


def test_missing_artifacts_dir_fails_with_the_real_loader(make_settings, tmp_path, caplog) -> None:
    missing = tmp_path / "no-such-artifacts"
    with caplog.at_level(logging.ERROR), pytest.raises(ArtifactError) as failure:
        start_and_stop(create_app(make_settings(artifacts_dir=missing)))
    assert str(missing) in str(failure.value)
    assert any(str(missing) in r.getMessage() for r in caplog.records)


def test_other_startup_errors_are_logged_with_a_traceback(make_settings, caplog) -> None:
    def factory(path: Path):
        raise RuntimeError("the model does not fit in memory")

    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="fit in memory"):
        start_and_stop(create_app(make_settings(), factory))
    assert any(r.exc_info and "cannot start" in r.getMessage() for r in caplog.records)


def test_a_model_that_computes_nan_does_not_go_ready(make_app, make_predictor, caplog) -> None:
    application = make_app(make_predictor(nan_features=True))
    with caplog.at_level(logging.ERROR), pytest.raises(ArtifactError, match="NaN"):
        start_and_stop(application)
    assert any("cannot start: model self-test failed" in r.getMessage() for r in caplog.records)


def test_runtime_settings_reach_the_loader(make_settings, monkeypatch) -> None:
    from captioning.predictor import CaptionPredictor

    seen: list[tuple] = []

    def fake_load(path, *, runtime):
        seen.append((path, runtime))
        raise ArtifactError("stop here")

    monkeypatch.setattr(CaptionPredictor, "from_artifacts", staticmethod(fake_load))
    # blas_threads stays 1: the loader applies it to this whole test process.
    settings = make_settings(decoder_runtime="numpy", encoder_batch_threads=2, encoder_max_batch=4)
    with pytest.raises(ArtifactError):
        start_and_stop(create_app(settings))
    runtime = RuntimeOptions(decoder_runtime="numpy", encoder_batch_threads=2, encoder_max_batch=4)
    assert seen == [(settings.artifacts_dir, runtime)]


def test_runtime_defaults_are_the_runtime_options_own(make_settings) -> None:
    assert make_settings().runtime_options() == RuntimeOptions()


@pytest.mark.slow
def test_server_process_exits_non_zero_when_artifacts_are_missing(tmp_path) -> None:
    missing = tmp_path / "missing-artifacts"
    env = {
        **os.environ,
        "CAPTIONER_ARTIFACTS_DIR": str(missing),
        "CAPTIONER_PORT": "0",
        "CAPTIONER_LOG_JSON": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", "from app.main import run; run()"],
        cwd=tmp_path,  # no .env or artifacts/ here
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "cannot start" in result.stderr and str(missing) in result.stderr


def test_shutdown_drains_in_flight_requests(make_app, make_predictor, until) -> None:
    gate = threading.Event()
    predictor = make_predictor(gate=gate)
    application = make_app(predictor)
    service = application.state.service

    async def main() -> dict[str, httpx.Response]:
        lifespan = application.router.lifespan_context(application)
        await lifespan.__aenter__()
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            running = asyncio.create_task(client.post("/caption", files=UPLOAD))
            await until(predictor.encode_started.is_set)
            queued = asyncio.create_task(client.post("/caption", files=UPLOAD))
            await until(lambda: service.queue_depth == 1)
            shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
            await until(lambda: service.state is State.DRAINING)
            seen = {
                "ready": await client.get("/ready"),
                "new": await client.post("/caption", files=UPLOAD),
                "health": await client.get("/health"),
            }
            assert not shutdown.done()  # still waiting for the two requests
            gate.set()
            seen["running"], seen["queued"] = await running, await queued
            await shutdown
        return seen

    seen = asyncio.run(main())
    assert seen["ready"].status_code == 503
    assert seen["ready"].json()["error"]["code"] == "shutting_down"
    assert seen["new"].status_code == 503
    assert seen["health"].status_code == 200
    assert seen["running"].status_code == 200 and seen["queued"].status_code == 200
    assert service.state is State.STOPPED


# --- settings and entry point --------------------------------------------------------------------
def test_settings_come_from_captioner_environment_variables(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CAPTIONER_ARTIFACTS_DIR", str(tmp_path))
    monkeypatch.setenv("CAPTIONER_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("CAPTIONER_LOG_JSON", "true")
    monkeypatch.setenv("CAPTIONER_LOG_LEVEL", "debug")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.artifacts_dir == tmp_path
    assert settings.max_batch_size == 8
    assert settings.log_json is True and settings.log_level == "DEBUG"
    defaults = Settings(_env_file=None, artifacts_dir="x", max_batch_size=16)  # type: ignore[call-arg]
    assert defaults.max_upload_bytes == 10 * 1024 * 1024
    assert (defaults.max_image_pixels, defaults.max_queue_size) == (40_000_000, 64)
    assert (defaults.default_beam_size, defaults.port) == (None, 8000)  # None: the model's


def test_settings_refuse_inconsistent_limits() -> None:
    with pytest.raises(ValueError, match="max_images_per_request"):
        Settings(_env_file=None, max_images_per_request=10, max_queue_size=4)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Settings(_env_file=None, default_beam_size=11)  # type: ignore[call-arg]


def test_get_settings_is_cached() -> None:
    assert get_settings() is get_settings()


def test_run_starts_uvicorn_with_the_settings(monkeypatch) -> None:
    calls: list[tuple] = []
    monkeypatch.setenv("CAPTIONER_PORT", "9123")
    monkeypatch.setenv("CAPTIONER_HOST", "0.0.0.0")
    monkeypatch.setattr(app.main, "get_settings", lambda: Settings(_env_file=None))
    monkeypatch.setattr(app.main, "configure_logging", lambda *args: calls.append(("log", args)))
    monkeypatch.setattr(app.main.uvicorn, "run", lambda *a, **kw: calls.append(("run", a, kw)))
    app.main.run()
    assert calls[0] == ("log", ("INFO", False))
    _, args, kwargs = calls[1]
    assert args == (app.main.app,)
    assert (kwargs["host"], kwargs["port"], kwargs["lifespan"]) == ("0.0.0.0", 9123, "on")


def test_configure_logging_installs_the_chosen_format() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("WARNING", json_lines=True)
        assert root.level == logging.WARNING
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_serving_code_never_imports_training_or_tensorflow() -> None:
    """The serving image ships `app` and `captioning` without the training package and its
    extras: no import of them anywhere in that code, inside functions included."""
    import ast

    forbidden = ("training", "tensorflow", "keras")
    for path in [*(REPO / "app").rglob("*.py"), *(REPO / "captioning").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path} imports {name}"
