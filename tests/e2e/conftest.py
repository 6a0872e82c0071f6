"""Headless Chromium for the browser tests: Debian's package, driven by Playwright.

No browser is downloaded (`playwright install` is never run). Locally a test skips, with the
reason, when Chromium or Playwright is missing; with `CI` set it fails instead, so CI never
skips the browser tests silently (.ci/run installs chromium).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests")
    pytest.skip(reason)


# Module scope: sync_playwright keeps an event loop running in the main thread while it is
# open, which would break later tests that call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class WatchedPage:
    """A page, and what it did that a test should know about."""

    page: Any
    outside: list[str] = field(default_factory=list)  # requests to any other host
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions


def open_page(
    browser: Any, base_url: str, *, expected_statuses: tuple[int, ...] = ()
) -> WatchedPage:
    """A fresh context and page on `base_url`; every request elsewhere is recorded AND refused,
    so the page behaves as it would on a machine without internet access."""
    context = browser.new_context(viewport={"width": 1100, "height": 780})
    watched = WatchedPage(context.new_page())
    host = urlsplit(base_url).netloc

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != host:
            watched.outside.append(url)
            request_route.abort()
        else:
            request_route.continue_()

    def on_console(message: Any) -> None:
        # The browser logs every non-2xx fetch; a test that provokes one on purpose says so.
        provoked = any(f"status of {status}" in message.text for status in expected_statuses)
        if message.type == "error" and not provoked:
            watched.errors.append(message.text)

    context.route("**/*", route)
    watched.page.on("console", on_console)
    watched.page.on("pageerror", lambda error: watched.errors.append(str(error)))
    return watched


@pytest.fixture
def open_watched(browser: Any) -> Iterator[Callable[..., WatchedPage]]:
    """`open_watched(base_url, expected_statuses=(...))`: pages closed after the test."""
    opened: list[WatchedPage] = []

    def make(base_url: str, expected_statuses: tuple[int, ...] = ()) -> WatchedPage:
        opened.append(open_page(browser, base_url, expected_statuses=expected_statuses))
        return opened[-1]

    yield make
    for watched in opened:
        watched.page.context.close()
