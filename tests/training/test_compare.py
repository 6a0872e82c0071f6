"""`python -m training compare`: the paired bootstrap between two evaluations."""

from __future__ import annotations

import json

import pytest

from training.cli import main
from training.compare import compare_caption_files

REFERENCES = [
    ["a dog runs on the grass", "a brown dog running on grass", "the dog runs outside"],
    ["two children play in the water", "kids splash in a pool", "children swim in water"],
    ["a man rides a bike on a road", "a cyclist on the road", "a man on a bicycle"],
    ["a girl in a red dress", "a young girl wearing red", "a girl in red smiles"],
] * 10


def _write(path, captions):
    with path.open("w") as handle:
        for index, (caption, references) in enumerate(zip(captions, REFERENCES, strict=True)):
            record = {"image": f"img{index}.jpg", "caption": caption, "references": references}
            handle.write(json.dumps(record) + "\n")
    return path


def test_a_clearly_better_model_has_an_interval_above_zero(tmp_path):
    weak = _write(tmp_path / "weak.jsonl", ["a picture of something"] * len(REFERENCES))
    strong = _write(tmp_path / "strong.jsonl", [refs[0] for refs in REFERENCES])
    result = compare_caption_files(weak, strong, resamples=500)
    assert result["images"] == len(REFERENCES)
    assert result["CIDEr_difference"] > 0
    assert result["CIDEr_difference_95ci"][0] > 0
    assert result["resamples_not_better"] == 0.0
    assert result["candidate"]["CIDEr"] > result["baseline"]["CIDEr"]


def test_the_same_captions_are_no_better(tmp_path):
    captions = [refs[1] for refs in REFERENCES]
    first = _write(tmp_path / "a.jsonl", captions)
    second = _write(tmp_path / "b.jsonl", captions)
    result = compare_caption_files(first, second, resamples=200)
    assert result["CIDEr_difference"] == 0.0
    assert result["resamples_not_better"] == 1.0


def test_files_without_shared_images_or_records_are_refused(tmp_path, caplog):
    good = _write(tmp_path / "good.jsonl", ["a dog"] * len(REFERENCES))
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"image": "x.jpg", "caption": "a", "references": ["a"]}) + "\n")
    with pytest.raises(ValueError, match="share no image"):
        compare_caption_files(good, other)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"image": "img0.jpg"}\n')
    assert main(["compare", str(good), str(broken)]) == 2
    assert "broken.jsonl:1" in caplog.text
