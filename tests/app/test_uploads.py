"""Hostile and unusual uploads: each gets its status and error code, and the server goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
import sample_images as images
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sample_images import MULTIPART_CONTENT_TYPE, RED, jpeg, multipart_body, png


def post_file(client: TestClient, data: bytes, name: str = "photo.jpg", field: str = "file"):
    return client.post("/caption", files={field: (name, data, "image/jpeg")})


def post_raw(client: TestClient, body: bytes, content_type: str = MULTIPART_CONTENT_TYPE):
    return client.post("/caption", content=body, headers={"content-type": content_type})


def assert_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


def assert_alive(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert post_file(client, jpeg()).status_code == 200


@pytest.mark.parametrize(
    ("data", "name", "status", "code"),
    [
        pytest.param(b"", "empty.jpg", 422, "empty_file", id="empty"),
        pytest.param(b"hello, I am text\n", "notes.jpg", 415, "unsupported_image",
                     id="text-as-jpg"),
        pytest.param(images.truncated(images.noisy_jpeg()), "cut.jpg", 422, "corrupt_image",
                     id="truncated-jpeg"),
        pytest.param(images.truncated(images.noisy_png()), "cut.png", 422, "corrupt_image",
                     id="truncated-png"),
        pytest.param(images.corrupt_png(), "bad.png", 422, "corrupt_image", id="corrupt-png"),
        pytest.param(bytes(range(256)) * 8, "noise.jpg", 415, "unsupported_image", id="random"),
        pytest.param(images.ppm(), "image.ppm", 415, "unsupported_image", id="unsupported-format"),
        pytest.param(images.png_bomb(), "bomb.png", 413, "image_too_large", id="png-bomb"),
    ],
)  # fmt: skip
def test_bad_images_are_refused_with_their_code(client, data, name, status, code) -> None:
    message = assert_error(post_file(client, data, name), status, code)
    assert name not in message  # the client's filename is never echoed back
    assert_alive(client)


def test_pixel_limit_comes_from_settings(make_client) -> None:
    client = make_client(max_image_pixels=1000)
    message = assert_error(post_file(client, png(size=(64, 48))), 413, "image_too_large")
    assert "1,000" in message
    assert client.post(
        "/caption", files={"file": ("s.png", png(size=(30, 30)), "image/png")}
    ).status_code == (200)


@pytest.mark.parametrize(
    ("data", "expected_colour"),
    [
        pytest.param(images.cmyk_jpeg(), "red", id="cmyk-jpeg"),
        pytest.param(images.png_16bit(), "white", id="16-bit-png"),
        pytest.param(images.palette_png(), "blue", id="palette-png"),
        pytest.param(images.grayscale_png(), "gray", id="grayscale"),
        pytest.param(images.rgba_png(), "green", id="rgba"),
        pytest.param(images.animated_gif(), "red", id="animated-gif-first-frame"),
    ],
)
def test_unusual_image_modes_are_captioned(client, data: bytes, expected_colour: str) -> None:
    response = post_file(client, data)
    assert response.status_code == 200, response.text
    assert response.json()["caption"] == f"a {expected_colour} square on a table"


def test_exif_rotation_is_applied_before_reporting_size(client) -> None:
    body = post_file(client, images.exif_rotated_jpeg(stored=(60, 30))).json()
    assert (body["width"], body["height"]) == (30, 60)


def test_a_photo_decoded_at_reduced_scale_still_reports_its_full_size(client) -> None:
    # Many times the model's input on each side: libjpeg decodes it at 1/4 scale.
    body = post_file(client, images.exif_rotated_jpeg(stored=(400, 200))).json()
    assert (body["width"], body["height"]) == (200, 400)
    assert body["caption"] == "a red square on a table"


# --- multipart problems --------------------------------------------------------------------------
def test_missing_file_field(client) -> None:
    message = assert_error(post_file(client, jpeg(), field="image"), 422, "missing_file")
    assert "'file'" in message and "image" in message
    only_fields = multipart_body([("beam_size", None, b"2")])
    response = post_raw(client, only_fields)
    assert_error(response, 422, "missing_file")
    assert_alive(client)


def test_body_that_is_not_multipart(client) -> None:
    response = client.post("/caption", content=jpeg(), headers={"content-type": "image/jpeg"})
    assert_error(response, 415, "unsupported_media_type")
    assert_error(client.post("/caption", data={"file": "x"}), 415, "unsupported_media_type")
    assert_alive(client)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(multipart_body([("file", "a.jpg", jpeg())])[:-30], MULTIPART_CONTENT_TYPE,
                     id="no-closing-boundary"),
        pytest.param(b"", MULTIPART_CONTENT_TYPE, id="empty-body"),
        pytest.param(multipart_body([("file", "a.jpg", jpeg())]), "multipart/form-data",
                     id="no-boundary"),
        pytest.param(b"--" + images.BOUNDARY.encode() + b"\r\nno headers end",
                     MULTIPART_CONTENT_TYPE, id="broken-headers"),
    ],
)  # fmt: skip
def test_malformed_multipart_is_400(client, body: bytes, content_type: str) -> None:
    response = post_raw(client, body, content_type)
    assert_error(response, 400, "invalid_multipart")
    assert_alive(client)


def test_part_without_a_name_is_400(client) -> None:
    body = multipart_body([("file", "a.jpg", jpeg())]).replace(b'name="file"; ', b"")
    response = post_raw(client, body)
    assert_error(response, 400, "invalid_multipart")


def test_oversized_form_field_is_400(client) -> None:
    body = multipart_body([("beam_size", None, b"1" * 5000), ("file", "a.jpg", jpeg())])
    response = post_raw(client, body)
    assert "beam_size" in assert_error(response, 400, "invalid_multipart")


def test_too_many_form_fields_is_400(client) -> None:
    fields = [("attention", None, b"true")] * 40  # the same name again and again
    response = post_raw(client, multipart_body([*fields, ("file", "a.jpg", jpeg())]))
    assert "at most 32" in assert_error(response, 400, "invalid_multipart")


def test_two_files_on_the_single_route(client) -> None:
    files = [("file", ("a.jpg", jpeg(), "image/jpeg")), ("file", ("b.jpg", jpeg(), "image/jpeg"))]
    message = assert_error(client.post("/caption", files=files), 413, "too_many_files")
    assert "/captions" in message
    assert_alive(client)


def test_file_without_filename_is_still_a_file(client) -> None:
    body = multipart_body([("file", None, jpeg())])
    response = post_raw(client, body)
    assert response.status_code == 200, response.text


# --- size limits ---------------------------------------------------------------------------------
def test_upload_over_the_limit_is_413(make_client) -> None:
    client = make_client(max_upload_bytes=4000)
    big = images.noisy_png()  # about 9 KB
    assert len(big) > 4000
    message = assert_error(post_file(client, big), 413, "upload_too_large")
    assert "3.91 KiB" in message
    assert_alive(client)


def test_oversized_file_in_a_batch_fails_alone(make_client) -> None:
    client = make_client(max_upload_bytes=4000)
    files = [
        ("files", ("a.jpg", jpeg(), "image/jpeg")),
        ("files", ("big.png", images.noisy_png(), "image/png")),
        ("files", ("c.png", png(), "image/png")),
    ]
    results = client.post("/captions", files=files).json()["results"]
    assert "caption" in results[0] and "caption" in results[2]
    assert results[1]["error"]["code"] == "upload_too_large"


def test_large_uploads_stay_in_memory(client, monkeypatch) -> None:
    """Starlette spools uploads over 1 MiB to disk; ours never touch the file system."""
    import tempfile

    import starlette.formparsers

    def refuse(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    large = images.noisy_png(size=(700, 600))
    assert len(large) > 1024 * 1024
    assert post_file(client, large, "large.png").status_code == 200


async def _raw_post(
    app: FastAPI, path: str, headers: dict[str, str], chunks: Iterable[bytes]
) -> tuple[int, bytes, int]:
    """POST straight to the ASGI app; returns status, body and how many chunks it pulled."""
    pulled = 0
    source = iter(chunks)

    async def receive() -> dict:
        nonlocal pulled
        chunk = next(source, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, pulled


def _endless_upload(field: str, chunk: bytes, count: int) -> Iterable[bytes]:
    yield images.multipart_head(field, "huge.jpg")
    for _ in range(count):
        yield chunk
    yield images.multipart_tail()


def test_declared_length_over_limit_is_refused_without_reading(make_app) -> None:
    app = make_app(max_upload_bytes=10_000)
    headers = {"content-type": MULTIPART_CONTENT_TYPE, "content-length": str(10**9)}
    status, body, pulled = asyncio.run(_raw_post(app, "/caption", headers, [b"x" * 1000] * 10))
    assert status == 413 and b"upload_too_large" in body
    assert pulled == 0


def test_invalid_content_length_is_400(make_app) -> None:
    app = make_app()
    headers = {"content-type": MULTIPART_CONTENT_TYPE, "content-length": "12abc"}
    status, body, _ = asyncio.run(_raw_post(app, "/caption", headers, []))
    assert status == 400 and b"bad_request" in body


def test_streamed_upload_stops_as_soon_as_the_file_passes_the_limit(make_app) -> None:
    app = make_app(max_upload_bytes=10_000)
    headers = {"content-type": MULTIPART_CONTENT_TYPE}  # chunked: no Content-Length
    chunks = _endless_upload("file", b"\xff" * 1024, count=10_000)  # 10 MB if read to the end
    status, body, pulled = asyncio.run(_raw_post(app, "/caption", headers, chunks))
    assert status == 413 and b"upload_too_large" in body
    assert pulled <= 12  # the header part, ~10 KiB of file, and the chunk that crossed the line


def test_streamed_batch_stops_at_the_request_limit(make_app) -> None:
    # /captions keeps reading past one oversized file, but the whole body is bounded too.
    app = make_app(max_upload_bytes=1024, max_images_per_request=2)
    headers = {"content-type": MULTIPART_CONTENT_TYPE}
    chunks = _endless_upload("files", b"\xff" * 1024, count=10_000)
    status, body, pulled = asyncio.run(_raw_post(app, "/captions", headers, chunks))
    assert status == 413 and b"upload_too_large" in body
    assert pulled <= 2 + 64 + 2  # 2 KiB of files + 64 KiB of multipart allowance


def test_other_routes_refuse_large_bodies(make_app) -> None:
    app = make_app()
    headers = {"content-length": str(1024 * 1024)}
    status, body, pulled = asyncio.run(_raw_post(app, "/ready", headers, [b"x" * 1024] * 1024))
    assert status == 413 and b"upload_too_large" in body
    assert pulled == 0


def test_red_still_red_after_all_that(client) -> None:
    assert post_file(client, jpeg(RED)).json()["caption"] == "a red square on a table"
