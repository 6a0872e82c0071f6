"""JSON files of plain data in the artifact bundle (concepts.json, grounding.json): one way to
write, read and report them, for types that convert to and from plain data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self


class PlainJsonFile:
    """`to_json`, `from_json` and `load` for a type with `to_plain` and `from_plain`; errors
    name the file (`FILE`)."""

    FILE: ClassVar[str]

    def to_plain(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_plain(cls, data: Any) -> Self:
        raise NotImplementedError

    def to_json(self) -> bytes:
        return json.dumps(self.to_plain(), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        try:
            return cls.from_plain(json.loads(data))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cls.FILE} is not valid JSON: {exc}") from exc

    @classmethod
    def load(cls, path: Path) -> Self:
        return cls.from_json(Path(path).read_bytes())
