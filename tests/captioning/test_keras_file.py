"""Serving reads the decoder's weights from decoder.keras without Keras: the same arrays, and
a serving process that never imports TensorFlow."""

import dataclasses
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from captioning.bundle import DECODER_KERAS, ArtifactError, load_bundle
from captioning.decoder_layers import WEIGHTED_LAYERS
from captioning.decoder_step import DecoderWeights
from captioning.keras_file import KerasFileError, read_layer_weights, snake_case
from training.modeling.bundle import load_keras_bundle

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [("LSTM", "lstm"), ("Dense", "dense"), ("RegionAttention", "region_attention"),
     ("InputLayer", "input_layer"), ("FlattenCaptions", "flatten_captions")],
)  # fmt: skip
def test_snake_case_follows_keras(class_name, expected):
    from keras.src.utils.naming import to_snake_case

    assert snake_case(class_name) == expected == to_snake_case(class_name)


def test_weights_read_without_keras_equal_the_loaded_model(tiny_artifacts):
    model = load_keras_bundle(tiny_artifacts).decoder
    read = read_layer_weights(tiny_artifacts / DECODER_KERAS)
    for layer in model.layers:
        expected = layer.get_weights()
        assert len(read[layer.name]) == len(expected), layer.name
        for ours, theirs in zip(read[layer.name], expected, strict=True):
            np.testing.assert_array_equal(ours, theirs)
    assert set(WEIGHTED_LAYERS) <= set(read)


def test_decoder_weights_are_identical_either_way(tiny_artifacts):
    from_model = DecoderWeights.from_model(load_keras_bundle(tiny_artifacts).decoder)
    bundle = load_bundle(tiny_artifacts)
    assert bundle.decoder is None
    from_file = DecoderWeights.from_layers(bundle.decoder_layers)
    for ours, theirs in zip(_arrays(from_file), _arrays(from_model), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def _arrays(weights: DecoderWeights) -> list[np.ndarray]:
    found = []
    for field in dataclasses.fields(weights):
        value = getattr(weights, field.name)
        found.extend(value if isinstance(value, tuple) else [value])
    return found


def test_a_file_that_is_not_a_keras_model_is_refused(tmp_path):
    not_zip = tmp_path / "a.keras"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(KerasFileError, match="not a readable"):
        read_layer_weights(not_zip)
    sequential = tmp_path / "b.keras"
    with zipfile.ZipFile(sequential, "w") as archive:
        archive.writestr("config.json", json.dumps({"config": {}}))
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(KerasFileError, match="no functional model"):
        read_layer_weights(sequential)


def test_missing_layer_weights_are_an_artifact_error(tiny_artifacts, tmp_path):
    broken = tmp_path / DECODER_KERAS
    with zipfile.ZipFile(tiny_artifacts / DECODER_KERAS) as source:
        config = json.loads(source.read("config.json"))
        weights = source.read("model.weights.h5")
    config["config"]["layers"].append({"class_name": "Dense", "config": {"name": "extra"}})
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights)
    with pytest.raises(KerasFileError, match="no weights stored for layer 'dense_"):
        read_layer_weights(broken)
    # Through the bundle, the same problem is the loader's ArtifactError.
    copy = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, copy)
    (copy / DECODER_KERAS).write_bytes(b"garbage")
    with pytest.raises(ArtifactError):
        load_bundle(copy)


SERVING_IMPORTS = """
import sys
from captioning.predictor import CaptionPredictor
import app.main
predictor = CaptionPredictor.from_artifacts(sys.argv[1])
predictor.warmup()
print(predictor.encoder.name, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_serving_with_litert_never_imports_tensorflow(tiny_artifacts):
    """TensorFlow is ~400 MB of resident memory the LiteRT service has no use for."""
    result = subprocess.run(
        [sys.executable, "-c", SERVING_IMPORTS, str(tiny_artifacts)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert result.stdout.split() == ["litert", "False", "False"], result.stderr[-2000:]
