"""Read a Keras 3 `.keras` file's weights with zipfile and h5py alone, without importing Keras.

Serving needs only the decoder's weight arrays, and importing TensorFlow to get them costs a
few hundred megabytes of memory and seconds of start-up. A `.keras` file is a zip holding
`config.json` (the layers, in order, with their names) and `model.weights.h5`, where Keras
stores each layer's variables under `layers/<snake_case(class name)>[_<n>]/vars/<i>`,
numbering repeated class names in layer order (keras.src.saving.saving_lib). This module
rebuilds that path for every layer and returns the arrays by the layer's own name. The
`.keras` file stays the single source of truth; `tests/captioning/test_keras_file.py` checks
that the arrays read here are exactly those Keras loads.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np

CONFIG_ENTRY = "config.json"
WEIGHTS_ENTRY = "model.weights.h5"


class KerasFileError(ValueError):
    """The file is not a Keras 3 functional model this reader understands."""


def snake_case(class_name: str) -> str:
    """Keras' `naming.to_snake_case`, the rule behind the weight paths."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def read_layer_weights(path: Path | str) -> dict[str, list[np.ndarray]]:
    """{layer name: its weights in `layer.get_weights()` order} for a functional model."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read(CONFIG_ENTRY))
            weights = archive.read(WEIGHTS_ENTRY)
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise KerasFileError(f"{path} is not a readable .keras file: {exc}") from exc
    try:
        layers = config["config"]["layers"]
    except (KeyError, TypeError) as exc:
        raise KerasFileError(f"{path}: config.json describes no functional model") from exc
    used: dict[str, int] = {}
    arrays: dict[str, list[np.ndarray]] = {}
    with h5py.File(io.BytesIO(weights), "r") as store:
        for layer in layers:
            key = _unique(snake_case(layer["class_name"]), used)
            group = store.get(f"layers/{key}")
            if group is None:
                raise KerasFileError(f"{path}: no weights stored for layer {key!r}")
            arrays[layer["config"]["name"]] = _variables(group)
    return arrays


def _unique(name: str, used: dict[str, int]) -> str:
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _variables(group: h5py.Group) -> list[np.ndarray]:
    """The group's own variables, then those of nested objects (an LSTM keeps its in `cell`)."""
    own = group.get("vars")
    found = [np.asarray(own[str(i)]) for i in range(len(own))] if own is not None else []
    for name in group:
        if name != "vars" and isinstance(group[name], h5py.Group):
            found.extend(_variables(group[name]))
    return found
