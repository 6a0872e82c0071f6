"""The artifacts bundle: the contract between training and serving.

    artifacts/
      manifest.json     what the model is, how to feed it, its metrics, and every file's hash
      encoder.keras     the image encoder, ImageNet weights included (raw pixels in)
      encoder.tflite    optional: the same encoder exported for LiteRT (faster on a CPU)
      decoder.keras     the caption decoder
      decoder_step.tflite  optional: one decoding step for LiteRT, int8 weights (faster)
      tokenizer.p       the vocabulary, plain data only
      concepts.json     optional: the encoder's ImageNet classes as caption words (tags)
      grounding.json    optional: evidence heads, is there a person, a dog, a cat (grounding)

Files are written to a temporary name and renamed, and the manifest (which holds the hashes)
is written last, so a crash while saving leaves a bundle the loader refuses instead of a
half-written model it would serve.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from captioning.concepts import ConceptTable
from captioning.grounding import EvidenceHeads
from captioning.keras_file import KerasFileError, read_layer_weights
from captioning.text import Vocabulary

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ENCODER_KERAS = "encoder.keras"
ENCODER_TFLITE = "encoder.tflite"
DECODER_KERAS = "decoder.keras"
DECODER_STEP_TFLITE = "decoder_step.tflite"
TOKENIZER = "tokenizer.p"
CONCEPTS = "concepts.json"
GROUNDING = "grounding.json"
BUNDLE_FORMAT = "captioner-artifacts/1"
REQUIRED_FILES = (ENCODER_KERAS, DECODER_KERAS, TOKENIZER)


class ArtifactError(RuntimeError):
    """A missing, corrupt or incompatible artifacts folder; the message names file and problem."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary_path)` and rename the result over `path` only if it succeeded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)  # keras insists on the .keras extension
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=suffix, dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        temporary_path.unlink()  # some writers refuse to overwrite
        write(temporary_path)
        with temporary_path.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))


class SavableModel(Protocol):
    """What the bundle asks of training's Keras models: to write themselves to a file."""

    def save(self, filepath: str | Path) -> None: ...


@dataclass
class ArtifactBundle:
    # The Keras models: training's, to save or re-export (`training.modeling.bundle`); None
    # when loaded for serving.
    encoder: SavableModel | None
    decoder: SavableModel | None
    vocabulary: Vocabulary
    manifest: dict
    tflite_encoder: bytes | None = None
    tflite_decoder_step: bytes | None = None
    # {layer name: weights} read from decoder.keras without Keras; None when `decoder` is set.
    decoder_layers: dict[str, list[np.ndarray]] | None = None
    concepts: ConceptTable | None = None
    grounding: EvidenceHeads | None = None

    def save(self, directory: Path) -> dict:
        """Write every file atomically, then the manifest with their hashes; returns it."""
        directory = Path(directory)
        atomic_write(directory / ENCODER_KERAS, lambda p: self.encoder.save(p))
        atomic_write(directory / DECODER_KERAS, lambda p: self.decoder.save(p))
        atomic_write(directory / TOKENIZER, self.vocabulary.save)
        files = [ENCODER_KERAS, DECODER_KERAS, TOKENIZER]
        for name, content in (
            (ENCODER_TFLITE, self.tflite_encoder),
            (DECODER_STEP_TFLITE, self.tflite_decoder_step),
            (CONCEPTS, self.concepts.to_json() if self.concepts is not None else None),
            (GROUNDING, self.grounding.to_json() if self.grounding is not None else None),
        ):
            if content is not None:
                atomic_write(directory / name, lambda p, content=content: p.write_bytes(content))
                files.append(name)
            else:
                (directory / name).unlink(missing_ok=True)
        manifest = dict(self.manifest)
        manifest["format"] = BUNDLE_FORMAT
        manifest["files"] = {name: _file_record(directory / name) for name in files}
        write_json(directory / MANIFEST, manifest)
        self.manifest = manifest
        logger.info("wrote artifacts to %s (%s)", directory, ", ".join(files))
        return manifest


def add_files(
    directory: Path,
    files: dict[str, bytes | Callable[[Path], None]],
    manifest_updates: dict | None = None,
) -> dict:
    """Write (or replace) files in a saved bundle - bytes, or a function writing the file at
    the path it is given - and record their hashes in its manifest, with `manifest_updates`
    merged into it, leaving every other file byte for byte as it was; returns the manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    manifest.update(manifest_updates or {})
    for name, content in files.items():
        write = content if callable(content) else lambda p, c=content: p.write_bytes(c)
        atomic_write(directory / name, write)
        manifest["files"][name] = _file_record(directory / name)
    write_json(directory / MANIFEST, manifest)
    logger.info("added %s to %s", ", ".join(files), directory)
    return manifest


def _file_record(path: Path) -> dict:
    """A file's entry in the manifest, which `verify_files` checks on every load."""
    return {"sha256": sha256_of(path), "bytes": path.stat().st_size}


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise ArtifactError(f"artifacts folder {directory} does not exist")
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: not a Captioner artifacts folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ArtifactError(f"{path}: unsupported format, expected {BUNDLE_FORMAT!r}")
    return manifest


def verify_files(directory: Path, manifest: dict) -> None:
    """Every required file is present and matches the hash recorded in the manifest."""
    recorded = manifest.get("files", {})
    for name in (*REQUIRED_FILES, *(n for n in recorded if n not in REQUIRED_FILES)):
        path = Path(directory) / name
        if name not in recorded:
            raise ArtifactError(f"{MANIFEST} has no hash for {name}")
        if not path.is_file():
            raise ArtifactError(f"{path} is missing")
        if sha256_of(path) != recorded[name].get("sha256"):
            raise ArtifactError(
                f"{path} does not match the sha256 in {MANIFEST}: the file is corrupt, "
                "half-written or from another model"
            )


def load_bundle(directory: Path | str) -> ArtifactBundle:
    """Read and verify a bundle for serving; every failure is an ArtifactError naming the file.

    Every hash is checked, the LiteRT exports are read as bytes and the decoder's weight arrays
    straight from `decoder.keras`: Keras and TensorFlow are never imported.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    try:
        vocabulary = Vocabulary.load(directory / TOKENIZER)
    except Exception as exc:
        raise ArtifactError(f"{directory / TOKENIZER} cannot be loaded: {exc}") from exc
    expected_vocab = manifest.get("vocabulary", {}).get("size")
    if expected_vocab != len(vocabulary):
        raise ArtifactError(
            f"{directory / TOKENIZER} has {len(vocabulary)} words "
            f"but {MANIFEST} says {expected_vocab}"
        )
    try:
        layers = read_layer_weights(directory / DECODER_KERAS)
    except KerasFileError as exc:
        raise ArtifactError(str(exc)) from exc
    return ArtifactBundle(
        encoder=None,
        decoder=None,
        vocabulary=vocabulary,
        manifest=manifest,
        tflite_encoder=_optional_file(directory, manifest, ENCODER_TFLITE),
        tflite_decoder_step=_optional_file(directory, manifest, DECODER_STEP_TFLITE),
        decoder_layers=layers,
        concepts=_load_concepts(directory, manifest),
        grounding=_load_grounding(directory, manifest),
    )


def _load_concepts(directory: Path, manifest: dict) -> ConceptTable | None:
    if CONCEPTS not in manifest.get("files", {}):
        return None
    try:
        return ConceptTable.load(directory / CONCEPTS)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{directory / CONCEPTS}: {exc}") from exc


def _load_grounding(directory: Path, manifest: dict) -> EvidenceHeads | None:
    if GROUNDING not in manifest.get("files", {}):
        return None
    try:
        heads = EvidenceHeads.load(directory / GROUNDING)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{directory / GROUNDING}: {exc}") from exc
    encoder = manifest.get("encoder", {})
    feature_dim = encoder.get("feature_dim")
    if (
        heads.pooled_size is not None
        and feature_dim is not None
        and heads.pooled_size != feature_dim
    ):
        raise ArtifactError(
            f"{directory / GROUNDING} reads {heads.pooled_size} pooled features, "
            f"the encoder gives {feature_dim}"
        )
    if heads.class_groups is not None and heads.class_groups.classes != encoder.get("classes"):
        raise ArtifactError(
            f"{directory / GROUNDING} reads {heads.class_groups.classes} class probabilities, "
            f"the encoder has {encoder.get('classes') or 'no classifier'}"
        )
    return heads


def _optional_file(directory: Path, manifest: dict, name: str) -> bytes | None:
    return (directory / name).read_bytes() if name in manifest.get("files", {}) else None
