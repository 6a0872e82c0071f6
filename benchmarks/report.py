"""results.json, results.md (Markdown tables and targets) and latency_throughput.png."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from benchmarks.markdown import table
from benchmarks.targets import MISSING, TargetResult, evaluate_targets

logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PLOT_PNG = "latency_throughput.png"
PLOT_SIZE_IN = (10.0, 4.0)
PLOT_DPI = 110


def _ms(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _number(value: float) -> str:
    """Two decimals, or two significant digits for small values (1e-05 stays readable)."""
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"


def _sig(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def _median(node: dict[str, Any] | None, key: str) -> float | None:
    entry = (node or {}).get(key)
    return entry.get("median") if isinstance(entry, dict) else None


def machine_section(meta: dict[str, Any]) -> list[str]:
    machine = meta.get("machine", {})
    versions = machine.get("versions", {})
    lines = [
        f"- Date: {machine.get('date', '?')}",
        f"- CPU: {machine.get('cpu_model', '?')}, {machine.get('usable_cores', '?')} usable "
        f"cores ({machine.get('logical_cpus', '?')} logical), "
        f"{machine.get('memory_gib', '?')} GiB memory",
        f"- Load average at start: {machine.get('load_average_at_start')}",
        f"- Platform: {machine.get('platform', '?')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "- Thread settings: "
        + (", ".join(f"{k}={v}" for k, v in machine.get("thread_env", {}).items()) or "defaults"),
    ]
    model = meta.get("model", {})
    if model:
        lines.append(
            f"- Model: `{model.get('model_id')}` from `{model.get('artifacts')}`, vocabulary "
            f"{model.get('vocab_size')}, max length {model.get('max_length')}"
        )
    lines.append(
        f"- Run: {'quick' if meta.get('quick') else 'full'}, {meta.get('repeats')} repeats, "
        f"{_ms(meta.get('seconds'), 0)} s in all; every figure is a median (warm-up excluded)"
    )
    return [*lines, ""]


def targets_section(targets: list[TargetResult]) -> list[str]:
    rows = []
    for t in targets:
        value = "–" if t.value is None else f"{_number(t.value)} {t.unit}".strip()
        status = f"**{t.status}**" if t.status != MISSING else t.status
        limit = f"{t.comparison} {t.limit:g} {t.unit}".strip()
        rows.append([t.name, value, limit, status, t.numbers])
    return table(["Target", "Measured", "Limit", "Result", "Numbers"], rows)


def encoder_section(encoder: dict[str, Any]) -> list[str]:
    service = encoder.get("service_runtime")
    rows = []
    for name, batches in encoder.get("runtimes", {}).items():
        label = f"{name} (service)" if name == service else name
        rows.append([label, _ms(_median(batches, "batch_1")), _ms(_median(batches, "batch_8"))])
    lines = table(["Runtime", "Batch 1, ms/image", "Batch 8, ms/image"], rows)
    lines.append(
        f"LiteRT model: {encoder.get('tflite_source')}; input {encoder.get('input_size')} px; "
        f"largest pooled-feature difference between runtimes, relative to the largest feature: "
        f"{_sig(encoder.get('max_pooled_difference'))} (agree: {encoder.get('runtimes_agree')})."
    )
    return [*lines, ""]


def decoder_section(decoder: dict[str, Any]) -> list[str]:
    rows = []
    for mode in ("greedy", "beam_3", "beam_5"):
        entry = decoder.get(mode)
        if entry:
            rows.append(
                [
                    mode.replace("_", " "),
                    _ms(_median(entry, "batch_1")),
                    _ms(_median(entry, "batch_16")),
                    f"{entry.get('mean_words', 0):.1f}",
                ]
            )
    lines = table(["Decoding", "Batch 1, ms/caption", "Batch 16, ms/caption", "Mean words"], rows)
    lines.append(
        f"Decoder runtime: {decoder.get('runtime', 'numpy')} (the service's). Features of "
        f"{decoder.get('images')} generated photos from the service encoder."
    )
    reference = decoder.get("numpy_reference")
    if reference:
        lines.append(
            f"The float32 NumPy decoder, for reference, beam 3: "
            f"{_ms(_median(reference, 'batch_1'))} ms/caption at batch 1, "
            f"{_ms(_median(reference, 'batch_16'))} at batch 16."
        )
    return [*lines, ""]


def baseline_section(baseline: dict[str, Any]) -> list[str]:
    rows = [
        ["Xception features (`predict`)", _ms(_median(baseline, "xception_ms"), 1)],
        ["One word (`predict` on the padded prefix)", _ms(_median(baseline, "word_ms"), 1)],
        [
            f"Caption, {baseline.get('matched_words')} words: {baseline.get('matched_from')}",
            _ms(_median(baseline, "caption_matched_ms"), 0),
        ],
        [
            f"Caption, {baseline.get('max_length')} words (full length)",
            _ms(_median(baseline, "caption_full_ms"), 0),
        ],
    ]
    lines = table(["Seed-style baseline", "ms"], rows)
    lines.append(
        f"Vocabulary {baseline.get('vocab_size')} (ours), random weights. The target uses the "
        "caption as long as ours; the full-length figure is the tutorial's worst case."
    )
    return [*lines, ""]


def _server_breakdown(http: dict[str, Any]) -> list[str]:
    """The server's own median timings at concurrency 1, against the client's p50."""
    level = http.get("concurrency", {}).get("1", {})
    stages = level.get("server_median_ms")
    if not stages or level.get("p50_ms") is None:
        return []
    parts = ", ".join(
        f"{stage} {_ms(stages[stage], 1)}"
        for stage in ("decode", "queue", "encode", "generate")
        if stage in stages
    )
    rest = level["p50_ms"] - stages.get("total", 0.0)
    return [
        f"- At concurrency 1 the server's own median timings (ms): {parts}; total "
        f"{_ms(stages.get('total'), 1)}. The other {_ms(rest, 1)} ms of the "
        f"{_ms(level['p50_ms'], 1)} ms p50 are HTTP, upload parsing and the client."
    ]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _cpu_ceiling(http: dict[str, Any], cores: int | None) -> list[str]:
    """The most images/s the cores allow at concurrency 8's CPU cost per request."""
    levels = http.get("concurrency", {})
    busy, single = levels.get("8", {}), levels.get("1", {})
    server, client = busy.get("server_cpu_ms_per_request"), busy.get("client_cpu_ms_per_request")
    if not cores or server is None or client is None or not single.get("images_per_s"):
        return []
    ceiling = cores * 1000 / (server + client)
    return [
        f"- CPU per request at concurrency 8: server {_ms(server, 1)} ms, client "
        f"{_ms(client, 1)} ms. At that cost {cores} cores answer at most {_ms(ceiling, 1)} "
        f"images/s, {_ms(ceiling / single['images_per_s'])}x concurrency 1's throughput, "
        "however the requests are batched."
    ]


def http_section(http: dict[str, Any], cores: int | None = None) -> list[str]:
    rows = []
    for concurrency, level in http.get("concurrency", {}).items():
        errors = ", ".join(f"{k}: {v}" for k, v in level.get("errors", {}).items()) or "0"
        rows.append(
            [
                concurrency,
                _ms(level.get("images_per_s")),
                _ms(level.get("p50_ms"), 1),
                _ms(level.get("p95_ms"), 1),
                str(level.get("requests")),
                errors,
                _ms(level.get("server_cpu_ms_per_request"), 1),
                _ms(level.get("client_cpu_ms_per_request"), 1),
                _percent(level.get("cores_busy")),
            ]
        )
    header = ["Concurrency", "Images/s", "p50 ms", "p95 ms", "Requests", "Errors"]
    header += ["Server CPU ms/request", "Client CPU ms/request", "Cores busy"]
    lines = table(header, rows)
    lines += [
        f"- Ready (process start to `GET /ready` = 200): {_ms(_median(http, 'ready_s'))} s "
        f"(median of {http.get('ready_s', {}).get('n')} starts)",
        f"- Server peak RSS (VmHWM, with children): {_ms(http.get('peak_rss_mb'), 0)} MB after "
        f"the load ({_ms(http.get('peak_rss_at_ready_mb'), 0)} MB when ready; resident after "
        f"the load {_ms(http.get('rss_after_load_mb'), 0)} MB)",
        f"- Uploads: generated JPEG photos, {http.get('upload_size')}, "
        f"{_ms(http.get('upload_bytes_mean', 0) / 1000, 0)} kB on average, `POST /caption` "
        f"with beam {http.get('beam_size')}, on {http.get('host')}",
        f"- Sample caption: {http.get('sample_caption')!r}",
        *_server_breakdown(http),
        *_cpu_ceiling(http, cores),
        "",
        f"![latency and throughput]({PLOT_PNG})",
    ]
    return [*lines, ""]


def render_markdown(results: dict[str, Any], targets: list[TargetResult]) -> str:
    meta = results.get("meta", {})
    lines = ["# Captioner benchmarks", "", *machine_section(meta), "## Targets", ""]
    lines += targets_section(targets)
    sections = (
        ("encoder", "Encoder alone", encoder_section),
        ("decoder", "Decoder alone", decoder_section),
        (
            "http",
            "End to end over HTTP",
            lambda http: http_section(http, meta.get("machine", {}).get("usable_cores")),
        ),
        ("baseline", "Seed-style baseline", baseline_section),
    )
    for key, title, render in sections:
        lines += [f"## {title}", ""]
        part = results.get(key)
        if isinstance(part, dict) and "error" not in part:
            lines += render(part)
        else:
            reason = part.get("error") if isinstance(part, dict) else "not run"
            lines += [f"Not measured: {reason}.", ""]
    return "\n".join(lines).rstrip() + "\n"


def plot(results: dict[str, Any], path: Path) -> bool:
    """Latency (p50, p95) and throughput against concurrency; False when there is no data."""
    levels = (results.get("http") or {}).get("concurrency") or {}
    if not levels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrency = [int(c) for c in levels]
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=PLOT_SIZE_IN)
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95")):
        latency.plot(concurrency, [levels[str(c)].get(key) for c in concurrency], "o-", label=label)
    latency.set(xlabel="concurrent clients", ylabel="latency, ms", title="Latency per request")
    latency.legend()
    throughput.plot(concurrency, [levels[str(c)]["images_per_s"] for c in concurrency], "o-")
    throughput.set(xlabel="concurrent clients", ylabel="images/s", title="Throughput")
    for axis in (latency, throughput):
        axis.set_xticks(concurrency)
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
    machine = results.get("meta", {}).get("machine", {})
    cpu, cores = machine.get("cpu_model", "?"), machine.get("usable_cores", "?")
    figure.suptitle(f"POST /caption on {cpu}, {cores} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)
    return True


def finite(value: Any) -> Any:
    """The same structure with NaN and infinities as None: results.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def write_reports(results: dict[str, Any], output: Path) -> str:
    """Evaluate the targets, write the three files, return the Markdown."""
    output.mkdir(parents=True, exist_ok=True)
    targets = evaluate_targets(results)
    results["targets"] = [t.as_dict() for t in targets]
    text = json.dumps(finite(results), indent=2, allow_nan=False)
    (output / RESULTS_JSON).write_text(text + "\n", encoding="utf-8")
    markdown = render_markdown(results, targets)
    (output / RESULTS_MD).write_text(markdown, encoding="utf-8")
    written = [RESULTS_JSON, RESULTS_MD]
    if plot(results, output / PLOT_PNG):
        written.append(PLOT_PNG)
    else:
        logger.warning("no HTTP measurements: %s not drawn", PLOT_PNG)
    logger.info("wrote %s in %s", ", ".join(written), output)
    return markdown
