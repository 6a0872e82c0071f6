"""`captioner`, the serving install's command: `serve` runs the service, `caption` writes the JSON
lines of `python -m training caption` (the tiny fixture model; no real server)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import app.main
from app.cli import main
from tests.support.fixtures import tiny_examples
from training.cli import main as training_main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three of the tiny model's training photos (as it saw them), one in a subfolder, and a
    file that is no image."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for name, image, _ in tiny_examples()[:2]:
        image.save(folder / name, quality=95)
    name, image, _ = tiny_examples()[7]
    image.save(folder / "more" / name, quality=95)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return folder


def training_lines(artifacts: Path, photos: Path, output: Path) -> list[str]:
    assert training_main(["caption", "--artifacts", str(artifacts), "--output", str(output),
                          str(photos)]) == 0  # fmt: skip
    return output.read_text().splitlines()


def test_caption_writes_the_training_commands_lines_to_standard_output(
    tiny_artifacts: Path, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = training_lines(tiny_artifacts, photos, tmp_path / "training.jsonl")
    assert main(["caption", "--artifacts", str(tiny_artifacts), str(photos)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == expected  # byte for byte, in the same order
    rows = {Path(row["image"]).name: row for row in map(json.loads, lines)}
    assert rows["broken.jpg"]["error"]["code"] == "corrupt_image"
    for name, _, caption in (*tiny_examples()[:2], tiny_examples()[7]):
        assert rows[name]["caption"] == caption.lower().rstrip(".")


def test_caption_options_and_output_file(
    tiny_artifacts: Path, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out" / "captions.jsonl"
    photo = photos / tiny_examples()[0][0]
    argv = ["caption", str(photo), "--output", str(output), "--artifacts", str(tiny_artifacts),
            "--beam-size", "1", "--no-concepts"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == ""
    (row,) = map(json.loads, output.read_text().splitlines())
    assert row["image"] == str(photo) and row["caption"] == "a red circle on white"


def test_a_missing_photo_or_model_exits_2_with_a_message(
    tiny_artifacts: Path, photos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="captioner"):
        missing = ["caption", "--artifacts", str(tiny_artifacts), str(tmp_path / "gone.jpg")]
        assert main(missing) == 2
        assert main(["caption", "--artifacts", str(tmp_path / "none"), str(photos)]) == 2
    messages = [record.getMessage() for record in caplog.records]
    assert "gone.jpg does not exist" in messages[0]
    assert "none" in messages[1] and "does not exist" in messages[1]


def test_as_a_process_standard_output_holds_only_the_rows(tiny_artifacts: Path, photos: Path):
    command = [sys.executable, "-m", "app.cli", "caption", "--log-level", "INFO",
               "--artifacts", str(tiny_artifacts), str(photos)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]  # logs went to stderr
    assert len(rows) == 4 and sum("error" in row for row in rows) == 1
    assert "could not be read" in done.stderr


def test_serve_runs_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(app.main, "run", lambda: calls.append("run"))
    assert main(["serve"]) == 0
    assert calls == ["run"]


def test_the_console_scripts_are_declared() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["captioner"] == "app.cli:main"
    assert scripts["captioner-serve"] == "app.main:run"  # the older name of `captioner serve`
