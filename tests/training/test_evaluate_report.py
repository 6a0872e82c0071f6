"""The evaluation's HTML report: the captions the evaluation scored, with attention maps where
the decoder wrote them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from captioning.search_settings import SearchSettings
from captioning.types import Caption, CaptionResult
from training.evaluate import write_html_report


class ReportPredictor:
    """Just what the report asks of a predictor: a decoder's caption for one photo, the
    concept named plainly ("a whistle", no attention) for the other."""

    model_id = "stub"

    def __init__(self) -> None:
        self.settings: list[SearchSettings] = []

    def read_image(self, path: Path) -> Image.Image:
        return Image.new("RGB", (32, 32), "gray")

    def caption_images(self, images, settings: SearchSettings) -> list[CaptionResult]:
        self.settings.append(settings)
        if len(self.settings) == 1:
            attention = np.full((2, 2, 2), 0.25, np.float32)
            caption = Caption("a dog", ("a", "dog"), -1.0, -0.5, attention)
        else:
            caption = Caption("a whistle", ("a", "whistle"), -1.0, -0.5)
        return [CaptionResult((caption,))]


def test_the_report_shows_plainly_named_captions_and_the_evaluations_settings(tmp_path):
    predictor = ReportPredictor()
    settings = SearchSettings(max_length=10, beam_size=5, style="coco")
    output = tmp_path / "report.html"
    write_html_report(
        predictor,  # type: ignore[arg-type]
        [Path("dog.jpg"), Path("whistle.jpg")],
        [["a dog runs"], ["a whistle on a table"]],
        output,
        settings,
    )
    page = output.read_text()
    assert "dog.jpg: a dog" in page and "whistle.jpg: a whistle" in page
    assert page.count("<figure>") == 2  # one map per word of the decoder's caption only
    assert all(
        s.beam_size == 5 and s.style == "coco" and s.return_attention for s in predictor.settings
    )
