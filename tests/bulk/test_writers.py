"""The bulk command's pieces that need no Ray: writers taking row dicts, and the import arrows."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulk import BulkError
from bulk.writers import JsonlWriter, ParquetWriter, open_writer
from captioning.offline import format_row, read_rows
from tests.support.imports import REPO, imported_packages

GOOD = {
    "image": "a.jpg",
    "caption": "a dog runs",
    "score": -3.25,
    "tags": [{"word": "dog", "probability": 0.9}],
}
BROKEN = {
    "image": "b.jpg",
    "caption": None,
    "score": None,
    "tags": [],
    "error": {"code": "corrupt_image", "message": "not an image"},
}


def test_jsonl_rows_are_the_shared_lines_and_a_cut_last_line_is_redone(tmp_path: Path) -> None:
    path = tmp_path / "out" / "captions.jsonl"
    writer = JsonlWriter(path)
    writer.write([GOOD, BROKEN])
    writer.close()
    assert path.read_text() == format_row(GOOD) + "\n" + format_row(BROKEN) + "\n"

    path.write_text(path.read_text()[:-10])  # a crash in the middle of the second row
    again = JsonlWriter(path)
    assert again.written_images() == {"a.jpg"}
    again.write([BROKEN])
    again.close()
    assert read_rows(path) == [GOOD, BROKEN]


def test_parquet_parts_hold_every_column_and_appear_whole(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "parquet"
    writer = ParquetWriter(folder, rows_per_file=2)
    writer.write([GOOD, BROKEN, {**GOOD, "image": "c.jpg"}])
    assert len(list(folder.glob("*.parquet"))) == 1  # the third row waits for its file
    writer.close()
    assert len(list(folder.glob("*.parquet"))) == 2 and not list(folder.glob("*.tmp"))
    rows = {row["image"]: row for row in pq.read_table(folder).to_pylist()}
    assert rows["b.jpg"]["error"] == BROKEN["error"]
    assert rows["a.jpg"]["error"] is None  # the column an error row brings
    assert rows["a.jpg"]["tags"] == GOOD["tags"] and rows["c.jpg"]["score"] == -3.25
    assert ParquetWriter(folder).written_images() == {"a.jpg", "b.jpg", "c.jpg"}


def test_output_kinds_are_checked(tmp_path: Path) -> None:
    with pytest.raises(BulkError, match="is a folder"):
        open_writer(tmp_path, "jsonl")
    (tmp_path / "file").write_text("")
    with pytest.raises(BulkError, match="is a file"):
        open_writer(tmp_path / "file", "parquet")


def test_bulk_imports_captioning_and_nothing_imports_bulk() -> None:
    for path, names in imported_packages(REPO / "bulk").items():
        assert not names & {"app", "training", "benchmarks", "tests"}, path
    for package in ("captioning", "app", "training"):
        for path, names in imported_packages(REPO / package).items():
            assert "bulk" not in names, path
