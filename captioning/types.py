"""Plain result types: what the predictor returns to the CLI, evaluation and the service."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from captioning.concepts import Tag


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
