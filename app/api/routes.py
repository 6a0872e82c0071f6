"""HTTP routes: thin translations between HTTP and `CaptionService`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from app.api.params import parse_caption_options, to_search_settings, upload_openapi
from app.config import Settings
from app.errors import MissingFileError, error_responses
from app.schemas import (
    CaptionResponse,
    CaptionsResponse,
    HealthResponse,
    ModelManifest,
    ReadyResponse,
)
from app.service import CaptionService, Ready
from app.uploads import ParsedForm, UploadedFile, read_upload
from captioning.search_settings import SearchSettings

INDEX_HTML = Path(__file__).resolve().parent.parent / "static" / "index.html"
UPLOAD_ERRORS = error_responses(400, 413, 415, 422, 500, 503, 504)


@dataclass(frozen=True)
class UploadRoute:
    """Where an upload route finds its images, and how many it takes: the one table of
    per-route limits, which the body-size middleware reads too (`app.main`)."""

    file_field: str  # multipart
    json_field: str  # JSON, base64
    many: bool

    def max_files(self, settings: Settings) -> int:
        return settings.max_images_per_request if self.many else 1

    async def read(self, request: Request, settings: Settings) -> ParsedForm:
        # One oversized file in a batch fails alone; a single upload is refused whole.
        oversize: Literal["raise", "mark"] = "mark" if self.many else "raise"
        return await read_upload(
            request,
            file_field=self.file_field,
            json_field=self.json_field,
            max_file_bytes=settings.max_upload_bytes,
            max_files=self.max_files(settings),
            oversize=oversize,
        )


ONE_IMAGE = UploadRoute(file_field="file", json_field="image", many=False)
SEVERAL_IMAGES = UploadRoute(file_field="files", json_field="images", many=True)
UPLOAD_ROUTES = {"/caption": ONE_IMAGE, "/captions": SEVERAL_IMAGES}

# Open even with API keys on: probes and the static page. Everything on `router` needs a key.
public_router = APIRouter()
router = APIRouter()


def get_service(request: Request) -> CaptionService:
    return request.app.state.service


Service = Annotated[CaptionService, Depends(get_service)]


@public_router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(INDEX_HTML, media_type="text/html")


@public_router.get("/health", tags=["operations"], summary="The process is alive")
async def health() -> HealthResponse:
    return HealthResponse()


@public_router.get(
    "/ready",
    tags=["operations"],
    summary="The model is loaded and warmed up",
    responses=error_responses(503),
)
async def ready(service: Service) -> ReadyResponse:
    return ReadyResponse(model=service.require_ready().predictor.model_id)


@router.get(
    "/model",
    tags=["model"],
    summary="The model's manifest",
    response_model=ModelManifest,
    responses=error_responses(503),
)
async def model(service: Service) -> Any:
    return service.require_ready().predictor.manifest


@router.get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(service: Service) -> Response:
    return Response(service.metrics.render(), media_type=service.metrics.content_type)


@router.post(
    "/caption",
    tags=["captions"],
    summary="Caption one image",
    description="Upload one image as multipart field `file`, or as JSON "
    '`{"image": "<base64>"}`. Options may be form fields (JSON fields) or query parameters.',
    response_model=CaptionResponse,
    response_model_exclude_none=True,
    responses=UPLOAD_ERRORS,
    openapi_extra=upload_openapi(ONE_IMAGE.file_field, ONE_IMAGE.json_field, many=False),
)
async def caption(request: Request, service: Service) -> Any:
    ready = service.require_ready()  # before reading the body: no point receiving it
    form = await ONE_IMAGE.read(request, service.settings)
    settings = _search_settings(request, form, ready)
    (upload,) = _files(form, ONE_IMAGE.file_field)
    return await service.caption_one(ready, upload.data, settings)


@router.post(
    "/captions",
    tags=["captions"],
    summary="Caption several images",
    description="Upload images as repeated multipart field `files`, or as JSON "
    '`{"images": ["<base64>", ...]}` (at most the server\'s `max_images_per_request`, 16 by '
    "default). Every file gets its own result, in order: captions, or an error object when "
    "that file cannot be used.",
    response_model=CaptionsResponse,
    response_model_exclude_none=True,
    responses=UPLOAD_ERRORS,
    openapi_extra=upload_openapi(SEVERAL_IMAGES.file_field, SEVERAL_IMAGES.json_field, many=True),
)
async def captions(request: Request, service: Service) -> Any:
    ready = service.require_ready()
    form = await SEVERAL_IMAGES.read(request, service.settings)
    settings = _search_settings(request, form, ready)
    results = await service.caption_many(ready, _files(form, SEVERAL_IMAGES.file_field), settings)
    return CaptionsResponse(results=results)


def _search_settings(request: Request, form: ParsedForm, ready: Ready) -> SearchSettings:
    options = parse_caption_options(request.query_params, form.fields)
    return to_search_settings(options, ready.search)


def _files(form: ParsedForm, field: str) -> list[UploadedFile]:
    files = form.files_named(field)
    if files:
        return files
    others = sorted({f.field_name for f in form.files})
    hint = f" (files were sent in: {', '.join(others)})" if others else ""
    raise MissingFileError(f"no file in the multipart field {field!r}{hint}")
