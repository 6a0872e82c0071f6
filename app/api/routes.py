"""HTTP routes: thin translations between HTTP and `CaptionService`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from app.api.params import parse_caption_options, to_decode_options, upload_openapi
from app.errors import MissingFileError, error_responses
from app.schemas import (
    CaptionResponse,
    CaptionsResponse,
    HealthResponse,
    ModelManifest,
    ReadyResponse,
)
from app.service import CaptionService
from app.uploads import ParsedForm, UploadedFile, read_upload
from captioning.predictor import DecodeOptions

INDEX_HTML = Path(__file__).resolve().parent.parent / "static" / "index.html"
UPLOAD_ERRORS = error_responses(400, 413, 415, 422, 500, 503, 504)

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
    predictor, _ = service.require_ready()
    return ReadyResponse(model=predictor.model_id)


@router.get(
    "/model",
    tags=["model"],
    summary="The model's manifest",
    response_model=ModelManifest,
    responses=error_responses(503),
)
async def model(service: Service) -> Any:
    predictor, _ = service.require_ready()
    return predictor.manifest


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
    openapi_extra=upload_openapi("file", "image", many=False),
)
async def caption(request: Request, service: Service) -> Any:
    service.require_ready()  # before reading the body: no point receiving it
    form = await read_upload(
        request,
        file_field="file",
        json_field="image",
        max_file_bytes=service.settings.max_upload_bytes,
        max_files=1,
        oversize="raise",
    )
    options = _options(request, form, service)
    (upload,) = _files(form, "file")
    return await service.caption_one(bytes(upload.data), options)


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
    openapi_extra=upload_openapi("files", "images", many=True),
)
async def captions(request: Request, service: Service) -> Any:
    service.require_ready()
    form = await read_upload(
        request,
        file_field="files",
        json_field="images",
        max_file_bytes=service.settings.max_upload_bytes,
        max_files=service.settings.max_images_per_request,
        oversize="mark",  # one oversized file fails alone
    )
    options = _options(request, form, service)
    results = await service.caption_many(_files(form, "files"), options)
    return CaptionsResponse(results=results)


def _options(request: Request, form: ParsedForm, service: CaptionService) -> DecodeOptions:
    predictor, _ = service.require_ready()
    return to_decode_options(
        parse_caption_options(request.query_params, form.fields),
        default_beam_size=service.settings.default_beam_size,
        default_concepts=service.settings.concepts,
        model_max_length=predictor.max_length,
    )


def _files(form: ParsedForm, field: str) -> list[UploadedFile]:
    files = form.files_named(field)
    if files:
        return files
    others = sorted({f.field_name for f in form.files})
    hint = f" (files were sent in: {', '.join(others)})" if others else ""
    raise MissingFileError(f"no file in the multipart field {field!r}{hint}")
