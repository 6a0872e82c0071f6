"""Streaming, in-memory multipart/form-data reading with limits enforced as bytes arrive.

Starlette's own form parsing reads the whole body first and spools large files to disk; here
uploads stay in memory (each is at most `max_file_bytes`), a file over the limit is refused the
moment its bytes pass the limit, and the client's filename is kept only as a label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from app.errors import (
    InvalidMultipartError,
    TooManyFilesError,
    UnsupportedMediaTypeError,
    UploadTooLargeError,
)

MAX_FIELDS = 32
MAX_FIELD_BYTES = 1024  # form fields are small numbers and flags


@dataclass
class UploadedFile:
    field_name: str
    filename: str | None
    data: bytearray = field(default_factory=bytearray)
    too_large: bool = False  # with oversize="mark": its bytes were dropped


@dataclass
class ParsedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)

    def files_named(self, name: str) -> list[UploadedFile]:
        return [f for f in self.files if f.field_name == name]


def format_bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


class _Collector:
    """python-multipart callbacks that build a ParsedForm under the limits."""

    def __init__(
        self,
        file_field: str,
        max_file_bytes: int,
        max_files: int,
        oversize: Literal["raise", "mark"],
    ) -> None:
        self.form = ParsedForm()
        self._file_field = file_field
        self._max_file_bytes = max_file_bytes
        self._max_files = max_files
        self._oversize = oversize
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._file: UploadedFile | None = None
        self._field_name = ""
        self._field_value = bytearray()
        self._field_count = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._file = None
        self._field_name = ""
        self._field_value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition.decode("latin-1"))
        if b"name" not in options:
            raise InvalidMultipartError("a multipart part has no name in its Content-Disposition")
        name = _utf8(options[b"name"])
        filename = _utf8(options[b"filename"]) if b"filename" in options else None
        # A part is a file if it is in the file field (even when a client omits the filename).
        if name == self._file_field or filename is not None:
            if len(self.form.files) >= self._max_files:
                raise TooManyFilesError(
                    f"at most {self._max_files} file(s) per request"
                    + ("; use POST /captions for several images" if self._max_files == 1 else "")
                )
            self._file = UploadedFile(name, filename)
            self.form.files.append(self._file)
        else:
            self._field_count += 1  # counted per part: repeated names count too
            if self._field_count > MAX_FIELDS:
                raise InvalidMultipartError(f"at most {MAX_FIELDS} form fields per request")
            self._field_name = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            if len(self._field_value) + end - start > MAX_FIELD_BYTES:
                raise InvalidMultipartError(
                    f"form field {self._field_name!r} is longer than {MAX_FIELD_BYTES} bytes"
                )
            self._field_value += data[start:end]
            return
        upload = self._file
        if upload.too_large:
            return
        if len(upload.data) + end - start > self._max_file_bytes:
            message = f"the file is larger than the {format_bytes(self._max_file_bytes)} limit"
            if self._oversize == "raise":
                raise UploadTooLargeError(message)
            upload.too_large = True
            upload.data = bytearray()  # drop what we have; the rest is skipped as it streams by
            return
        upload.data += data[start:end]

    def on_part_end(self) -> None:
        if self._file is None:
            self.form.fields.setdefault(self._field_name, _utf8(bytes(self._field_value)))


def _utf8(raw: bytes) -> str:
    # parse_options_header hands back latin-1 bytes; browsers send names and filenames as UTF-8.
    return raw.decode("utf-8", errors="replace")


async def read_multipart(
    request: Request,
    *,
    file_field: str,
    max_file_bytes: int,
    max_files: int,
    oversize: Literal["raise", "mark"] = "raise",
) -> ParsedForm:
    """Parse the request body as it streams in; raise an ApiError as soon as a limit is passed.

    `oversize="raise"` refuses the whole request when a file passes `max_file_bytes`;
    `"mark"` keeps reading and flags that file (one bad image in a batch fails alone).
    """
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise UnsupportedMediaTypeError(
            f"send the image as multipart/form-data with the file in the {file_field!r} field"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidMultipartError("the multipart Content-Type has no boundary")

    collector = _Collector(file_field, max_file_bytes, max_files, oversize)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
    except FormParserError as exc:
        raise InvalidMultipartError("the multipart body is malformed") from exc
    if parser.state != MultipartState.END:
        raise InvalidMultipartError("the multipart body ended before its closing boundary")
    return collector.form
