"""Pure timing helpers: summaries (NumPy's percentiles) and a small timing loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def summarize(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """median, p95, mean, min, max (each multiplied by `scale`) and the sample count."""
    if not values:
        raise ValueError("cannot summarize an empty sequence")
    scaled = np.asarray(values, dtype=float) * scale
    median, p95 = np.percentile(scaled, [50.0, 95.0])  # linear interpolation
    return {
        "median": float(median),
        "p95": float(p95),
        "mean": float(scaled.mean()),
        "min": float(scaled.min()),
        "max": float(scaled.max()),
        "n": len(scaled),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def time_calls(function: Callable[[], Any], calls: int, warmup: int = 1) -> list[float]:
    """Milliseconds per call of `function()`, `calls` times, after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def interleaved(
    cases: dict[str, Callable[[], Any]], repeats: int, calls: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time every case in turn, `repeats` rounds of `calls` calls each (ms per call).

    Interleaving the cases spreads any slow period of a shared machine over all of them
    instead of penalising whichever case happened to run then.
    """
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, function in cases.items():
            samples[name].extend(time_calls(function, calls, warmup))
    return samples
