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
