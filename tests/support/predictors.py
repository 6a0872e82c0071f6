"""A test double for the captioning predictor, with the real one's interface
(`captioning.types.Predictor`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from captioning.bundle import ArtifactError
from captioning.concepts import Tag
from captioning.images import to_model_batch
from captioning.search_settings import SearchSettings
from captioning.types import Caption, CaptionResult, EncodedImages, Predictor

__all__ = ["FakePredictor", "Predictor"]


PLACES = ("table", "wall", "floor", "beach", "street", "field", "road", "lawn", "desk", "shelf")


def colour_name(rgb: np.ndarray) -> str:
    """'red', 'green', 'blue', or 'white'/'gray'/'black' for unsaturated colours (rgb in 0..1)."""
    if float(rgb.max() - rgb.min()) < 0.1:
        mean = float(rgb.mean())
        return "white" if mean > 0.8 else "black" if mean < 0.2 else "gray"
    return ("red", "green", "blue")[int(np.argmax(rgb))]


class FakePredictor:
    """A `Predictor` that computes with arithmetic instead of a network.

    Deterministic and fast: its captions name the image's dominant colour, so a test can tell
    that every response went back to the request it belongs to. It can also be slowed down, held
    at a gate, or made to fail, to test batching, back-pressure and error handling.
    """

    def __init__(
        self,
        *,
        model_id: str = "fake-captioner-1",
        input_size: int = 32,
        grid_size: int = 4,
        max_length: int = 12,
        encode_delay_s: float = 0.0,
        gate: threading.Event | None = None,
        fail_encode: bool = False,
        fail_generate: Callable[[SearchSettings], bool] | None = None,
        nan_features: bool = False,
    ) -> None:
        self.model_id = model_id
        self.input_size = input_size
        self.grid_size = grid_size
        self.search = SearchSettings(
            max_length=max_length, length_limit=max_length, length_penalty=0.5
        )
        self.broken_manifest = False  # make the `manifest` property raise (an unexpected bug)
        self._manifest = {
            "model_id": model_id,
            "format": "fake",
            "input_size": input_size,
            "grid_size": grid_size,
            "max_length": max_length,
        }
        self.encode_delay_s = encode_delay_s
        self.gate = gate
        self.fail_encode = fail_encode
        self.fail_generate = fail_generate
        self.nan_features = nan_features  # like an encoder export that computes garbage
        self.no_captions = False  # generate() answers an empty n-best list
        self.encode_started = threading.Event()
        self.encode_batches: list[int] = []
        self.generate_calls: list[tuple[int, SearchSettings]] = []
        self.warmed_up = False
        self.threads: set[str] = set()

    @property
    def manifest(self) -> dict:
        if self.broken_manifest:
            raise RuntimeError("cannot read /srv/secret/manifest.json")
        return self._manifest

    @classmethod
    def from_artifacts(cls, path: Path) -> FakePredictor:
        return cls()

    def warmup(self) -> None:
        """As the real one: run the model once and refuse to serve one that computes NaN."""
        self.threads.add(threading.current_thread().name)
        pixels = np.full((1, self.input_size, self.input_size, 3), 128.0, np.float32)
        if not np.isfinite(self._encode(pixels).grid).all():
            raise ArtifactError("model self-test failed: the encoder computes NaN features")
        self.warmed_up = True

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return to_model_batch(images, self.input_size)

    # The fault hooks and the call records below only apply once the predictor has been
    # warmed up, i.e. while serving.
    def encode(self, pixels: np.ndarray) -> EncodedImages:
        size = self.input_size
        assert pixels.shape[1:] == (size, size, 3) and pixels.dtype == np.float32
        self.threads.add(threading.current_thread().name)
        if self.warmed_up:
            return self._faulty_encode(pixels)
        return self._encode(pixels)

    def _faulty_encode(self, pixels: np.ndarray) -> EncodedImages:
        self.encode_batches.append(len(pixels))
        self.encode_started.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=30), "test gate never opened"
        if self.encode_delay_s:
            time.sleep(self.encode_delay_s)
        if self.fail_encode:
            raise RuntimeError("encoder exploded reading /srv/secret/encoder.tflite")
        return self._encode(pixels)

    def _encode(self, pixels: np.ndarray) -> EncodedImages:
        size, grid = self.input_size, self.grid_size
        cells = pixels.reshape(len(pixels), grid, size // grid, grid, size // grid, 3)
        regions = cells.mean(axis=(2, 4)).reshape(len(pixels), grid * grid, 3) / 255.0
        if self.nan_features:
            regions = np.full_like(regions, np.nan)
        return EncodedImages(grid=regions.astype(np.float32), pooled=regions.mean(axis=1))

    def generate(
        self, encoded: EncodedImages, settings: SearchSettings | None = None
    ) -> list[CaptionResult]:
        """Captions naming each image's colour; its tag is the colour, as confident as the
        colour is pure."""
        settings = settings or self.search
        if self.warmed_up:
            self.generate_calls.append((len(encoded), settings))
            if self.fail_generate is not None and self.fail_generate(settings):
                raise RuntimeError("decoder exploded reading /srv/secret/decoder.keras")
            if self.no_captions:
                return [CaptionResult(captions=()) for _ in range(len(encoded))]
        results = []
        for regions, pooled in zip(encoded.grid, encoded.pooled, strict=True):
            captions = tuple(
                self._caption(regions, pooled, rank, settings)
                for rank in range(settings.num_captions)
            )
            tag = Tag(colour_name(pooled), round(float(pooled.max() - pooled.min()), 4))
            results.append(CaptionResult(captions=captions, tags=(tag,)))
        return results

    def _caption(
        self, regions: np.ndarray, pooled: np.ndarray, rank: int, settings: SearchSettings
    ) -> Caption:
        tokens = ("a", colour_name(pooled), "square", "on", "a", PLACES[rank])
        tokens = tokens[: settings.max_length]
        log_prob = -0.5 * len(tokens) - 0.7 * rank
        attention = None
        if settings.return_attention:
            brightness = regions.mean(axis=1)
            logits = np.stack([brightness * (t + 1) for t in range(len(tokens))])
            weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            attention = weights.reshape(len(tokens), self.grid_size, self.grid_size)
        return Caption(
            text=" ".join(tokens),
            tokens=tokens,
            log_prob=log_prob,
            score=log_prob / len(tokens) ** settings.length_penalty,
            attention=attention,
        )

    def caption_images(
        self, images: Sequence[Image.Image], settings: SearchSettings | None = None
    ) -> list[CaptionResult]:
        return self.generate(self.encode(self.preprocess(images)), settings)
