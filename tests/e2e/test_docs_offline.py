"""/docs works without internet access: Swagger UI's files are served by the app itself.

FastAPI's default page loads them from a CDN, which leaves /docs blank offline.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.support.apps import fake_model_app

API_ROUTES = ("/health", "/ready", "/model", "/metrics", "/caption", "/captions")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(fake_model_app(tmp_path)) as test_client:
        yield test_client


def referenced_urls(html: str) -> list[str]:
    """Every src/href attribute and every quoted URL in the page's inline script."""
    attributes = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    in_script = re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
    return attributes + in_script


def test_docs_page_references_no_external_host(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.text
    assert "cdn" not in html.lower()
    urls = referenced_urls(html)
    assert len(urls) >= 4, urls  # css, favicon, js, openapi.json
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"/docs loads {url} from elsewhere"
    assert not re.search(r"https?://", html), "an absolute URL is left in /docs"


def test_docs_assets_are_served(client: TestClient) -> None:
    html = client.get("/docs").text
    kinds = {}
    for url in referenced_urls(html):
        response = client.get(urljoin("http://testserver/docs", url))
        assert response.status_code == 200, url
        kinds[url.rsplit(".", 1)[-1]] = response
    assert "SwaggerUIBundle" in kinds["js"].text
    assert kinds["js"].headers["content-type"].startswith(("text/javascript", "application/"))
    assert kinds["css"].headers["content-type"].startswith("text/css")
    assert len(kinds["css"].content) > 10_000
    assert kinds["png"].headers["content-type"] == "image/png"
    assert kinds["json"].json()["openapi"].startswith("3.1")
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_the_asset_folder_is_not_an_api_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == set(API_ROUTES)
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN: not offered


# --- in a browser with the network cut off --------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The fake-model app in uvicorn on a thread: the page needs HTTP, not the real model."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        fake_model_app(tmp_path), host="127.0.0.1", port=port, log_level="warning"
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


@pytest.mark.browser
def test_docs_render_with_every_other_host_unreachable(
    open_watched: Callable[..., Any], server: str, tmp_path: Path
) -> None:
    watched = open_watched(server)
    page = watched.page
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    rendered = page.locator(".opblock-summary-path").all_text_contents()
    assert sorted(path.strip().replace("\u200b", "") for path in rendered) == sorted(API_ROUTES)
    assert "Unable to render this definition" not in page.content()
    # The upload form is documented with its options.
    page.locator(".opblock-summary-path", has_text="/caption").first.click()
    page.wait_for_selector("text=beam_size")
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
    assert watched.outside == []
    assert watched.errors == []
