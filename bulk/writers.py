"""Where the bulk command's rows go: one JSON lines file, or a folder of Parquet files.

Both take rows as dicts (`captioning.offline.caption_row`), tell which images an earlier run
already wrote, and never leave a half-written row behind that a rerun would trip over.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from bulk import BulkError
from captioning.offline import format_row, read_rows

logger = logging.getLogger(__name__)

OutputFormat = Literal["jsonl", "parquet"]
Row = dict[str, Any]
PARQUET_ROWS_PER_FILE = 10_000


class RowWriter(Protocol):
    def written_images(self) -> set[str]: ...
    def write(self, rows: Sequence[Row]) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    """One JSON lines file, appended to: a rerun adds the rows the last run did not write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_last_line(path)
        self._handle = path.open("a", encoding="utf-8")

    def written_images(self) -> set[str]:
        return {row["image"] for row in read_rows(self.path) if "image" in row}

    def write(self, rows: Sequence[Row]) -> None:
        self._handle.write("".join(format_row(row) + "\n" for row in rows))
        self._handle.flush()  # what is written survives a crash of the run

    def close(self) -> None:
        self._handle.close()


def _drop_partial_last_line(path: Path) -> None:
    """A run killed mid-write leaves a line without its newline; appending would garble it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    logger.warning("%s ends with an incomplete row; it is dropped and redone", path)
    with path.open("r+b") as handle:
        handle.truncate(keep)


class ParquetWriter:
    """A folder of Parquet files of up to PARQUET_ROWS_PER_FILE rows; each file appears whole
    (written aside, then renamed), so a crash costs at most the rows not yet in a file."""

    def __init__(self, folder: Path, rows_per_file: int = PARQUET_ROWS_PER_FILE) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._rows_per_file = rows_per_file
        self._pending: list[Row] = []
        self._run = uuid.uuid4().hex[:8]
        self._files = 0

    def written_images(self) -> set[str]:
        import pyarrow.parquet as pq

        images: set[str] = set()
        for part in sorted(self.folder.glob("*.parquet")):
            images.update(pq.read_table(part, columns=["image"]).column("image").to_pylist())
        return images

    def write(self, rows: Sequence[Row]) -> None:
        self._pending += rows
        while len(self._pending) >= self._rows_per_file:
            self._flush(self._pending[: self._rows_per_file])
            self._pending = self._pending[self._rows_per_file :]

    def close(self) -> None:
        if self._pending:
            self._flush(self._pending)
            self._pending = []

    def _flush(self, rows: list[Row]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Columns from every row, not only the first: error rows have one that others lack.
        names = list(dict.fromkeys(name for row in rows for name in row))
        table = pa.table({name: [row.get(name) for row in rows] for name in names})
        final = self.folder / f"part-{self._run}-{self._files:05d}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        pq.write_table(table, partial)
        partial.rename(final)
        self._files += 1


def open_writer(output: Path, output_format: OutputFormat) -> RowWriter:
    if output_format == "jsonl":
        if output.is_dir():
            raise BulkError(f"{output} is a folder; JSON lines output is a file")
        return JsonlWriter(output)
    if output.exists() and not output.is_dir():
        raise BulkError(f"{output} is a file; Parquet output is a folder of part files")
    return ParquetWriter(output)
