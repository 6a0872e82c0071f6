"""Plain result types: what the predictor returns to the CLI, evaluation and the service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from captioning.concepts import Tag
from captioning.search_settings import SearchSettings


@dataclass(frozen=True)
class Caption:
    """One hypothesis: its words, total log-probability and length-normalised score."""

    text: str
    tokens: tuple[str, ...]
    log_prob: float
    score: float
    # (len(tokens), grid_height, grid_width) attention weights, one map per generated word.
    attention: np.ndarray | None = None


@dataclass(frozen=True)
class Evidence:
    """Something grounding found in the photo, which the caption may then mention: what,
    how sure, how many, and where (photo pixels) when a detector says."""

    label: str  # "person", "dog", "cat", ...
    score: float  # 0..1
    count: int | None = None  # None: present, number unknown
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2


@dataclass(frozen=True)
class CaptionResult:
    """The n-best captions of one image, best first."""

    captions: tuple[Caption, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The image's concepts at or above the model's threshold, most likely first.
    tags: tuple[Tag, ...] = ()
    # What grounding found, which decided the words the captions may use (empty: not grounded).
    evidence: tuple[Evidence, ...] = ()

    @property
    def best(self) -> Caption:
        return self.captions[0]


@dataclass(frozen=True)
class EncodedImages:
    """What the encoder says of a batch of images, which decoding and grounding read."""

    grid: np.ndarray  # (batch, regions, channels) float32
    pooled: np.ndarray  # (batch, channels) float32
    concepts: np.ndarray | None = None  # (batch, concepts) probabilities; None without them
    classes: np.ndarray | None = None  # (batch, classes) ImageNet probabilities, when the head ran

    def __len__(self) -> int:
        return len(self.pooled)

    def __getitem__(self, index: slice | np.ndarray | list[int]) -> EncodedImages:
        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[index]

        return EncodedImages(
            self.grid[index], self.pooled[index], pick(self.concepts), pick(self.classes)
        )


@runtime_checkable
class Predictor(Protocol):
    """What the service (app/service.py, app/batching.py) uses of `CaptionPredictor`; the
    tests' fakes implement it too."""

    model_id: str
    input_size: int
    grid_size: int
    search: SearchSettings  # the model's search defaults, from its manifest

    @property
    def manifest(self) -> dict[str, Any]: ...

    def warmup(self) -> None: ...

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode(self, pixels: np.ndarray) -> EncodedImages: ...

    def generate(
        self, encoded: EncodedImages, settings: SearchSettings | None = None
    ) -> list[CaptionResult]: ...

    def caption_images(
        self, images: Sequence[Image.Image], settings: SearchSettings | None = None
    ) -> list[CaptionResult]: ...
