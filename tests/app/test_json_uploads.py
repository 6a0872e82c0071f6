"""JSON bodies with base64 images: same options, limits, errors and answers as multipart."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import sample_images as images
from sample_images import BLUE, RED, jpeg, png
from test_uploads import _raw_post, assert_alive, assert_error

JSON = {"content-type": "application/json"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_one_image_as_json_answers_as_multipart(client) -> None:
    data = jpeg(RED)
    as_json = client.post("/caption", json={"image": b64(data)})
    as_file = client.post("/caption", files={"file": ("red.jpg", data, "image/jpeg")})
    assert as_json.status_code == 200, as_json.text
    strip = lambda body: {k: v for k, v in body.items() if k != "timings_ms"}  # noqa: E731
    assert strip(as_json.json()) == strip(as_file.json())
    assert "red" in as_json.json()["caption"]


def test_options_in_the_body_and_in_the_query(client) -> None:
    body = {"image": b64(jpeg()), "beam_size": 4, "num_captions": 3, "attention": True}
    answer = client.post("/caption", json=body).json()
    assert len(answer["captions"]) == 3 and "attention" in answer["captions"][0]
    # A body field beats the query parameter, as a form field does; null means "not given".
    answer = client.post(
        "/caption?num_captions=2&beam_size=2", json={"image": b64(jpeg()), "num_captions": 1}
    ).json()
    assert len(answer["captions"]) == 1
    answer = client.post(
        "/caption?num_captions=2", json={"image": b64(jpeg()), "num_captions": None}
    )
    assert len(answer.json()["captions"]) == 2


def test_bad_options_are_422_like_multipart(client) -> None:
    for bad in ({"beam_size": 0}, {"beam_size": "many"}, {"num_captions": 5, "beam_size": 2}):
        response = client.post("/caption", json={"image": b64(jpeg()), **bad})
        assert_error(response, 422, "invalid_parameter")


def test_several_images_answered_in_order_with_errors_alone(client) -> None:
    body = {"images": [b64(jpeg(RED)), b64(b"not an image"), b64(png(BLUE)), ""]}
    results = client.post("/captions", json=body).json()["results"]
    assert "red" in results[0]["caption"] and "blue" in results[2]["caption"]
    assert results[1]["error"]["code"] == "unsupported_image"
    assert results[3]["error"]["code"] == "empty_file"


def test_data_uris_and_line_breaks_are_accepted(client) -> None:
    encoded = b64(jpeg(BLUE))
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    for text in (f"data:image/jpeg;base64,{encoded}", wrapped):
        response = client.post("/caption", json={"image": text})
        assert "blue" in response.json()["caption"]


@pytest.mark.parametrize("text", ["not base64!", "QUJ", "QU=D", "QUJDRA", "éé=="])
def test_bad_base64_is_400(client, text) -> None:
    message = assert_error(client.post("/caption", json={"image": text}), 400, "invalid_base64")
    assert message == "image is not valid base64"
    body = {"images": [b64(jpeg()), text]}
    message = assert_error(client.post("/captions", json=body), 400, "invalid_base64")
    assert message == "images[1] is not valid base64"
    assert_alive(client)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"\xff\xfe\x00", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'"just a string"', 400, "invalid_json"),
        (b"{}", 422, "missing_file"),
        (b'{"image": null}', 422, "missing_file"),
        (b'{"file": "QUJD"}', 422, "missing_file"),
        (b'{"image": 12}', 422, "invalid_parameter"),
        (b'{"image": ["QUJD"]}', 422, "invalid_parameter"),
        (b'{"image": ""}', 422, "empty_file"),
    ],
)
def test_wrong_shapes_on_the_single_route(client, body, status, code) -> None:
    assert_error(client.post("/caption", content=body, headers=JSON), status, code)
    assert_alive(client)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "missing_file"),
        ({"images": []}, 422, "missing_file"),
        ({"images": "QUJD"}, 422, "invalid_parameter"),
        ({"images": ["QUJD", 3]}, 422, "invalid_parameter"),
        ({"image": "QUJD"}, 422, "missing_file"),
    ],
)
def test_wrong_shapes_on_the_batch_route(client, body, status, code) -> None:
    assert_error(client.post("/captions", json=body), status, code)


def test_several_images_on_the_single_route_points_to_captions(client) -> None:
    message = assert_error(
        client.post("/caption", json={"images": [b64(jpeg())]}), 422, "missing_file"
    )
    assert "POST /captions" in message


def test_too_many_images_is_413(make_client) -> None:
    client = make_client(max_images_per_request=2)
    body = {"images": [b64(jpeg())] * 3}
    assert_error(client.post("/captions", json=body), 413, "too_many_files")


def test_the_file_limit_counts_decoded_bytes(make_client) -> None:
    data = images.noisy_png(size=(40, 40))
    client = make_client(max_upload_bytes=len(data))
    # The base64 text is a third longer than the limit, yet the image fits it.
    assert client.post("/caption", json={"image": b64(data)}).status_code == 200
    small = make_client(max_upload_bytes=len(data) - 1)
    message = assert_error(
        small.post("/caption", json={"image": b64(data)}), 413, "upload_too_large"
    )
    assert message.startswith("image is larger than")
    results = small.post("/captions", json={"images": [b64(data), b64(jpeg())]}).json()["results"]
    assert results[0]["error"]["code"] == "upload_too_large" and results[1]["caption"]


def test_a_declared_body_too_large_is_refused_before_reading(make_app) -> None:
    app = make_app(max_upload_bytes=10_000)
    headers = {**JSON, "content-length": str(10**8)}
    status, body, pulled = asyncio.run(_raw_post(app, "/caption", headers, [b"x" * 1000] * 10))
    assert status == 413 and b"upload_too_large" in body and pulled == 0


def test_a_streamed_body_stops_at_the_limit(make_app) -> None:
    app = make_app(max_upload_bytes=10_000, max_images_per_request=2)
    chunks = (b'{"images": ["' if i == 0 else b"A" * 1024 for i in range(10_000))
    status, body, pulled = asyncio.run(_raw_post(app, "/captions", JSON, chunks))
    assert status == 413 and b"upload_too_large" in body
    assert pulled <= 2 * 14 + 64 + 2  # two base64 images of 10 kB, and the 64 KiB allowance


def test_json_with_a_charset_parameter(client) -> None:
    body = json.dumps({"image": b64(jpeg())}).encode()
    response = client.post(
        "/caption", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200


def test_other_media_types_are_still_415(client) -> None:
    response = client.post("/caption", content=b"x", headers={"content-type": "text/plain"})
    assert "application/json" in assert_error(response, 415, "unsupported_media_type")


def test_the_document_describes_both_bodies(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, field, kind in (("/caption", "image", "string"), ("/captions", "images", "array")):
        content = paths[path]["post"]["requestBody"]["content"]
        assert set(content) == {"multipart/form-data", "application/json"}
        schema = content["application/json"]["schema"]
        assert schema["required"] == [field] and schema["properties"][field]["type"] == kind
        assert {"beam_size", "num_captions", "max_length", "attention"} <= set(schema["properties"])
