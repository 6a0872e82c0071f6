"""API keys, off unless configured: `Authorization: Bearer KEY` or `X-API-Key: KEY`.

FastAPI's security classes put both schemes in the OpenAPI document, so /docs shows them and
its Authorize button lets a person enter a key. `auto_error=False`: a missing key is ours to
refuse, with the service's JSON error shape instead of FastAPI's own 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.errors import UnauthorizedError, error_responses

API_KEY_HEADER = "X-API-Key"

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="An API key as a bearer token."
)
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="apiKey",
    description=f"An API key in the {API_KEY_HEADER} header.",
)

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
HeaderKey = Annotated[str | None, Depends(api_key_scheme)]


class ApiKeyGuard:
    """A FastAPI dependency that lets a request through when it carries one of the keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = tuple(key.encode("utf-8") for key in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def route_options(self) -> dict[str, Any]:
        """`include_router` arguments for the protected routes: none when keys are off."""
        if not self.enabled:
            return {}
        return {"dependencies": [Depends(self)], "responses": error_responses(401)}

    async def __call__(self, bearer: BearerCredentials, header_key: HeaderKey) -> None:
        given = [key for key in (bearer.credentials if bearer else None, header_key) if key]
        if not given:
            raise UnauthorizedError(
                f"an API key is required: send Authorization: Bearer KEY or {API_KEY_HEADER}: KEY"
            )
        if not any(self._matches(key) for key in given):
            raise UnauthorizedError("the API key is not valid")

    def _matches(self, candidate: str) -> bool:
        raw = candidate.encode("utf-8", errors="surrogateescape")
        found = False
        for key in self._keys:  # every key compared, in constant time: no early exit to time
            found |= hmac.compare_digest(raw, key)
        return found
