"""The caption decoder alone (NumPy greedy and beam search) on real encoder features."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np

from benchmarks.encoder import LoadedModel
from benchmarks.stats import summarize, time_calls

logger = logging.getLogger(__name__)

DECODER_MODES = {"greedy": 1, "beam_3": 3, "beam_5": 5}
DECODER_BATCHES = (1, 16)
BLAS_THREADS = 1


def caption_lengths(model: LoadedModel, encoded: Any, beam_size: int) -> list[int]:
    """Words in the best caption of every image."""
    settings = model.predictor.search.with_options(beam_size=beam_size)
    return [len(result.best.tokens) for result in model.predictor.generate(encoded, settings)]


def bench_decoder(
    model: LoadedModel, pixels: np.ndarray, repeats: int, calls: dict[int, int]
) -> dict[str, Any]:
    """ms per caption for every mode and batch size; features of len(pixels) >= 16 images."""
    from threadpoolctl import threadpool_limits

    # The service decodes with one BLAS thread (CAPTIONER_BLAS_THREADS); measure the same.
    with threadpool_limits(BLAS_THREADS, user_api="blas"):
        return _bench_decoder(model, pixels, repeats, calls)


def _bench_decoder(
    model: LoadedModel, pixels: np.ndarray, repeats: int, calls: dict[int, int]
) -> dict[str, Any]:
    predictor = model.predictor
    encoded = predictor.encode(pixels)
    images = len(encoded)
    results: dict[str, Any] = {
        "images": images,
        "max_length": predictor.search.max_length,
        "blas_threads": BLAS_THREADS,
        "runtime": predictor.decoder_runtime,
    }
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for mode, beam in DECODER_MODES.items():
            options = predictor.search.with_options(beam_size=beam)
            for batch in DECODER_BATCHES:
                starts = itertools.cycle(range(0, images - batch + 1, batch))

                def run(options: Any = options, batch: int = batch, starts=starts):
                    start = next(starts)
                    predictor.generate(encoded[start : start + batch], options)

                values = time_calls(run, calls[batch])
                samples.setdefault((mode, batch), []).extend(v / batch for v in values)
    for mode, beam in DECODER_MODES.items():
        lengths = caption_lengths(model, encoded, beam)
        entry: dict[str, Any] = {
            "beam_size": beam,
            "mean_words": float(np.mean(lengths)),
            "max_words": int(max(lengths)),
        }
        for batch in DECODER_BATCHES:
            entry[f"batch_{batch}"] = summarize(samples[(mode, batch)])
            logger.info(
                "decoder %s batch %d: %.2f ms/caption (%.1f words on average)",
                mode,
                batch,
                entry[f"batch_{batch}"]["median"],
                entry["mean_words"],
            )
        results[mode] = entry
    if predictor.decoder_step is not None:
        results["numpy_reference"] = _numpy_reference(predictor, encoded, repeats, calls)
    return results


def _numpy_reference(
    predictor: Any, encoded: Any, repeats: int, calls: dict[int, int]
) -> dict[str, Any]:
    """Beam 3 through the float32 NumPy decoder, the reference the LiteRT step replaces."""
    options = predictor.search.with_options(beam_size=DECODER_MODES["beam_3"])
    step, predictor.decoder_step = predictor.decoder_step, None
    try:
        reference: dict[str, Any] = {"mode": "beam_3"}
        for batch in DECODER_BATCHES:
            subset = encoded[:batch]
            values = []
            for _ in range(repeats):
                values += time_calls(lambda s=subset: predictor.generate(s, options), calls[batch])
            reference[f"batch_{batch}"] = summarize([v / batch for v in values])
            logger.info(
                "decoder beam_3 (NumPy reference) batch %d: %.2f ms/caption",
                batch,
                reference[f"batch_{batch}"]["median"],
            )
        return reference
    finally:
        predictor.decoder_step = step
