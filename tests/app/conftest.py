"""Fixtures for the service tests: app clients around a FakePredictor (tests/support)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.support.predictors import FakePredictor, Predictor


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "artifacts_dir": tmp_path,
            "max_batch_wait_ms": 2,
            "request_timeout_s": 10,
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Callable[..., FastAPI]:
    """An app around `predictor` (a fresh FakePredictor by default) and setting overrides."""

    def make(predictor: Predictor | None = None, **overrides: object) -> FastAPI:
        chosen = predictor if predictor is not None else FakePredictor()
        return create_app(make_settings(**overrides), lambda path: chosen)

    return make


@pytest.fixture
def make_client(make_app: Callable[..., FastAPI]) -> Iterator[Callable[..., TestClient]]:
    """Started clients (lifespan run), closed at the end of the test."""
    with ExitStack() as stack:

        def make(predictor: Predictor | None = None, **overrides: object) -> TestClient:
            return stack.enter_context(TestClient(make_app(predictor, **overrides)))

        yield make


@pytest.fixture
def predictor() -> FakePredictor:
    return FakePredictor()


@pytest.fixture
def make_predictor() -> Callable[..., FakePredictor]:
    """FakePredictor(**options), for tests that slow it down or make it fail."""
    return FakePredictor


@pytest.fixture
def client(make_client: Callable[..., TestClient], predictor: FakePredictor) -> TestClient:
    return make_client(predictor)


@asynccontextmanager
async def _serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # ASGITransport does not run the lifespan, so run it around the client.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
def serve() -> Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]:
    """`async with serve(app) as client:` an async client on a started app (one event loop)."""
    return _serve


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@pytest.fixture
def until() -> Callable[..., object]:
    """`await until(lambda: ...)`: poll a condition from async tests."""
    return wait_until
