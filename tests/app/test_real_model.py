"""The service around the real predictor, loaded from the tiny trained artifacts folder.

The tiny model memorises captions like "a red circle on white" for generated shape images, so
answers can be checked word for word. Fault injection stays with the fake predictor.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sample_images as images
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from captioning.bundle import ArtifactError
from captioning.text import normalize_caption
from tests.support.fixtures import jpeg_bytes, shape_image, tiny_examples

pytestmark = pytest.mark.slow  # needs the tiny trained model (trained once per session)


def settings_for(artifacts: Path, **overrides: object) -> Settings:
    values = {"artifacts_dir": artifacts, "max_batch_wait_ms": 20, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def real_client(tiny_artifacts: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tiny_artifacts))) as client:
        yield client


@pytest.fixture(scope="module")
def manifest(real_client: TestClient) -> dict:
    return real_client.get("/model").json()


def upload(name: str, data: bytes) -> dict:
    return {"file": (name, data, "image/jpeg")}


def photo(colour: str, shape: str, background: str) -> bytes:
    # As the training images were saved: the tiny model is not robust to stronger compression.
    return jpeg_bytes(shape_image(colour, shape, background), quality=95)


def expected(caption: str) -> str:
    return " ".join(normalize_caption(caption))


def test_ready_model_and_manifest(real_client, manifest, tiny_artifacts) -> None:
    assert manifest["model_id"]
    assert manifest["encoder"]["grid_size"] ** 2 == manifest["decoder"]["regions"]
    assert real_client.get("/ready").json() == {"status": "ready", "model": manifest["model_id"]}
    assert str(tiny_artifacts) not in real_client.get("/model").text  # no server paths


@pytest.mark.parametrize("index", [0, 7, 16])
def test_captions_a_training_image(real_client, manifest, index: int) -> None:
    name, image, caption = tiny_examples()[index]
    response = real_client.post("/caption", files=upload(name, jpeg_bytes(image, quality=95)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["caption"] == expected(caption)
    assert (body["width"], body["height"]) == image.size
    assert body["model"] == manifest["model_id"]
    assert body["timings_ms"]["encode"] > 0 and body["timings_ms"]["generate"] > 0


def test_n_best_with_attention_maps(real_client, manifest) -> None:
    image = photo("blue", "triangle", "black")
    response = real_client.post(
        "/caption",
        files=upload("t.jpg", image),
        data={"beam_size": "4", "num_captions": "3", "attention": "true"},
    )
    assert response.status_code == 200, response.text
    captions = response.json()["captions"]
    assert len(captions) == 3
    assert captions[0]["text"] == "a blue triangle on black"
    scores = [c["score"] for c in captions]
    assert scores == sorted(scores, reverse=True)
    grid = manifest["encoder"]["grid_size"]
    for caption in captions:
        maps = caption["attention"]
        assert [m["word"] for m in maps] == caption["text"].split()
        for item in maps:
            assert len(item["weights"]) == grid and {len(r) for r in item["weights"]} == {grid}
            assert sum(map(sum, item["weights"])) == pytest.approx(1.0, abs=1e-2)


def test_greedy_and_length_bound(real_client, manifest) -> None:
    image = photo("green", "square", "white")
    greedy = real_client.post("/caption", files=upload("g.jpg", image), data={"beam_size": "1"})
    assert greedy.json()["caption"] == "a green square on white"
    short = real_client.post("/caption", files=upload("g.jpg", image), data={"max_length": "2"})
    assert len(short.json()["caption"].split()) <= 2
    too_long = str(manifest["decoder"]["max_length"] + 1)
    response = real_client.post(
        "/caption", files=upload("g.jpg", image), data={"max_length": too_long}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_unusual_images_are_captioned(real_client) -> None:
    odd = {
        "cmyk.jpg": images.cmyk_jpeg(),
        "16bit.png": images.png_16bit(),
        "palette.png": images.palette_png(),
        "gray.png": images.grayscale_png(),
        "rgba.png": images.rgba_png(),
        "anim.gif": images.animated_gif(),
        "rotated.jpg": images.exif_rotated_jpeg(stored=(60, 30)),
    }
    files = [("files", (name, data, "application/octet-stream")) for name, data in odd.items()]
    results = real_client.post("/captions", files=files).json()["results"]
    assert all(r.get("caption") for r in results), results
    assert (results[-1]["width"], results[-1]["height"]) == (30, 60)


def test_hostile_uploads_then_still_serving(real_client) -> None:
    for data, status in [
        (images.png_bomb(), 413),
        (images.truncated(images.noisy_jpeg()), 422),
        (b"not an image", 415),
        (b"", 422),
    ]:
        assert real_client.post("/caption", files=upload("x.jpg", data)).status_code == status
    image = photo("red", "circle", "white")
    response = real_client.post("/caption", files=upload("ok.jpg", image))
    assert response.json()["caption"] == "a red circle on white"


def test_concurrent_requests_are_batched_and_routed_back(real_client) -> None:
    examples = tiny_examples()[:12]

    def post(example: tuple) -> str:
        name, image, _ = example
        response = real_client.post("/caption", files=upload(name, jpeg_bytes(image, quality=95)))
        return response.json()["caption"]

    before = _batch_counts(real_client)
    with ThreadPoolExecutor(max_workers=12) as pool:
        captions = list(pool.map(post, examples))
    assert captions == [expected(caption) for _, _, caption in examples]
    after = _batch_counts(real_client)
    batches = after["count"] - before["count"]
    assert after["sum"] - before["sum"] == 12
    assert batches < 12, "no two requests shared an encoder batch"


def _batch_counts(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        key: float(re.search(rf"^captioner_batch_size_{key} (\S+)$", text, re.MULTILINE).group(1))
        for key in ("count", "sum")
    }


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda folder: (folder / "manifest.json").write_text("{"), "manifest.json"),
        (lambda folder: (folder / "decoder.keras").unlink(), "decoder.keras"),
        (lambda folder: (folder / "tokenizer.p").write_bytes(b"tampered"), "tokenizer.p"),
    ],
    ids=["bad-manifest", "missing-decoder", "tampered-tokenizer"],
)
def test_damaged_artifacts_stop_startup(tiny_artifacts, tmp_path, caplog, damage, named) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, folder)
    damage(folder)
    application = create_app(settings_for(folder))
    failure = pytest.raises(ArtifactError, match=re.escape(named))
    with caplog.at_level(logging.ERROR), failure, TestClient(application):
        pass
    assert any(named in r.getMessage() and "cannot start" in r.getMessage() for r in caplog.records)
