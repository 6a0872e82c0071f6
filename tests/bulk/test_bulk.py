"""`python -m bulk` on a local Ray (2 CPUs) with generated images.

The rows must be exactly those of `python -m training caption` on the same files, unreadable
files included, and a rerun must caption only what the output does not hold yet.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulk import cli, ray_run
from bulk.ray_run import Pool, run_bulk
from captioning.offline import read_rows
from tests.support.fixtures import random_photo, tiny_examples
from training.cli import main as training_main

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"  # the committed model


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    if not (ARTIFACTS / "manifest.json").exists():
        pytest.skip("no committed model in artifacts/")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for name, image, _ in tiny_examples()[:5]:
        image.save(folder / name)
    random_photo(320, 200, seed=1).save(folder / "nested" / "wide.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image, not listed")
    return folder


def caption_command_rows(photos: Path, output: Path) -> list[dict]:
    argv = ["caption", "--artifacts", str(ARTIFACTS), "--output", str(output), str(photos)]
    assert training_main(argv) == 0
    return read_rows(output)


def by_image(rows: list[dict]) -> dict[str, dict]:
    return {row["image"]: row for row in rows}


@pytest.mark.slow
def test_bulk_rows_equal_the_caption_command_and_reruns_skip(local_ray, photos, tmp_path) -> None:
    expected = caption_command_rows(photos, tmp_path / "caption.jsonl")
    assert len(expected) == 8 and sum("error" in row for row in expected) == 2

    output = tmp_path / "bulk.jsonl"
    summary = run_bulk([str(photos)], output, artifacts=ARTIFACTS, pool=Pool(2, 1, batch_size=3))
    assert (summary.listed, summary.skipped, summary.captioned, summary.errors) == (8, 0, 8, 2)
    rows = read_rows(output)
    assert len(rows) == 8
    assert by_image(rows) == by_image(expected)  # same captions, scores and error rows
    # The very same lines, byte for byte: rows cross Ray as JSON and are written once more.
    written = sorted(output.read_text().splitlines())
    assert written == sorted((tmp_path / "caption.jsonl").read_text().splitlines())
    errors = {Path(r["image"]).name: r["error"]["code"] for r in rows if "error" in r}
    assert errors == {"broken.jpg": "corrupt_image", "empty.png": "empty_file"}
    assert set(summary.actor_seconds) == set(ray_run.STAGES) and summary.actor_seconds["encode"] > 0

    # A crash mid-write: the last two rows lost, the one before them cut short.
    lines = output.read_text().splitlines(keepends=True)
    output.write_text("".join(lines[:5]) + lines[5][:20])
    again = run_bulk([str(photos)], output, artifacts=ARTIFACTS, pool=Pool(1, batch_size=3))
    assert (again.skipped, again.captioned) == (5, 3)
    assert output.read_text().endswith("\n")
    assert by_image(read_rows(output)) == by_image(expected)
    assert len(read_rows(output)) == 8  # each image once

    done = run_bulk([str(photos)], output, artifacts=ARTIFACTS)
    assert (done.skipped, done.captioned) == (8, 0)


@pytest.mark.slow
def test_parquet_output_globs_lists_and_uris(local_ray, photos, tmp_path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    expected = by_image(caption_command_rows(photos, tmp_path / "caption.jsonl"))
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\n{photos / 'nested'}\n\n{photos / 'broken.jpg'}\n")
    folder = tmp_path / "parquet"
    argv = [
        f"{photos}/red_circle_*.jpg",  # a glob, as quoted on a shell
        (photos / "red_square_white.jpg").as_uri(),  # file:// goes through pyarrow's filesystems
        "--list", str(listing),
        "--output", str(folder), "--format", "parquet", "--artifacts", str(ARTIFACTS),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    table = pq.read_table(folder).to_pylist()
    assert sorted(Path(r["image"]).name for r in table) == [
        "broken.jpg", "red_circle_black.jpg", "red_circle_white.jpg", "red_square_white.jpg",
        "wide.png",
    ]  # fmt: skip
    for row in table:
        local = row["image"].removeprefix("file://")
        want = expected[local]
        assert (row["caption"], row["score"]) == (want["caption"], want["score"])
        assert (row["error"] or None) == want.get("error")
    assert not list(folder.glob("*.tmp"))
    assert cli.main(argv) == 0  # a rerun writes no new part file
    assert len(list(folder.glob("*.parquet"))) == 1


def test_bad_inputs_get_clear_errors(tmp_path, caplog) -> None:
    pytest.importorskip("ray")
    with caplog.at_level(logging.ERROR, logger="bulk"):
        assert cli.main([str(tmp_path / "missing"), "--output", str(tmp_path / "o.jsonl")]) == 2
        assert cli.main([f"{tmp_path}/*.jpg", "--output", str(tmp_path / "o.jsonl")]) == 2
        assert cli.main(["--output", str(tmp_path / "o.jsonl")]) == 2
        argv = [str(tmp_path), "--output", str(tmp_path / "o"), "--artifacts", str(tmp_path)]
        assert cli.main(argv) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert "does not exist" in messages[0] and "no file matches" in messages[1]
    assert "no inputs" in messages[2] and "not an artifacts folder" in messages[3]


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with caplog.at_level(logging.ERROR, logger="bulk"):
        assert cli.main([str(tmp_path), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "pip install -e '.[bulk]'" in caplog.records[-1].getMessage()


def test_serving_never_imports_ray() -> None:
    code = (
        "import json, sys, app.main; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
