"""Caption options from form fields or query parameters, and their OpenAPI description.

The upload routes read their multipart body themselves (see `app.uploads`), so FastAPI cannot
declare these parameters; validation errors are still raised as `RequestValidationError`, so they
look exactly like FastAPI's own 422s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.schemas import CaptionOptions
from captioning.search_settings import SearchSettings, SearchSettingsError


def parse_caption_options(query: Mapping[str, str], form: Mapping[str, object]) -> CaptionOptions:
    """Merge the two sources (a form or JSON field beats a query parameter) and validate."""
    raw: dict[str, object] = {}
    source: dict[str, str] = {}
    for name in CaptionOptions.model_fields:
        for where, values in (("body", form), ("query", query)):
            # HTML forms send "" for an empty input; that means "not given", not an error.
            if values.get(name, "") != "":
                raw[name], source[name] = values[name], where
                break
    try:
        return CaptionOptions.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {**error, "loc": (source.get(str(error["loc"][0]), "body"), *error["loc"])}
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None


def to_search_settings(options: CaptionOptions, defaults: SearchSettings) -> SearchSettings:
    """The server's search settings with the request's options; the checks that depend on
    other values or on the model (`SearchSettings` makes them) answer as 422s."""
    try:
        return defaults.with_options(
            beam_size=options.beam_size,
            max_length=options.max_length,
            num_captions=options.num_captions,
            return_attention=options.attention,
            concepts=options.concepts,
            grounding=options.grounding,
            min_word_probability=options.min_word_probability,
        )
    except SearchSettingsError as exc:
        error = {"type": "value_error", "loc": ("body", exc.field), "msg": exc.message}
        raise RequestValidationError([error]) from None


def upload_openapi(file_field: str, json_field: str, *, many: bool) -> dict[str, Any]:
    """`openapi_extra` for an upload route: the multipart and the JSON body, and the same
    options as query parameters."""
    options = CaptionOptions.model_json_schema()["properties"]
    binary = {"type": "string", "format": "binary"}
    encoded = {"type": "string", "contentEncoding": "base64"}
    many_note = "The images (at most max_images_per_request); answered in order."
    one_note = "The image (JPEG, PNG, GIF, WebP, BMP, TIFF)."
    if many:
        file_schema: dict[str, Any] = {"type": "array", "items": binary, "description": many_note}
        json_schema: dict[str, Any] = {
            "type": "array",
            "items": encoded,
            "minItems": 1,
            "description": many_note + " Base64, or data: URIs.",
        }
    else:
        file_schema = {**binary, "description": one_note}
        json_schema = {**encoded, "description": one_note + " Base64, or a data: URI."}

    def body(field: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "schema": {
                "type": "object",
                "required": [field],
                "properties": {field: schema, **options},
            }
        }

    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": body(file_field, file_schema),
                "application/json": body(json_field, json_schema),
            },
        },
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": "Query parameter or form field. " + schema.get("description", ""),
                "schema": {k: v for k, v in schema.items() if k != "description"},
            }
            for name, schema in options.items()
        ],
    }
