"""API keys (off by default) and CORS (none by default)."""

from __future__ import annotations

import logging

import pytest
from sample_images import jpeg

KEY = "k3y-for-tests-0123456789"
OTHER_KEY = "second-key-abcdef"
PROTECTED = [("GET", "/model"), ("GET", "/metrics"), ("POST", "/caption"), ("POST", "/captions")]


def _call(client, method: str, path: str, headers: dict[str, str] | None = None):
    if method == "GET":
        return client.get(path, headers=headers)
    field = "file" if path == "/caption" else "files"
    return client.post(path, files={field: ("red.jpg", jpeg(), "image/jpeg")}, headers=headers)


def assert_unauthorized(response) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    return response.json()["error"]["message"]


@pytest.fixture
def keyed(make_client):
    return make_client(api_keys=f"{KEY}, {OTHER_KEY}")


def test_keys_are_off_by_default(client) -> None:
    for method, path in PROTECTED:
        assert _call(client, method, path).status_code == 200, path
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_without_a_key_every_api_route_is_401(keyed, method, path) -> None:
    message = assert_unauthorized(_call(keyed, method, path))
    assert "Authorization: Bearer" in message and "X-API-Key" in message


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_a_wrong_key_is_401(keyed, method, path) -> None:
    for headers in (
        {"Authorization": "Bearer not-the-key"},
        {"X-API-Key": KEY[:-1]},
        {"X-API-Key": KEY + "x"},
        {"Authorization": f"Basic {KEY}"},  # not a bearer token
        {"Authorization": f"Bearer {KEY.upper()}"},
    ):
        assert_unauthorized(_call(keyed, method, path, headers))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"authorization": f"bearer {OTHER_KEY}"},  # header names and scheme: any case
        {"X-API-Key": KEY},
        {"x-api-key": OTHER_KEY},
        {"Authorization": "Bearer wrong", "X-API-Key": KEY},  # one good key is enough
    ],
)
@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_a_good_key_by_either_header_is_accepted(keyed, method, path, headers) -> None:
    assert _call(keyed, method, path, headers).status_code == 200


def test_health_ready_docs_and_page_stay_open(keyed) -> None:
    for path in ("/health", "/ready", "/", "/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path


def test_keys_from_a_file(make_client, tmp_path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# one key a line\n\n  {KEY}  \n")
    client = make_client(api_keys_file=keys_file)
    assert_unauthorized(client.get("/model"))
    assert client.get("/model", headers={"X-API-Key": KEY}).status_code == 200


def test_an_unreadable_or_empty_keys_file_stops_the_app(make_app, tmp_path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        make_app(api_keys_file=tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no key"):
        make_app(api_keys_file=tmp_path / "empty.txt")


def test_docs_show_both_schemes_and_401(keyed) -> None:
    document = keyed.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key as a bearer token.",
    }
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    for path, method in (("/caption", "post"), ("/model", "get"), ("/metrics", "get")):
        operation = document["paths"][path][method]
        assert {next(iter(s)) for s in operation["security"]} == {"bearer", "apiKey"}
        assert "401" in operation["responses"]
    for path in ("/health", "/ready"):
        assert "security" not in document["paths"][path]["get"]


def test_keys_never_reach_the_logs_or_the_settings_repr(make_client, make_settings, caplog) -> None:
    with caplog.at_level(logging.DEBUG):
        client = make_client(api_keys=KEY)
        client.get("/model", headers={"Authorization": f"Bearer {KEY}"})
        client.get("/model", headers={"X-API-Key": KEY + "-wrong"})
        client.get("/model", headers={"Authorization": "Bearer guessed-key"})
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert "/model" in text  # the requests were logged ...
    assert KEY not in text and "guessed-key" not in text  # ... without any key
    assert KEY not in repr(make_settings(api_keys=KEY))


def test_a_wrong_key_leaves_the_service_running(keyed) -> None:
    for _ in range(3):
        assert_unauthorized(_call(keyed, "POST", "/caption", {"X-API-Key": "nope"}))
    assert _call(keyed, "POST", "/caption", {"X-API-Key": KEY}).json()["caption"]


def test_no_cors_headers_by_default(client) -> None:
    response = client.get("/health", headers={"Origin": "https://example.org"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_origins_from_settings(make_client) -> None:
    client = make_client(
        cors_origins="https://cms.example.org, https://other.example.org", api_keys=KEY
    )
    preflight = client.options(
        "/caption",
        headers={
            "Origin": "https://cms.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200  # answered without a key: browsers send none here
    assert preflight.headers["access-control-allow-origin"] == "https://cms.example.org"
    refused = client.get("/model", headers={"Origin": "https://cms.example.org"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "https://cms.example.org"
    stranger = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers
