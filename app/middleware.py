"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and breaks streaming).

- `RequestContextMiddleware` (outermost): request id, one log line and the metrics per request,
  the in-flight count used for draining, and a JSON 500 for anything that escaped the handlers.
- `BodySizeLimitMiddleware`: refuses a body over the limit from its Content-Length before
  reading anything, and stops a body without one as soon as too many bytes have arrived.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ErrorInfo, UploadTooLargeError, describe
from app.log import request_id_var
from app.metrics import Metrics
from app.uploads import too_large

if TYPE_CHECKING:
    from app.service import CaptionService

logger = logging.getLogger("app.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Client ids are echoed into logs and headers: accept only short, plain ones.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})  # probes: debug level
_UNMATCHED = "<unmatched>"
CLIENT_CLOSED = 499  # nginx's convention for "the client went away"


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        service: CaptionService,
        routes: Sequence[BaseRoute],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.service = service
        self.routes = routes  # the app's live route list, to label requests refused early

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = CLIENT_CLOSED
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        self.service.in_flight += 1
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            pass  # nobody to answer; logged below as 499
        except Exception as exc:
            logger.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if not response_started:
                await describe(exc).response()(scope, receive, send_with_id)
        finally:
            self.service.in_flight -= 1
            self._record(scope, status, time.perf_counter() - started, request_id)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        method, path = scope["method"], scope["path"]
        route = self._route_template(scope)
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.request_latency.labels(method, route).observe(seconds)
        level = logging.DEBUG if path in _QUIET_PATHS and status < 400 else logging.INFO
        duration_ms = round(seconds * 1000, 1)
        logger.log(
            level,
            "%s %s %d %.1f ms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
            },
        )

    def _route_template(self, scope: Scope) -> str:
        """'/caption', never the raw path: raw paths would let clients create label series."""
        route = scope.get("route")
        if route is None:  # refused before routing (e.g. 413 on Content-Length)
            route = next((r for r in self.routes if r.matches(scope)[0] is Match.FULL), None)
        return getattr(route, "path", _UNMATCHED)


def _request_id(value: str | None) -> str:
    if value and _VALID_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str, str | None], int]) -> None:
        self.app = app
        self.limit_for = limit_for  # (path, content type) -> most body bytes accepted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.limit_for(scope["path"], headers.get("content-type"))
        refusal = _check_content_length(headers.get("content-length"), limit)
        if refusal is not None:
            # Answer without reading the body; the server closes the connection afterwards.
            await refusal.response()(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large("the request body", limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except UploadTooLargeError as exc:
            # The error handlers normally answer it; this covers reads made outside them.
            if response_started:
                raise
            await describe(exc).response()(scope, receive, send)


def _check_content_length(value: str | None, limit: int) -> ErrorInfo | None:
    if value is None:
        return None
    if not value.isdigit():
        return ErrorInfo(400, "bad_request", "the Content-Length header is not a number")
    if int(value) > limit:
        return describe(too_large("the request body", limit))
    return None
