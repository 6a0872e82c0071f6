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
class CaptionResult:
    """The n-best captions of one image, best first."""

    captions: tuple[Caption, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The image's concepts at or above the model's threshold, most likely first.
    tags: tuple[Tag, ...] = ()

    @property
    def best(self) -> Caption:
        return self.captions[0]
