"""The web page in a real browser (see conftest.py) against a real server process with the
tiny trained model. `CAPTIONER_UPDATE_SCREENSHOT=1` also writes docs/screenshot.png, the
picture in the README.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.server_process import running_server
from captioning.text import normalize_caption
from tests.support.fixtures import jpeg_bytes, shape_image, tiny_examples

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "screenshot.png"
TIMEOUT_MS = 60_000  # the first caption includes the model's first real batch on a busy machine
VOCABULARY = {word for _, _, caption in tiny_examples() for word in normalize_caption(caption)}


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tiny_artifacts, tmp_path_factory.mktemp("server")) as process:
        yield process.base_url


@pytest.fixture
def watched(open_watched: Callable[..., Any], server: str) -> Any:
    watched = open_watched(server, expected_statuses=(415,))  # 415: the text file, on purpose
    watched.page.set_default_timeout(TIMEOUT_MS)
    watched.page.goto(server + "/")
    return watched


def _heatmap_alpha(page: Any) -> int:
    """Sum of the heatmap canvas' alpha channel: 0 when nothing is drawn."""
    return page.evaluate(
        """() => {
            const canvas = document.getElementById("heatmap");
            const context = canvas.getContext("2d");
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let total = 0;
            for (let i = 3; i < data.length; i += 4) total += data[i];
            return total;
        }"""
    )


def test_caption_words_heatmap_and_errors(watched: Any, tmp_path: Path) -> None:
    page = watched.page
    page.wait_for_function("document.getElementById('model').textContent !== '…'")
    assert page.text_content("#model") not in ("not ready yet", "unreachable")

    photo = tmp_path / "red-circle.jpg"
    photo.write_bytes(jpeg_bytes(shape_image("red", "circle", "white"), quality=95))
    page.set_input_files("#file-input", str(photo))
    page.wait_for_function("document.getElementById('caption').textContent.trim().length > 0")

    caption = page.text_content("#caption").strip()
    words = caption.split()
    assert words and set(words) <= VOCABULARY, caption
    assert caption == "a red circle on white"  # the tiny model has learned its training images
    assert page.is_hidden("#error")
    assert page.locator("#captions li").count() == 3  # the page asks for 3 by default
    assert "total" in page.text_content("#timings")
    assert page.evaluate("document.getElementById('preview').naturalWidth") == 224

    buttons = page.locator("#words .word")
    assert [b.strip() for b in buttons.all_text_contents()] == words
    colour = buttons.nth(words.index("red"))
    assert colour.is_enabled()
    assert _heatmap_alpha(page) == 0
    colour.click()
    assert colour.get_attribute("aria-pressed") == "true"
    assert _heatmap_alpha(page) > 0  # the attention map is painted over the photo
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("CAPTIONER_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    colour.click()  # the same word again hides the map
    assert colour.get_attribute("aria-pressed") == "false"
    assert _heatmap_alpha(page) == 0

    text_file = tmp_path / "notes.jpg"
    text_file.write_text("these are my notes, not a photo\n")
    page.set_input_files("#file-input", str(text_file))
    page.wait_for_selector("#error", state="visible")
    assert page.get_attribute("#error", "data-code") == "unsupported_image"
    message = page.text_content("#error")
    assert "unsupported_image" in message and "not an image" in message
    assert page.is_hidden("#result")
    page.screenshot(path=str(tmp_path / "error.png"), full_page=True)

    assert watched.outside == []  # nothing from a CDN or any other host
    assert watched.errors == []
