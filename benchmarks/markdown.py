"""The one Markdown table builder of the benchmark and reliability reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """One line, pipes escaped: a table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


def table(header: Sequence[Any], rows: Sequence[Sequence[Any]], numeric: int = 0) -> list[str]:
    """The table's lines and a blank one after it; the last `numeric` columns align right."""
    align = ["---"] * (len(header) - numeric) + ["---:"] * numeric
    lines = ["| " + " | ".join(cell(value) for value in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]
