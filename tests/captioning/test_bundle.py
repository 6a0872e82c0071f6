"""The artifact contract: verified on load, written atomically."""

import json
import shutil

import pytest

from captioning.bundle import MANIFEST, ArtifactError, atomic_write, load_bundle
from captioning.predictor import CaptionPredictor

pytestmark = pytest.mark.slow


@pytest.fixture
def artifacts_copy(tiny_artifacts, tmp_path):
    target = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, target)
    return target


def test_a_modified_file_is_refused(artifacts_copy):
    with (artifacts_copy / "decoder.keras").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ArtifactError, match=r"decoder\.keras does not match the sha256"):
        CaptionPredictor.from_artifacts(artifacts_copy)


@pytest.mark.parametrize("name", ["encoder.keras", "tokenizer.p", MANIFEST])
def test_a_missing_file_is_named(artifacts_copy, name):
    (artifacts_copy / name).unlink()
    with pytest.raises(ArtifactError, match=name.replace(".", r"\.")):
        load_bundle(artifacts_copy)


def test_an_incompatible_manifest_is_refused(artifacts_copy):
    manifest = json.loads((artifacts_copy / MANIFEST).read_text())
    manifest["format"] = "someone-elses/9"
    (artifacts_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unsupported format"):
        load_bundle(artifacts_copy)
    (artifacts_copy / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_bundle(artifacts_copy)


def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        CaptionPredictor.from_artifacts(tmp_path / "nowhere")


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old model")

    def crash_halfway(path):
        path.write_bytes(b"half a mod")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash_halfway)
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def grounding_heads(pooled_size: int, classes: int | None = None):
    import numpy as np

    from captioning.grounding import ClassGroups, EvidenceHeads, Head, Normaliser

    normalisers = {"pooled": Normaliser(np.zeros(pooled_size), np.ones(pooled_size))}
    inputs: tuple[str, ...] = ("pooled",)
    groups = None
    if classes is not None:
        groups = ClassGroups(classes, 0.7, {"dog": (0, 1)})
        normalisers["class_groups"] = Normaliser(np.zeros(1), np.ones(1))
        inputs = ("pooled", "class_groups")
    weights = np.zeros(pooled_size + (classes is not None))
    return EvidenceHeads((Head("person", 1, inputs, weights, 0.0, 0.5),), normalisers, groups)


def test_grounding_is_optional_and_hashed(artifacts_copy):
    from captioning.bundle import GROUNDING, add_files

    assert load_bundle(artifacts_copy).grounding is None
    manifest = json.loads((artifacts_copy / MANIFEST).read_text())
    feature_dim = manifest["encoder"]["feature_dim"]
    add_files(artifacts_copy, {GROUNDING: grounding_heads(feature_dim).to_json()})
    bundle = load_bundle(artifacts_copy)
    assert bundle.grounding is not None and bundle.grounding.columns == ("person",)
    # Saved with the bundle, and dropped from it when the bundle has none.
    saved = artifacts_copy.parent / "saved"
    shutil.copytree(artifacts_copy, saved)
    bundle.encoder = bundle.decoder = _Writes()
    assert GROUNDING in bundle.save(saved)["files"]
    bundle.grounding = None
    assert GROUNDING not in bundle.save(saved)["files"]
    assert not (saved / GROUNDING).exists()

    with (artifacts_copy / GROUNDING).open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(ArtifactError, match=r"grounding\.json does not match the sha256"):
        load_bundle(artifacts_copy)


class _Writes:
    """Stands in for a Keras model: `save` writes a file."""

    def save(self, path):
        with open(path, "wb") as handle:
            handle.write(b"model")


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        (lambda dim: grounding_heads(dim + 1), "pooled features"),
        (lambda dim: grounding_heads(dim, classes=1000), "class probabilities"),
    ],
)
def test_grounding_for_another_encoder_is_refused(artifacts_copy, heads, message):
    from captioning.bundle import GROUNDING, add_files

    feature_dim = json.loads((artifacts_copy / MANIFEST).read_text())["encoder"]["feature_dim"]
    add_files(artifacts_copy, {GROUNDING: heads(feature_dim).to_json()})
    with pytest.raises(ArtifactError, match=message):
        load_bundle(artifacts_copy)


def test_a_corrupt_grounding_file_is_named(artifacts_copy):
    from captioning.bundle import GROUNDING, add_files

    add_files(artifacts_copy, {GROUNDING: b'{"format": "captioner-grounding/1"}'})
    with pytest.raises(ArtifactError, match=r"grounding\.json: .*required field"):
        load_bundle(artifacts_copy)
