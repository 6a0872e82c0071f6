"""Routes, options, response shape, errors, request ids, logging, metrics and the OpenAPI docs."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi.testclient import TestClient
from sample_images import BLUE, GREEN, RED, jpeg, png

from app.log import JsonFormatter, RequestIdFilter, TextFormatter, request_id_var


def post_caption(client: TestClient, data: bytes | None = None, params=None, **fields: object):
    return client.post(
        "/caption",
        files={"file": ("photo.jpg", jpeg() if data is None else data, "image/jpeg")},
        data={name: str(value) for name, value in fields.items()},
        params=params,
    )


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def assert_alive(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert post_caption(client).status_code == 200


# --- operational routes --------------------------------------------------------------------------
def test_health_ready_and_model(client, predictor) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready", "model": "fake-captioner-1"}
    assert client.get("/model").json() == predictor.manifest
    assert predictor.warmed_up


def test_metrics_report_requests_latency_batches_and_queue(client) -> None:
    assert post_caption(client).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'captioner_http_requests_total{method="POST",route="/caption",status="200"} 1.0' in text
    assert 'captioner_http_request_duration_seconds_bucket{le="0.5",method="POST"' in text
    assert "captioner_batch_size_count 1.0" in text
    assert "captioner_queue_depth 0.0" in text
    assert 'captioner_images_total{outcome="ok"} 1.0' in text
    assert 'captioner_inference_duration_seconds_count{stage="encode"} 1.0' in text
    assert "captioner_ready 1.0" in text


def test_unknown_paths_are_one_label_in_metrics(client) -> None:
    for path in ("/a", "/b", "/c"):
        assert_error(client.get(path), 404, "not_found")
    text = client.get("/metrics").text
    assert 'route="<unmatched>",status="404"} 3.0' in text
    assert 'route="/a"' not in text


def test_each_app_has_its_own_metrics(make_client) -> None:
    first, second = make_client(), make_client()
    post_caption(first)
    assert "captioner_batch_size_count 1.0" in first.get("/metrics").text
    assert "captioner_batch_size_count 0.0" in second.get("/metrics").text


# --- /caption ------------------------------------------------------------------------------------
def test_caption_response_shape(client) -> None:
    response = post_caption(client, jpeg(RED, size=(80, 50)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "caption",
        "captions",
        "tags",
        "evidence",
        "width",
        "height",
        "model",
        "timings_ms",
    }
    assert body["caption"] == "a red square on a table"
    assert body["tags"] == [{"word": "red", "probability": pytest.approx(0.86, abs=0.05)}]
    assert body["captions"] == [
        {"text": body["caption"], "log_prob": pytest.approx(-3.0), "score": pytest.approx(-1.2247)}
    ]
    assert (body["width"], body["height"]) == (80, 50)
    assert body["model"] == "fake-captioner-1"
    timings = body["timings_ms"]
    assert set(timings) == {"decode", "queue", "encode", "generate", "total"}
    assert all(value >= 0 for value in timings.values())
    assert timings["total"] >= timings["encode"] + timings["generate"]


def test_the_concepts_option_reaches_decoding_and_defaults_to_the_setting(
    client, predictor
) -> None:
    for query, expected in (({}, True), ({"concepts": "false"}, False), ({"concepts": "1"}, True)):
        predictor.generate_calls.clear()
        assert post_caption(client, jpeg(RED), **query).status_code == 200
        assert [options.concepts for _, options in predictor.generate_calls] == [expected]
    assert post_caption(client, jpeg(RED), concepts="maybe").status_code == 422


def test_several_images_each_get_their_tags(client) -> None:
    files = [
        ("files", ("r.jpg", jpeg(RED), "image/jpeg")),
        ("files", ("b.png", png(BLUE), "image/png")),
    ]
    results = client.post("/captions", files=files).json()["results"]
    assert [r["tags"][0]["word"] for r in results] == ["red", "blue"]


def test_tags_are_in_the_openapi_schema(client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "tags" in schemas["CaptionResponse"]["required"]
    assert set(schemas["TagItem"]["properties"]) == {"word", "probability"}


def test_n_best_captions_with_attention(client) -> None:
    response = post_caption(client, png(BLUE), beam_size=4, num_captions=3, attention="true")
    assert response.status_code == 200, response.text
    captions = response.json()["captions"]
    assert len(captions) == 3
    assert len({c["text"] for c in captions}) == 3
    assert [c["score"] for c in captions] == sorted((c["score"] for c in captions), reverse=True)
    for caption in captions:
        words = caption["text"].split()
        assert [a["word"] for a in caption["attention"]] == words
        for item in caption["attention"]:
            weights = item["weights"]
            assert len(weights) == 4 and all(len(row) == 4 for row in weights)  # grid x grid
            assert sum(map(sum, weights)) == pytest.approx(1.0, abs=1e-3)


def test_options_reach_the_model(client, predictor) -> None:
    response = post_caption(client, beam_size=5, max_length=3, num_captions=2)
    assert response.status_code == 200
    assert predictor.generate_calls[-1][1] == predictor.search.with_options(
        beam_size=5, max_length=3, num_captions=2, return_attention=False
    )
    assert all(len(c["text"].split()) <= 3 for c in response.json()["captions"])


def test_default_beam_size_comes_from_settings(make_client, predictor) -> None:
    client = make_client(predictor, default_beam_size=4)
    assert post_caption(client).status_code == 200
    assert predictor.generate_calls[-1][1].beam_size == 4


def test_options_as_query_parameters_and_form_fields_win(client, predictor) -> None:
    assert post_caption(client, params={"beam_size": 2, "attention": "1"}).status_code == 200
    assert predictor.generate_calls[-1][1].beam_size == 2
    assert predictor.generate_calls[-1][1].return_attention
    assert post_caption(client, params={"beam_size": 2}, beam_size=6).status_code == 200
    assert predictor.generate_calls[-1][1].beam_size == 6


def test_empty_form_value_means_default(client, predictor) -> None:
    assert post_caption(client, beam_size="", max_length="").status_code == 200
    assert predictor.generate_calls[-1][1] == predictor.search.with_options(beam_size=3)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("beam_size", "0"),
        ("beam_size", "11"),
        ("beam_size", "three"),
        ("max_length", "0"),
        ("max_length", "51"),
        ("max_length", "13"),  # above the model's own maximum (12)
        ("num_captions", "0"),
        ("num_captions", "11"),
        ("attention", "maybe"),
        ("min_word_probability", "1"),
        ("min_word_probability", "-0.1"),
    ],
)
@pytest.mark.parametrize("where", ["form", "query"])
def test_out_of_range_parameters_are_422(client, name: str, value: str, where: str) -> None:
    if where == "form":
        response = post_caption(client, **{name: value})
    else:
        response = post_caption(client, params={name: value})
    error = assert_error(response, 422, "invalid_parameter")
    assert error["message"].startswith(f"{name}: ")
    assert client.get("/health").status_code == 200


def test_more_captions_than_beams_is_422(client) -> None:
    response = post_caption(client, beam_size=2, num_captions=3)
    error = assert_error(response, 422, "invalid_parameter")
    assert "num_captions" in error["message"] and "beam_size (2)" in error["message"]
    # The default beam (3) bounds it too.
    assert_error(post_caption(client, num_captions=4), 422, "invalid_parameter")
    assert_alive(client)


# --- /captions -----------------------------------------------------------------------------------
def test_captions_answers_in_order_and_isolates_bad_files(client) -> None:
    files = [
        ("files", ("red.jpg", jpeg(RED), "image/jpeg")),
        ("files", ("notes.jpg", b"just some text", "image/jpeg")),
        ("files", ("blue.png", png(BLUE), "image/png")),
        ("files", ("empty.jpg", b"", "image/jpeg")),
        ("files", ("green.png", png(GREEN), "image/png")),
    ]
    response = client.post("/captions", files=files, data={"num_captions": "2"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("caption", r.get("error", {}).get("code")) for r in results] == [
        "a red square on a table",
        "unsupported_image",
        "a blue square on a table",
        "empty_file",
        "a green square on a table",
    ]
    assert all(len(r["captions"]) == 2 for r in results if "captions" in r)
    assert_alive(client)


def test_captions_batches_the_images_of_one_request(client, predictor) -> None:
    files = [("files", (f"{i}.png", png(RED), "image/png")) for i in range(5)]
    assert client.post("/captions", files=files).status_code == 200
    assert predictor.encode_batches == [5]


def test_captions_refuses_too_many_files(make_client) -> None:
    client = make_client(max_images_per_request=2)
    files = [("files", (f"{i}.png", png(RED), "image/png")) for i in range(3)]
    error = assert_error(client.post("/captions", files=files), 413, "too_many_files")
    assert "at most 2" in error["message"]
    assert_alive(client)


def test_captions_without_files_is_422(client) -> None:
    response = client.post("/captions", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    error = assert_error(response, 422, "missing_file")
    assert "'files'" in error["message"] and "file" in error["message"]


def test_captions_validates_options(client) -> None:
    files = [("files", ("a.png", png(), "image/png"))]
    response = client.post("/captions", files=files, params={"beam_size": 0})
    assert_error(response, 422, "invalid_parameter")


# --- errors, request ids, logs -------------------------------------------------------------------
def test_routing_errors_are_json(client) -> None:
    assert_error(client.get("/nowhere"), 404, "not_found")
    response = client.get("/caption")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


def test_unexpected_errors_are_500_without_internals(client, predictor) -> None:
    predictor.broken_manifest = True
    response = client.get("/model")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "x-request-id" in response.headers
    assert error["message"]
    predictor.broken_manifest = False
    assert_alive(client)


def test_model_failure_is_500_inference_failed(make_client, make_predictor) -> None:
    client = make_client(make_predictor(fail_generate=lambda options: options.beam_size == 2))
    response = post_caption(client, beam_size=2)
    assert_error(response, 500, "inference_failed")
    assert "secret" not in response.text
    assert_alive(client)


def test_request_id_is_returned_or_generated(client) -> None:
    given = client.get("/health", headers={"X-Request-ID": "abc-123.x"})
    assert given.headers["x-request-id"] == "abc-123.x"
    generated = client.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # Ids that could forge log lines or are absurdly long are replaced.
    for hostile in ("bad id\r\nlevel=ERROR", "x" * 500):
        returned = client.get("/health", headers={"X-Request-ID": hostile}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", returned)
    # Errors carry it too.
    assert client.get("/nowhere", headers={"X-Request-ID": "r-404"}).headers["x-request-id"] == (
        "r-404"
    )


def test_one_log_line_per_request(client, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="app.access"):
        post_caption(client, params={"beam_size": 0}, data=None)
        response = post_caption(client)
    records = [r for r in caplog.records if r.name == "app.access"]
    assert len(records) == 2
    last = records[-1]
    assert last.request_id == response.headers["x-request-id"]
    assert (last.method, last.path, last.status) == ("POST", "/caption", 200)
    assert records[0].status == 422


def test_json_and_text_log_formats() -> None:
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "GET /x 200", None, None)
    record.status = 200
    token = request_id_var.set("req-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "GET /x 200"
    assert entry["level"] == "INFO" and entry["logger"] == "app.access"
    assert entry["request_id"] == "req-1" and entry["status"] == 200
    assert "request_id=req-1" in TextFormatter().format(record)


# --- docs and page -------------------------------------------------------------------------------
def test_openapi_documents_routes_bodies_and_errors(client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/caption", "/captions", "/health", "/ready", "/model", "/metrics"} <= set(paths)
    assert "/" not in paths
    error_ref = "#/components/schemas/ErrorResponse"
    for path, status in [("/caption", "413"), ("/caption", "415"), ("/captions", "422")]:
        content = paths[path]["post"]["responses"][status]["content"]["application/json"]
        assert content["schema"]["$ref"] == error_ref
    assert paths["/ready"]["get"]["responses"]["503"]["content"]["application/json"]["schema"][
        "$ref"
    ] == (error_ref)
    overloaded = paths["/caption"]["post"]["responses"]["503"]
    assert "Retry-After" in overloaded["headers"]
    single = paths["/caption"]["post"]
    body = single["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["file"]["format"] == "binary"
    assert {"beam_size", "max_length", "num_captions", "attention"} <= set(body["properties"])
    assert {p["name"] for p in single["parameters"]} == {
        "beam_size",
        "max_length",
        "num_captions",
        "attention",
        "grounding",
        "concepts",
        "min_word_probability",
    }
    ok = single["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/CaptionResponse")
    many = paths["/captions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert many["properties"]["files"]["type"] == "array"
    components = schema["components"]["schemas"]
    assert components["ErrorResponse"]["examples"]
    assert components["CaptionResponse"]["properties"]["caption"]["examples"]
    assert client.get("/docs").status_code == 200


def test_index_page_has_the_stable_ids(client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for element_id in ("file-input", "drop-zone", "caption", "captions", "timings", "error"):
        assert f'id="{element_id}"' in page
    assert 'id="preview"' in page and "word" in page
    # Self-contained: no CDN or other external resource.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
