"""Reading uploads: streaming multipart/form-data, or JSON with base64 images.

Starlette's own form parsing reads the whole body first and spools large files to disk; here
uploads stay in memory (each is at most `max_file_bytes`), a file over the limit is refused the
moment its bytes pass the limit, and the client's filename is kept only as a label.

A JSON body (`{"image": "<base64>", ...options}` or `{"images": [...]}`) becomes the same
`ParsedForm`, so both kinds share options, limits, errors and responses. Its size is bounded
before it is read (`BodySizeLimitMiddleware`, by `json_body_limit`); the file limit is then
counted on the decoded bytes.
"""

from __future__ import annotations

import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from app.errors import (
    InvalidBase64Error,
    InvalidJsonError,
    InvalidMultipartError,
    MissingFileError,
    TooManyFilesError,
    UnsupportedMediaTypeError,
    UploadTooLargeError,
)

MAX_FIELDS = 32
MAX_FIELD_BYTES = 1024  # form fields are small numbers and flags
JSON_TYPES = frozenset({b"application/json"})
# Around the base64 strings: the braces, keys, quotes, commas and the small option fields.
JSON_OVERHEAD_BYTES = 64 * 1024
# `"image": "data:image/jpeg;base64,..."`, as a browser's FileReader writes it, is accepted too.
_DATA_URI_MARK = ";base64,"


@dataclass
class UploadedFile:
    field_name: str
    filename: str | None
    data: bytes | bytearray = field(default_factory=bytearray)
    # With oversize="mark": its bytes were dropped, and this is its error.
    too_large: UploadTooLargeError | None = None


@dataclass
class ParsedForm:
    fields: dict[str, object] = field(default_factory=dict)  # strings, or JSON values
    files: list[UploadedFile] = field(default_factory=list)

    def files_named(self, name: str) -> list[UploadedFile]:
        return [f for f in self.files if f.field_name == name]


def too_large(what: str, limit: int) -> UploadTooLargeError:
    """The one wording of a size refusal: 'the file is larger than the 10 MiB limit'."""
    return UploadTooLargeError(f"{what} is larger than the {format_bytes(limit)} limit")


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
            error = too_large("the file", self._max_file_bytes)
            if self._oversize == "raise":
                raise error
            upload.too_large = error
            upload.data = bytearray()  # drop what we have; the rest is skipped as it streams by
            return
        upload.data += data[start:end]  # a bytearray while streaming: appends in place

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
            f"send the image as multipart/form-data with the file in the {file_field!r} field, "
            "or as application/json with base64 images"
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


def is_json(content_type: str | None) -> bool:
    return parse_options_header(content_type)[0] in JSON_TYPES


def base64_length(decoded_bytes: int) -> int:
    """Characters of base64 (with padding) that `decoded_bytes` bytes take."""
    return 4 * math.ceil(decoded_bytes / 3)


def json_body_limit(max_file_bytes: int, max_files: int) -> int:
    """The largest JSON body that can hold `max_files` images of `max_file_bytes` each."""
    return base64_length(max_file_bytes) * max_files + JSON_OVERHEAD_BYTES


async def read_upload(
    request: Request,
    *,
    file_field: str,
    json_field: str,
    max_file_bytes: int,
    max_files: int,
    oversize: Literal["raise", "mark"] = "raise",
) -> ParsedForm:
    """`read_multipart`, or `read_json` for an application/json body; both give a ParsedForm
    whose files are in `file_field`."""
    if is_json(request.headers.get("content-type")):
        return await read_json(
            request,
            file_field=file_field,
            json_field=json_field,
            max_file_bytes=max_file_bytes,
            max_files=max_files,
            oversize=oversize,
        )
    return await read_multipart(
        request,
        file_field=file_field,
        max_file_bytes=max_file_bytes,
        max_files=max_files,
        oversize=oversize,
    )


async def read_json(
    request: Request,
    *,
    file_field: str,
    json_field: str,
    max_file_bytes: int,
    max_files: int,
    oversize: Literal["raise", "mark"] = "raise",
) -> ParsedForm:
    """A JSON object with one base64 image (`max_files == 1`) or a list of them in `json_field`;
    the other keys are the caption options, as multipart form fields would be."""
    body = await request.body()  # bounded by BodySizeLimitMiddleware as it arrives
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidJsonError(f"the body is not valid JSON: {_json_problem(exc)}") from None
    if not isinstance(document, dict):
        raise InvalidJsonError('the JSON body must be an object, such as {"image": "..."}')
    single = max_files == 1
    encoded = _encoded_images(document, json_field, single)
    if len(encoded) > max_files:
        raise TooManyFilesError(f"at most {max_files} images per request")
    form = ParsedForm(
        # `null` means "not given", like an empty form field.
        fields={k: v for k, v in document.items() if k != json_field and v is not None}
    )
    for index, text in enumerate(encoded):
        where = json_field if single else f"{json_field}[{index}]"
        upload = UploadedFile(file_field, None)
        data = _decode_base64(text, where, max_file_bytes)
        if data is None:
            error = too_large(where, max_file_bytes)
            if oversize == "raise":
                raise error
            upload.too_large = error
        else:
            upload.data = data  # bytes as decoded: no copy
        form.files.append(upload)
    return form


def _encoded_images(document: dict[str, Any], json_field: str, single: bool) -> list[str]:
    if json_field not in document or document[json_field] in ([], None):
        hint = (
            "; use POST /captions with a list in 'images' for several"
            if single and "images" in document
            else ""
        )
        raise MissingFileError(f"no image in the JSON field {json_field!r}{hint}")
    value = document[json_field]
    if single and isinstance(value, str):
        return [value]
    if not single and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    expected = "a base64 string" if single else "a list of base64 strings"
    raise RequestValidationError(
        [{"type": "value_error", "loc": ("body", json_field), "msg": f"must be {expected}"}]
    )


def _decode_base64(text: str, where: str, max_file_bytes: int) -> bytes | None:
    """The bytes, or None when they would pass the limit (checked before decoding)."""
    if text.startswith("data:") and _DATA_URI_MARK in text[:256]:
        text = text.split(_DATA_URI_MARK, 1)[1]
    text = "".join(text.split())  # line breaks, as MIME encoders insert every 76 characters
    if len(text) > base64_length(max_file_bytes):
        return None
    try:  # strict: no stray characters, no missing or extra padding
        data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidBase64Error(f"{where} is not valid base64") from None
    return None if len(data) > max_file_bytes else data


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "it is not UTF-8"
