"""One error format for everything: `{"error": {"code": "...", "message": "..."}}`.

`code` is stable and machine-readable; `message` is for people and never contains paths,
tracebacks or other internals. Handlers cover our own errors, FastAPI/Starlette errors,
image decoding errors from `captioning.images` and, last, anything unexpected (500).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.schemas import ErrorResponse
from captioning.images import ImageError

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "the server hit an unexpected error; it has been logged"
_LOCATION_PARTS = frozenset({"body", "query", "path", "header", "cookie", "form"})


class ApiError(Exception):
    """An error this service raises on purpose; the class fixes the code and the status."""

    code = "error"
    status_code = 500

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class UnauthorizedError(ApiError):
    code = "unauthorized"
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class InvalidJsonError(ApiError):
    code = "invalid_json"
    status_code = 400


class InvalidBase64Error(ApiError):
    code = "invalid_base64"
    status_code = 400


class NotReadyError(ApiError):
    code = "not_ready"
    status_code = 503


class ShuttingDownError(ApiError):
    code = "shutting_down"
    status_code = 503


class OverloadedError(ApiError):
    code = "overloaded"
    status_code = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class UploadTooLargeError(ApiError):
    code = "upload_too_large"
    status_code = 413


class TooManyFilesError(ApiError):
    code = "too_many_files"
    status_code = 413


class InvalidMultipartError(ApiError):
    code = "invalid_multipart"
    status_code = 400


class UnsupportedMediaTypeError(ApiError):
    code = "unsupported_media_type"
    status_code = 415


class MissingFileError(ApiError):
    code = "missing_file"
    status_code = 422


class InferenceError(ApiError):
    code = "inference_failed"
    status_code = 500


class InferenceTimeoutError(ApiError):
    code = "timeout"
    status_code = 504


# Codes for errors raised by FastAPI/Starlette themselves (routing, methods, ...).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "upload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


@dataclass(frozen=True)
class ErrorInfo:
    status_code: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, dict[str, str]]:
        return error_body(self.code, self.message)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def format_validation_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """'beam_size: Input should be less than or equal to 10; file: Field required'."""
    parts = []
    for error in errors:
        location = [str(p) for p in error.get("loc", ()) if p not in _LOCATION_PARTS]
        name = ".".join(location) or "request"
        parts.append(f"{name}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"


def describe(exc: BaseException) -> ErrorInfo:
    """The status, code and client-safe message for any exception."""
    if isinstance(exc, ApiError):
        return ErrorInfo(exc.status_code, exc.code, exc.message, exc.headers)
    if isinstance(exc, ImageError):
        return ErrorInfo(exc.status_code, exc.code, str(exc) or "the image cannot be used")
    if isinstance(exc, RequestValidationError):
        return ErrorInfo(422, "invalid_parameter", format_validation_errors(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error")
        message = exc.detail if isinstance(exc.detail, str) else _phrase(status)
        return ErrorInfo(status, code, message, dict(exc.headers or {}))
    return ErrorInfo(500, "internal_error", INTERNAL_MESSAGE)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


async def _handle_known(request: Request, exc: Exception) -> JSONResponse:
    return describe(exc).response()


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return describe(exc).response()


def install_error_handlers(app: FastAPI) -> None:
    for exc_type in (ApiError, ImageError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(exc_type, _handle_known)
    app.add_exception_handler(Exception, _handle_unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each listed status documented with the error model."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": _ERROR_DOCS.get(status, _phrase(status))}
        for status in statuses
    }
    if 401 in responses:
        responses[401]["headers"] = {
            "WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}
        }
    if 503 in responses:
        responses[503]["headers"] = {
            "Retry-After": {
                "description": "With `overloaded`: seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        }
    return responses


_ERROR_DOCS: dict[int, str] = {
    400: "Malformed multipart body (`invalid_multipart`), JSON body (`invalid_json`) or base64 "
    "image (`invalid_base64`).",
    401: "No API key, or not a valid one (`unauthorized`): send `Authorization: Bearer KEY` or "
    "`X-API-Key: KEY`.",
    413: "Upload larger than the limit (`upload_too_large`), too many files "
    "(`too_many_files`) or too many pixels (`image_too_large`).",
    415: "Not an image in a supported format (`unsupported_image`) or neither a multipart "
    "nor a JSON request (`unsupported_media_type`).",
    422: "Parameter out of range (`invalid_parameter`), no file (`missing_file`), empty file "
    "(`empty_file`) or damaged image (`corrupt_image`).",
    500: "The model failed on this image (`inference_failed`) or another unexpected error "
    "(`internal_error`).",
    503: "Model not loaded yet (`not_ready`), shutting down (`shutting_down`) or queue full "
    "(`overloaded`, with a `Retry-After` header).",
    504: "The captions took longer than the request timeout (`timeout`).",
}
