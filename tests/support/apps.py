"""The service in-process around a fake model: for the tests that exercise HTTP, not captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from tests.support.predictors import FakePredictor


def fake_model_app(
    artifacts_dir: Path | str = "unused", predictor: Any = None, **settings: Any
) -> FastAPI:
    """`create_app` with `settings` (nothing read from a .env file) and `predictor` (default: a
    fresh FakePredictor) in place of the model in `artifacts_dir`."""
    config = Settings(_env_file=None, artifacts_dir=artifacts_dir, **settings)  # type: ignore[call-arg]
    return create_app(config, lambda path: FakePredictor() if predictor is None else predictor)
