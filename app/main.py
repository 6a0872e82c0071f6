"""The FastAPI application: `create_app()` for tests and embedding, `app` for uvicorn, `run()`.

Creating the app is cheap; the model is loaded once, in the lifespan, before the first request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.util import find_spec
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.api.routes import UPLOAD_ROUTES, public_router, router
from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.log import configure_logging
from app.metrics import Metrics
from app.middleware import REQUEST_ID_HEADER, BodySizeLimitMiddleware, RequestContextMiddleware
from app.security import API_KEY_HEADER, ApiKeyGuard
from app.service import CaptionService, PredictorFactory, real_predictor_factory
from app.uploads import is_json, json_body_limit
from captioning import __version__

logger = logging.getLogger(__name__)

# Multipart framing and the small option fields, on top of the file bytes themselves.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Routes other than the uploads take no body worth speaking of.
SMALL_BODY_BYTES = 64 * 1024
# Swagger UI's JavaScript and CSS, served from the installed swagger-ui-py package: FastAPI's
# default /docs loads them from a CDN and is a blank page on a machine without internet access.
# (swagger-ui-bundle ships Swagger UI 4, which cannot render FastAPI's OpenAPI 3.1.) The folder
# is found without importing the package, which would pull in its web-framework adapters.
DOCS_ASSETS_URL = "/docs-assets"


def _swagger_ui_dir() -> Path:
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing: run `make install`")
    return Path(spec.submodule_search_locations[0]) / "static"


DESCRIPTION = """
Captions photos with an EfficientNet-Lite encoder and an attention LSTM decoder (see `GET /model`).

Every error is `{"error": {"code": "...", "message": "..."}}` with a stable `code`.
Concurrent requests are batched together; when the queue is full the answer is
503 `overloaded` with a `Retry-After` header. Images go up as multipart files or as base64 in
JSON. When the server has API keys, every route but `/health` and `/ready` needs
`Authorization: Bearer KEY` or `X-API-Key: KEY` (the Authorize button here).
"""


def create_app(
    settings: Settings | None = None, predictor_factory: PredictorFactory | None = None
) -> FastAPI:
    """Build the app. `predictor_factory(artifacts_dir)` defaults to the real model loader."""
    settings = settings or get_settings()
    metrics = Metrics()
    factory = predictor_factory or real_predictor_factory(runtime=settings.runtime_options())
    service = CaptionService(settings, metrics, factory)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()  # raises (so the server exits) when the model cannot load
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="Captioner",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # replaced by the self-hosted page below
        redoc_url=None,  # ReDoc has no offline bundle here; /docs is the documentation
    )
    app.state.settings = settings
    app.state.service = service
    install_error_handlers(app)
    guard = ApiKeyGuard(settings.resolved_api_keys())
    app.include_router(public_router)
    app.include_router(router, **guard.route_options())
    _add_offline_docs(app)

    def body_limit(path: str, content_type: str | None) -> int:
        route = UPLOAD_ROUTES.get(path)
        if route is None:
            return SMALL_BODY_BYTES
        files = route.max_files(settings)
        if is_json(content_type):  # base64 takes 4 characters for every 3 bytes
            return json_body_limit(settings.max_upload_bytes, files)
        return settings.max_upload_bytes * files + MULTIPART_OVERHEAD_BYTES

    # The last added runs first: request context wraps everything, the size limit included.
    app.add_middleware(BodySizeLimitMiddleware, limit_for=body_limit)
    if settings.cors_origins:  # inside the request context, so refusals carry CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", API_KEY_HEADER, "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
        )
    app.add_middleware(
        RequestContextMiddleware, metrics=metrics, service=service, routes=app.router.routes
    )
    return app


def _add_offline_docs(app: FastAPI) -> None:
    """/docs as FastAPI builds it, but with Swagger UI's assets served by this app."""
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=_swagger_ui_dir()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a path-prefix proxy
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=root + redirect_url,
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


app = create_app()


def run() -> None:
    """`captioner serve` (or `captioner-serve`): one process, one model, settings from
    CAPTIONER_* variables."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the logging configured above
        access_log=False,  # RequestContextMiddleware writes one line per request
        lifespan="on",  # a failed startup must stop the server, not be ignored
        timeout_graceful_shutdown=max(1, round(settings.request_timeout_s)),
    )
