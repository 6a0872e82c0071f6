"""The image encoder alone: TensorFlow graph mode against LiteRT, same network, same weights."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.images import photo_set
from benchmarks.stats import summarize, time_calls
from training.export import TFLITE_TOLERANCE

logger = logging.getLogger(__name__)

ENCODER_BATCHES = (1, 8)
# Runtimes "agree" (the same network) when the pooled features differ by at most this much,
# relative to the largest feature: what the LiteRT export itself accepts for float16 weights
# (a wrong weight or layout is off by ~100%).
AGREEMENT_RTOL = TFLITE_TOLERANCE["float16"]


@dataclass
class LoadedModel:
    """The artifacts loaded once and shared by the encoder and decoder benchmarks."""

    bundle: Any  # captioning.bundle.ArtifactBundle
    predictor: Any  # captioning.predictor.CaptionPredictor, runtime "auto" as in the service
    tflite: bytes | None = None  # the LiteRT flatbuffer measured (see `ensure_tflite`)
    tflite_source: str = "not loaded"


def load_model(artifacts: Path) -> LoadedModel:
    """Load the bundle with its Keras models; the predictor encodes as the service does (LiteRT),
    or with TensorFlow when the bundle has no encoder.tflite, which the service cannot serve."""
    from captioning.predictor import CaptionPredictor
    from training.modeling.bundle import load_keras_bundle
    from training.modeling.keras_runtime import KerasEncoder

    bundle = load_keras_bundle(artifacts)
    keras_encoder = KerasEncoder(bundle.encoder) if bundle.tflite_encoder is None else None
    model = LoadedModel(bundle, CaptionPredictor(bundle, encoder=keras_encoder))
    if bundle.tflite_encoder is not None:
        model.tflite, model.tflite_source = bundle.tflite_encoder, "encoder.tflite (artifacts)"
    return model


def ensure_tflite(model: LoadedModel) -> None:
    """Export a LiteRT encoder (in memory only) when the bundle has none, to compare runtimes."""
    if model.tflite is not None:
        return
    logger.warning(
        "the artifacts have no encoder.tflite, which the service needs; exporting one here "
        "(in memory only) to measure LiteRT on the same network"
    )
    try:
        from training.export import export_tflite

        model.tflite = export_tflite(model.bundle.encoder)
        model.tflite_source = "exported by the benchmark (not in the artifacts)"
    except Exception as exc:  # the conversion is optional for the benchmark
        logger.exception("LiteRT export failed; measuring TensorFlow only")
        model.tflite_source = f"unavailable: {exc}"


def model_pixels(model: LoadedModel, count: int) -> np.ndarray:
    """`count` generated photos, preprocessed exactly as the service preprocesses uploads."""
    return model.predictor.preprocess(photo_set(count))


def build_runtimes(model: LoadedModel) -> dict[str, Callable[[np.ndarray], Any]]:
    from captioning.runtime import LiteRTEncoder
    from training.modeling.keras_runtime import KerasEncoder

    runtimes: dict[str, Callable[[np.ndarray], Any]] = {
        "tensorflow": KerasEncoder(model.bundle.encoder)
    }
    if model.tflite is not None:
        runtimes["litert"] = LiteRTEncoder(model.tflite)
    return runtimes


def max_feature_difference(runtimes: dict[str, Callable], pixels: np.ndarray) -> float | None:
    """Largest difference of the pooled features between runtimes, relative to the largest
    feature of the first (same network?)."""
    if len(runtimes) < 2:
        return None
    pooled = [np.asarray(run(pixels[:1])[1]) for run in runtimes.values()]
    scale = max(float(np.abs(pooled[0]).max()), 1e-6)
    return float(max(np.abs(p - pooled[0]).max() for p in pooled[1:])) / scale


def bench_encoders(
    model: LoadedModel, pixels: np.ndarray, repeats: int, calls: dict[int, int]
) -> dict[str, Any]:
    """ms per image for every runtime and batch size; `calls[batch]` timed calls per repeat."""
    ensure_tflite(model)
    runtimes = build_runtimes(model)
    cases: dict[str, Callable[[], Any]] = {}
    for name, run in runtimes.items():
        for batch in ENCODER_BATCHES:
            batch_pixels = np.ascontiguousarray(pixels[:batch])
            cases[f"{name}/{batch}"] = lambda run=run, x=batch_pixels: run(x)
    logger.info("encoder: %s, %d repeats", ", ".join(cases), repeats)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):  # runtimes interleaved; batch sizes have their own call counts
        for name, run in cases.items():
            samples[name].extend(time_calls(run, calls[int(name.split("/")[1])]))
    difference = max_feature_difference(runtimes, pixels)
    agree = None if difference is None else bool(difference <= AGREEMENT_RTOL)  # NaN: False
    if agree is False:
        logger.error(
            "LiteRT and TensorFlow disagree (max relative |pooled difference| %s > %g): the LiteRT "
            "export is broken, its timings are not comparable and its captions are garbage",
            difference,
            AGREEMENT_RTOL,
        )
    results: dict[str, Any] = {
        "service_runtime": model.predictor.encoder.name,
        "tflite_source": model.tflite_source,
        "max_pooled_difference": difference,
        "runtimes_agree": agree,
        "agreement_rtol": AGREEMENT_RTOL,
        "input_size": int(model.predictor.input_size),
        "runtimes": {},
    }
    for key, values in samples.items():
        name, batch = key.split("/")
        per_image = summarize(values, scale=1.0 / int(batch))
        results["runtimes"].setdefault(name, {})[f"batch_{batch}"] = per_image
        logger.info("encoder %s batch %s: %.2f ms/image", name, batch, per_image["median"])
    return results
