"""Grounding evidence: is there a person, a dog, a cat in the photo, and two or more of them?

`grounding.json` (built by `python -m training add-grounding`, shipped in `artifacts/`) holds
small logistic-regression heads on what the encoder computes anyway: the pooled features and,
when the encoder has its ImageNet head, the summed probabilities of class groups (the 118 dog
breeds, the 5 domestic cats) at a calibrated softmax temperature. Each head is a weight vector,
a bias and a threshold: running them costs one small matrix product per batch. NumPy only.

A head says `label` is in the photo (`count` 1) or that two or more are (`count` 2); the
latter only counts when the label's presence head fires too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from captioning.claims import Claim
from captioning.decoder_step import sigmoid
from captioning.plain_file import PlainJsonFile
from captioning.types import Evidence

GROUNDING_FORMAT = "captioner-grounding/1"
POOLED, CLASS_GROUPS = "pooled", "class_groups"
INPUTS = (POOLED, CLASS_GROUPS)
# log(probability) is floored here, so that a group the classifier rules out entirely does
# not give the heads an unbounded input.
LOG_FLOOR = float(np.log(1e-6))


@dataclass(frozen=True)
class Normaliser:
    """x -> (x - mean) / scale, per feature, as the heads were trained."""

    mean: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        # float32, as the heads compute and grounding.json stores them.
        object.__setattr__(self, "mean", np.asarray(self.mean, np.float32))
        object.__setattr__(self, "scale", np.asarray(self.scale, np.float32))
        if self.mean.shape != self.scale.shape or self.mean.ndim != 1:
            raise ValueError("grounding.json: an input's mean and scale differ in shape")
        if not np.all(self.scale > 0):
            raise ValueError("grounding.json: an input's scale must be positive")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale

    def to_plain(self) -> dict:
        return {"mean": _floats(self.mean), "scale": _floats(self.scale)}

    @classmethod
    def from_plain(cls, data: dict) -> Normaliser:
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["scale"], np.float32))


@dataclass(frozen=True)
class ClassGroups:
    """Summed class probabilities of named groups of the classifier's classes, as
    log-probabilities after the softmax `temperature` (below 1 sharpens: a cat spread over
    tabby, tiger cat and Egyptian cat gathers into one confident group)."""

    classes: int  # the classifier's output size
    temperature: float
    groups: dict[str, tuple[int, ...]]  # group name -> class indices
    membership: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError("grounding.json: the temperature must be positive")
        membership = np.zeros((self.classes, len(self.groups)), np.float32)
        for column, members in enumerate(self.groups.values()):
            if not members or any(not 0 <= i < self.classes for i in members):
                raise ValueError("grounding.json: a class group names no class or a bad index")
            membership[list(members), column] = 1.0
        object.__setattr__(self, "membership", membership)

    def __call__(self, class_probabilities: np.ndarray) -> np.ndarray:
        """(batch, classes) softmax outputs -> (batch, groups) log group probabilities."""
        p = np.asarray(class_probabilities, np.float64)
        if p.ndim != 2 or p.shape[1] != self.classes:
            raise ValueError(f"expected class probabilities of shape (batch, {self.classes})")
        # softmax(logits / T) from the probabilities: log p is the logits up to a constant.
        scaled = np.log(np.maximum(p, 1e-30)) / self.temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        sharpened = np.exp(scaled)
        sharpened /= sharpened.sum(axis=1, keepdims=True)
        summed = sharpened @ self.membership
        return np.maximum(np.log(np.maximum(summed, 1e-30)), LOG_FLOOR).astype(np.float32)

    def to_plain(self) -> dict:
        return {
            "classes": self.classes,
            "temperature": self.temperature,
            "groups": {name: list(members) for name, members in self.groups.items()},
        }

    @classmethod
    def from_plain(cls, data: dict) -> ClassGroups:
        return cls(
            classes=int(data["classes"]),
            temperature=float(data["temperature"]),
            groups={str(k): tuple(int(i) for i in v) for k, v in data["groups"].items()},
        )


@dataclass(frozen=True)
class Head:
    """One logistic regression: P(label, at least `count`) = sigmoid(w . x + bias), where x is
    its inputs normalised and concatenated in order; it fires at `threshold` or above."""

    label: str
    count: int  # 1: the label is there; 2: two or more are
    inputs: tuple[str, ...]
    weights: np.ndarray
    bias: float
    threshold: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", np.asarray(self.weights, np.float32))
        object.__setattr__(self, "bias", float(self.bias))
        if self.count not in (1, 2):
            raise ValueError(f"grounding.json: {self.label}'s count must be 1 or 2")
        if not self.inputs or any(name not in INPUTS for name in self.inputs):
            raise ValueError(f"grounding.json: {self.label}'s inputs must be among {INPUTS}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"grounding.json: {self.label}'s threshold is not a probability")

    @property
    def name(self) -> str:
        return self.label if self.count == 1 else f"{self.label}>=2"

    def to_plain(self) -> dict:
        return {
            "label": self.label,
            "count": self.count,
            "inputs": list(self.inputs),
            "threshold": self.threshold,
            "bias": self.bias,
            "weights": _floats(self.weights),
        }

    @classmethod
    def from_plain(cls, data: dict) -> Head:
        return cls(
            label=str(data["label"]),
            count=int(data["count"]),
            inputs=tuple(str(i) for i in data["inputs"]),
            weights=np.asarray(data["weights"], np.float32),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
        )


class Grounding(NamedTuple):
    evidence: list[tuple[Evidence, ...]]  # per image: what is there, most likely first
    probabilities: np.ndarray  # (batch, heads) every head's probability, in `columns` order


@dataclass(frozen=True)
class EvidenceHeads(PlainJsonFile):
    """The heads of `grounding.json`, frozen; `assess` turns encoder outputs into evidence.
    `claims` (`captioning.claims`) say which words need which evidence."""

    FILE = "grounding.json"

    heads: tuple[Head, ...]
    normalisers: dict[str, Normaliser]  # input name -> its normalisation
    class_groups: ClassGroups | None = None
    info: dict = field(default_factory=dict, compare=False)  # how they were made (free form)
    claims: tuple[Claim, ...] = ()
    matrix: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.heads:
            raise ValueError("grounding.json has no heads")
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ValueError("grounding.json: two heads have the same label and count")
        used = {name for head in self.heads for name in head.inputs}
        if not used <= set(self.normalisers):
            raise ValueError("grounding.json: a head's input has no normalisation")
        if CLASS_GROUPS in used and self.class_groups is None:
            raise ValueError("grounding.json: class_groups is used but not defined")
        if (
            self.class_groups is not None
            and CLASS_GROUPS in self.normalisers
            and self.normalisers[CLASS_GROUPS].mean.shape != (len(self.class_groups.groups),)
        ):
            raise ValueError("grounding.json: class_groups' normalisation has the wrong size")
        counted = {h.label for h in self.heads if h.count == 2}
        if not counted <= {h.label for h in self.heads if h.count == 1}:
            raise ValueError("grounding.json: a 'two or more' head without its presence head")
        # Every head's weights laid out over all inputs (zeros where it does not look), so
        # that one matrix product scores them all.
        offsets, width = {}, 0
        for name in INPUTS:
            if name in self.normalisers:
                offsets[name] = width
                width += len(self.normalisers[name].mean)
        matrix = np.zeros((width, len(self.heads)), np.float32)
        for column, head in enumerate(self.heads):
            sizes = [len(self.normalisers[name].mean) for name in head.inputs]
            if len(head.weights) != sum(sizes):
                raise ValueError(f"grounding.json: {head.name} has the wrong number of weights")
            start = 0
            for name, size in zip(head.inputs, sizes, strict=True):
                matrix[offsets[name] : offsets[name] + size, column] = head.weights[
                    start : start + size
                ]
                start += size
        object.__setattr__(self, "matrix", matrix)

    @property
    def columns(self) -> tuple[str, ...]:
        """The heads' names ("person", "person>=2", "dog", ...), `probabilities`' columns."""
        return tuple(h.name for h in self.heads)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.label for h in self.heads))

    @property
    def needs_class_probabilities(self) -> bool:
        return any(CLASS_GROUPS in h.inputs for h in self.heads)

    @property
    def pooled_size(self) -> int | None:
        normaliser = self.normalisers.get(POOLED)
        return None if normaliser is None else len(normaliser.mean)

    def probabilities(
        self, pooled: np.ndarray, class_probabilities: np.ndarray | None = None
    ) -> np.ndarray:
        """(batch, C) pooled features and (batch, classes) class probabilities (None: the
        encoder has no classifier) -> (batch, heads) probabilities, in `columns` order."""
        pooled = np.asarray(pooled, np.float32)
        if pooled.ndim != 2:
            raise ValueError("expected pooled features of shape (batch, channels)")
        parts = []
        if POOLED in self.normalisers:
            if pooled.shape[1] != self.pooled_size:
                raise ValueError(
                    f"grounding.json expects {self.pooled_size} pooled features, "
                    f"got {pooled.shape[1]}"
                )
            parts.append(self.normalisers[POOLED](pooled))
        if CLASS_GROUPS in self.normalisers:
            assert self.class_groups is not None
            if class_probabilities is None:
                if self.needs_class_probabilities:
                    raise ValueError("these grounding heads need the encoder's class probabilities")
                groups = np.zeros((len(pooled), len(self.class_groups.groups)), np.float32)
            else:
                groups = self.normalisers[CLASS_GROUPS](self.class_groups(class_probabilities))
            parts.append(groups)
        z = np.hstack(parts) @ self.matrix + np.array([h.bias for h in self.heads], np.float32)
        return sigmoid(z).astype(np.float32)

    def assess(
        self, pooled: np.ndarray, class_probabilities: np.ndarray | None = None
    ) -> Grounding:
        """Each image's evidence: a label whose presence head fires, with its probability as
        the score and count 2 when its 'two or more' head fires too, 1 when that head exists
        and does not, None when there is none; plus every head's probability."""
        probabilities = self.probabilities(pooled, class_probabilities)
        thresholds = np.array([h.threshold for h in self.heads], np.float32)
        fired = probabilities >= thresholds
        presence = {h.label: i for i, h in enumerate(self.heads) if h.count == 1}
        several = {h.label: i for i, h in enumerate(self.heads) if h.count == 2}
        evidence = []
        for row, row_fired in zip(probabilities, fired, strict=True):
            found = []
            for label, column in presence.items():
                if not row_fired[column]:
                    continue
                count = None
                if label in several:
                    count = 2 if row_fired[several[label]] else 1
                found.append(Evidence(label, round(float(row[column]), 4), count))
            evidence.append(tuple(sorted(found, key=lambda e: -e.score)))
        return Grounding(evidence, probabilities)

    def to_plain(self) -> dict:
        inputs: dict[str, dict] = {}
        for name in INPUTS:
            if name not in self.normalisers:
                continue
            entry = {"size": len(self.normalisers[name].mean)}
            if name == CLASS_GROUPS and self.class_groups is not None:
                entry.update(self.class_groups.to_plain())
            entry.update(self.normalisers[name].to_plain())
            inputs[name] = entry
        return {
            "format": GROUNDING_FORMAT,
            "info": self.info,
            "inputs": inputs,
            "heads": [h.to_plain() for h in self.heads],
            "claims": [claim.to_plain() for claim in self.claims],
        }

    @classmethod
    def from_plain(cls, data: object) -> EvidenceHeads:
        if not isinstance(data, dict) or data.get("format") != GROUNDING_FORMAT:
            raise ValueError(f"grounding.json is not in the {GROUNDING_FORMAT} format")
        try:
            inputs = data["inputs"]
            unknown = set(inputs) - set(INPUTS)
            if unknown:
                raise ValueError(f"grounding.json: unknown inputs {sorted(unknown)}")
            normalisers = {name: Normaliser.from_plain(entry) for name, entry in inputs.items()}
            for name, entry in inputs.items():
                if int(entry["size"]) != len(normalisers[name].mean):
                    raise ValueError(f"grounding.json: {name}'s size and normalisation differ")
            groups = (
                ClassGroups.from_plain(inputs[CLASS_GROUPS]) if CLASS_GROUPS in inputs else None
            )
            return cls(
                heads=tuple(Head.from_plain(h) for h in data["heads"]),
                normalisers=normalisers,
                class_groups=groups,
                claims=tuple(Claim.from_plain(c) for c in data.get("claims") or ()),
                info=dict(data.get("info") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"grounding.json lacks a required field: {exc}") from exc


def _floats(values: Sequence[float] | np.ndarray) -> list[float]:
    # float32 precision is what the heads compute with; 8 significant digits round-trip it.
    return [float(f"{v:.8g}") for v in np.asarray(values, np.float32).tolist()]
