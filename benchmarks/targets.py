"""The performance targets, evaluated as ratios from a results dict: PASS, FAIL or N/A."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.stats import ratio

ENCODER_VS_FASTEST_MAX = 1.2
BEAM3_VS_ENCODER_MAX = 0.25
E2E_P50_VS_ENCODER_MAX = 1.5
THROUGHPUT_C8_VS_C1_MIN = 1.3
SPEEDUP_VS_BASELINE_MIN = 50.0
SERVER_RSS_MAX_MB = 1000.0  # 1 GB = 10^9 bytes
READY_MAX_S = 10.0
REFERENCE_RUNTIME = "tensorflow"  # the Keras model is the source of truth

PASS, FAIL, MISSING = "PASS", "FAIL", "N/A"


@dataclass(frozen=True)
class TargetResult:
    name: str
    value: float | None
    limit: float
    comparison: str  # "<=" or ">="
    unit: str  # "x", "MB", "s"
    numbers: str  # the measurements behind the value, for the report
    status: str  # PASS, FAIL or N/A

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(results: dict[str, Any], *path: str) -> Any:
    """results[path[0]][path[1]]...; None when any step is missing."""
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _check(
    name: str, value: float | None, limit: float, comparison: str, unit: str, numbers: str
) -> TargetResult:
    if value is None:
        status = MISSING
    elif comparison == "<=":
        status = PASS if value <= limit else FAIL
    elif comparison == ">=":
        status = PASS if value >= limit else FAIL
    else:
        raise ValueError(f"unknown comparison {comparison!r}")
    return TargetResult(name, value, limit, comparison, unit, numbers, status)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _sig(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def encoder_batch1(results: dict[str, Any], runtime: str | None) -> float | None:
    if runtime is None:
        return None
    return _get(results, "encoder", "runtimes", runtime, "batch_1", "median")


def valid_runtimes(results: dict[str, Any]) -> list[str]:
    """Runtimes whose output can be trusted: all, or TensorFlow alone when they disagree."""
    runtimes = list(_get(results, "encoder", "runtimes") or {})
    if _get(results, "encoder", "runtimes_agree") is False:
        return [name for name in runtimes if name == REFERENCE_RUNTIME]
    return runtimes


def fastest_encoder(results: dict[str, Any]) -> tuple[str | None, float | None]:
    """The (valid) runtime with the lowest batch-1 median, and that median."""
    timed = {name: encoder_batch1(results, name) for name in valid_runtimes(results)}
    timed = {name: value for name, value in timed.items() if value is not None}
    if not timed:
        return None, None
    name = min(timed, key=timed.__getitem__)
    return name, timed[name]


def evaluate_targets(results: dict[str, Any]) -> list[TargetResult]:
    """Every target, from the medians in `results` (missing measurements give N/A)."""
    service = _get(results, "encoder", "service_runtime")
    service_ms = encoder_batch1(results, service)
    fastest_name, fastest_ms = fastest_encoder(results)
    beam3_ms = _get(results, "decoder", "beam_3", "batch_1", "median")
    p50_ms = _get(results, "http", "concurrency", "1", "p50_ms")
    tput1 = _get(results, "http", "concurrency", "1", "images_per_s")
    tput8 = _get(results, "http", "concurrency", "8", "images_per_s")
    baseline_ms = _get(results, "baseline", "caption_matched_ms", "median")
    baseline_words = _get(results, "baseline", "matched_words")
    baseline_full_ms = _get(results, "baseline", "caption_full_ms", "median")
    full_length = _get(results, "baseline", "max_length")
    ours_ms = None if service_ms is None or beam3_ms is None else service_ms + beam3_ms
    rss_mb = _get(results, "http", "peak_rss_mb")
    ready_s = _get(results, "http", "ready_s", "median")
    return [
        _check(
            "Encoder in the service within 1.2x of the fastest runtime (batch 1)",
            ratio(service_ms, fastest_ms),
            ENCODER_VS_FASTEST_MAX,
            "<=",
            "x",
            f"service ({service}) {_fmt(service_ms, 2)} ms vs fastest ({fastest_name}) "
            f"{_fmt(fastest_ms, 2)} ms",
        ),
        _check(
            "Beam-3 decoding of one caption at most 25% of the encoder (batch 1)",
            ratio(beam3_ms, service_ms),
            BEAM3_VS_ENCODER_MAX,
            "<=",
            "x",
            f"beam 3 {_fmt(beam3_ms, 2)} ms vs encoder ({service}) {_fmt(service_ms, 2)} ms",
        ),
        _check(
            "End-to-end p50 at concurrency 1 at most 1.5x the fastest encoder (batch 1)",
            ratio(p50_ms, fastest_ms),
            E2E_P50_VS_ENCODER_MAX,
            "<=",
            "x",
            f"HTTP p50 {_fmt(p50_ms, 2)} ms vs encoder ({fastest_name}) {_fmt(fastest_ms, 2)} ms",
        ),
        _check(
            "Throughput at concurrency 8 at least 1.3x concurrency 1",
            ratio(tput8, tput1),
            THROUGHPUT_C8_VS_C1_MIN,
            ">=",
            "x",
            f"{_fmt(tput8, 2)} vs {_fmt(tput1, 2)} images/s",
        ),
        _check(
            "At least 50x faster per caption than the seed-style baseline",
            ratio(baseline_ms, ours_ms),
            SPEEDUP_VS_BASELINE_MIN,
            ">=",
            "x",
            f"baseline {_fmt(baseline_ms, 0)} ms (Xception + {baseline_words} per-word "
            f"predicts) vs ours {_fmt(ours_ms, 2)} ms (encoder {service} + beam 3); "
            f"at the full {full_length} words the baseline takes {_fmt(baseline_full_ms, 0)} ms "
            f"({_fmt(ratio(baseline_full_ms, ours_ms), 1)}x)",
        ),
        _check(
            "Server peak RSS at most 1 GB",
            rss_mb,
            SERVER_RSS_MAX_MB,
            "<=",
            "MB",
            f"VmHWM {_fmt(rss_mb, 0)} MB (server and children)",
        ),
        _check(
            "Ready within 10 s of process start",
            ready_s,
            READY_MAX_S,
            "<=",
            "s",
            f"median {_fmt(ready_s, 2)} s to GET /ready = 200",
        ),
        agreement_check(results),
    ]


def agreement_check(results: dict[str, Any]) -> TargetResult:
    """Not a speed target: every runtime timed computes the same features (same network)."""
    difference = _get(results, "encoder", "max_pooled_difference")
    limit = _get(results, "encoder", "agreement_rtol") or 2e-2
    agree = _get(results, "encoder", "runtimes_agree")
    value = None if agree is None else (difference if agree else math.inf)
    return _check(
        "Check: the runtimes compute the same features (max pooled |difference| / max feature)",
        value,
        limit,
        "<=",
        "",
        f"max |difference| {_sig(difference)} between "
        f"{', '.join(_get(results, 'encoder', 'runtimes') or {}) or 'n/a'}",
    )
