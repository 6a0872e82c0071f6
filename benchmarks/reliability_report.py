"""docs/reliability.md from the results of `python -m benchmarks.reliability`."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from typing import TYPE_CHECKING, Any

from benchmarks.markdown import table

if TYPE_CHECKING:
    from benchmarks.reliability import Run


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())) or "none"


def _latency_rows(name: str, summary: dict[str, Any]) -> list[Any]:
    latency = summary.get("latency_ms", {})
    return [
        name,
        summary["concurrency"],
        summary["seconds"],
        summary["requests"],
        summary["requests_per_s"],
        _statuses(summary["statuses"]),
        *(latency.get(key, "–") for key in ("p50", "p90", "p95", "p99", "max")),
    ]


def render(
    run: Run, machine: dict[str, Any], manifest: dict, args: argparse.Namespace, seconds: float
) -> str:
    results, plan = run.results, run.plan
    failed = [check for check in run.checks if not check.passed]
    lines = [
        "# Reliability",
        "",
        "Written by `make reliability` (`python -m benchmarks.reliability"
        + (" --quick" if args.quick else "")
        + (f" --parts {','.join(args.parts)}" if len(args.parts) < 5 else "")
        + "`); the quick versions of the same checks run in `make test` (tests/reliability/, "
        "tests/e2e/). Rerun it after changing the service and commit the new figures.",
        "",
        f"**{len(run.checks) - len(failed)} of {len(run.checks)} checks passed**"
        + (f"; failed: {', '.join(c.name for c in failed)}." if failed else "."),
        "",
        *table(
            ["Check", "Result", "Figures"],
            [[c.name, "pass" if c.passed else "**FAIL**", c.detail] for c in run.checks],
        ),
        "## Setup",
        "",
        f"- Date: {machine['date']}; the whole run took {seconds / 60:.1f} minutes.",
        f"- Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores of "
        f"{machine['logical_cpus']}, {machine['memory_gib']} GiB; load average at the start "
        f"{machine['load_average_at_start']} (shared with other work: latencies are not "
        "benchmarks, see docs/benchmarks for those).",
        f"- Model: {run.model_note}: `{manifest.get('model_id', '?')}`"
        + (
            " — a 14-word captioner of coloured shapes, not the Flickr8k model: the figures "
            "test the service's behaviour, not caption quality."
            if "tiny" in run.model_note
            else "."
        ),
        f"- Software: Python {machine['versions'].get('python')}, "
        f"TensorFlow {machine['versions'].get('tensorflow-cpu', '?')}, "
        f"uvicorn {_version('uvicorn')}, httpx {_version('httpx')}, "
        f"Schemathesis {_version('schemathesis')}, Hypothesis {_version('hypothesis')}, "
        f"Pillow {_version('pillow')}.",
        "- Server: `uvicorn app.main:app --timeout-graceful-shutdown 30` (as the container) on "
        "127.0.0.1, default settings unless stated; clients: httpx.AsyncClient, one request at a "
        "time per client, JPEG uploads (640x480 generated photos, beam size 3).",
        "- API keys: "
        + (
            "on (a random `CAPTIONER_API_KEYS` for every server and in-process app; every "
            "client, Schemathesis included, sends it as `Authorization: Bearer`)."
            if os.environ.get("CAPTIONER_API_KEYS")
            else "off (`--no-api-key`)."
        ),
        "",
    ]
    if "load" in results:
        load = results["load"]
        rows = [_latency_rows("sustained", load)]
        if "overload" in results:
            rows.append(_latency_rows("overload", results["overload"]))
        rss = load.get("rss_mb", {})
        lines += [
            "## Load",
            "",
            f"Sustained: {plan.concurrency} concurrent clients for {plan.load_s:.0f} s after a "
            f"{plan.warmup_s:.0f} s warm-up, queue bound {load['queue_bound']} (the default). "
            f"Overload: the same clients against a server with `CAPTIONER_MAX_QUEUE_SIZE="
            f"{plan.overload_queue}`, {plan.overload_s:.0f} s; clients wait 50 ms after a 503.",
            "",
            *table(
                [
                    "run",
                    "clients",
                    "s",
                    "requests",
                    "req/s",
                    "statuses",
                    "p50 ms",
                    "p90 ms",
                    "p95 ms",
                    "p99 ms",
                    "max ms",
                ],
                rows,
            ),
            f"Server memory (RSS of the process and its children, sampled every second during "
            f"the sustained run): first {rss.get('first')} MB, last {rss.get('last')} MB, "
            f"min {rss.get('min')} MB, max {rss.get('max')} MB; growth "
            f"{load.get('rss_growth_mb')} MB (median of the last third minus the first third)"
            + (
                f", {load['rss_last_30s_growth_mb']} MB in the last 30 s."
                if load.get("rss_last_30s_growth_mb") is not None
                else "."
            ),
            "",
            f"RSS every 5 s (MB): {', '.join(map(str, load.get('rss_series_mb', [])))}",
            "",
        ]
    if "sigterm" in results or "training_kill_resume" in results:
        lines += ["## Faults", ""]
    if "sigterm" in results:
        sigterm = results["sigterm"]
        lines += [
            f"**SIGTERM under load.** {plan.sigterm_in_flight} uploads in flight (server with "
            "`CAPTIONER_MAX_BATCH_SIZE=1`, so they queue and /metrics shows them arriving), then "
            "SIGTERM, then 5 new requests on new connections.",
            "",
            f"- In flight: {_statuses(sigterm['in_flight'])}.",
            f"- After the signal: {_statuses(sigterm['after_sigterm'])} (uvicorn closes its "
            "listening socket first: new connections are refused).",
            f"- Exit: status {sigterm['exit_code']} {sigterm['seconds_to_exit']} s after the "
            f"signal; 'Application shutdown complete' logged: "
            f"{sigterm['shutdown_complete_logged']}.",
            "",
        ]
    if "training_kill_resume" in results:
        resume = results["training_kill_resume"]
        lines += [
            "**Training killed mid-epoch.** `python -m training train` on the generated 18-image "
            "dataset (tiny settings, random encoder weights), SIGKILL as soon as the work "
            "folder's `checkpoints/train_state.json` recorded epoch 2, then `--resume` for one "
            "more epoch than had finished.",
            "",
            f"- Killed (exit {resume['killed_exit_code']}) after epoch "
            f"{resume['finished_before_kill']}; resumed run exit {resume['resumed_exit_code']}; "
            f"final history epochs {resume['final_epochs']}; problems: "
            f"{resume['problems'] or 'none'} ({resume['seconds']} s).",
            "- Artifact integrity: a flipped bit in encoder.tflite stops startup "
            "(tests/reliability/test_server_faults.py); damaged manifest, missing decoder and "
            "tampered tokenizer are covered by tests/app/test_real_model.py, atomic writes by "
            "tests/captioning/test_bundle.py.",
            "",
        ]
    if "contract" in results:
        contract = results["contract"]
        lines += [
            "## Contract fuzzing",
            "",
            f"Schemathesis {_version('schemathesis')} on the app's own /openapi.json, in-process "
            f"(ASGI) with the model above: every operation, positive (schema-valid) and negative "
            f"(schema-violating) generation, {contract['examples_per_operation_and_mode']} "
            "examples per operation and mode (deterministic). Enforced: no 5xx, status code, "
            "content type, headers and body schema as documented, 405 for undocumented methods.",
            "",
            f"{contract['requests']} requests, by status: {_statuses(contract['by_status'])}. "
            f"Contract violations: {len(contract['contract_failures'])}"
            + (
                ": " + "; ".join(contract["contract_failures"][:5])
                if contract["contract_failures"]
                else "."
            )
            + (
                f" Operations without negative cases (nothing to make invalid): "
                f"{', '.join(contract['without_cases'])}."
                if contract.get("without_cases")
                else ""
            ),
            "",
            *table(
                ["operation and status", "requests"],
                [[key, count] for key, count in contract["by_operation"].items()],
            ),
            "Findings of Schemathesis' stricter precision checks (reported, not enforced):",
            "",
            *table(
                ["finding", "count", "first example (status, body)"],
                [
                    [key, count, contract["precision_examples"].get(key, "")]
                    for key, count in contract["precision_findings"].items()
                ],
            ),
            'Most "schema-valid request rejected" cases are constraints JSON Schema cannot '
            "express: `num_captions` must not exceed `beam_size`, `max_length` must not exceed "
            "the model's longest caption, and the bytes must be an image. See the notes below "
            "for the ones worth fixing.",
            "",
        ]
    if "decode" in results:
        decode = results["decode"]
        route = results.get("upload_route", {})
        lines += [
            "## Image fuzzing",
            "",
            "Hypothesis (deterministic) mutates small valid JPEG (progressive), PNG (RGBA), GIF "
            "(2 frames), WebP and BMP files: bit flips, overwritten, inserted, deleted and "
            "repeated ranges, truncation, and rewritten header dimensions (640x480 up to "
            "65535x65535, and zero).",
            "",
            f"- `decode_image` (max_pixels {decode['max_pixels']:,}): {decode['examples']} files; "
            f"outcomes {_statuses(decode['outcomes'])}; no other exception"
            + (
                f" (unexpected: {results['images_unexpected']})"
                if results.get("images_unexpected")
                else ""
            )
            + f". Slowest decode {decode['max_decode_ms']} ms ({decode['slowest']}). Peak RSS "
            f"{decode['peak_growth_mb']} MB above the start; RSS {decode['rss_start_mb']} MB "
            f"before, {decode['rss_end_mb']} MB after.",
            f"- `POST /caption` with the same strategy: {route.get('requests', 0)} uploads; "
            f"{_statuses(route.get('statuses', {}))}.",
            "",
            *table(
                ["format and outcome", "files"],
                [[key, count] for key, count in decode["by_format"].items()],
            ),
        ]
    if "security" in results:
        lines += [
            "## Security checks",
            "",
            f"tests/reliability/test_security.py: {results['security']['pytest']}. It checks "
            "that uploads never reach the file system (Python audit hooks watch every open, "
            "rename and mkdir during uploads named `../../etc/x` and the like) and that the "
            "client's filename is never echoed; that the source tree has no pickle, "
            "`np.load(allow_pickle=True)`, `torch.load` or similar besides the two restricted "
            "unpicklers; that every `.keras` load passes `safe_mode=True`; that the Dockerfile's "
            "final stage runs as a non-root USER; and that error messages carry no absolute "
            "paths or tracebacks for a range of bad requests and internal failures.",
            "",
        ]
    lines += [
        "## Notes",
        "",
        "- uvicorn (0.29 and later) re-raises the signal it caught once its graceful shutdown "
        "has finished, so a server stopped with SIGTERM exits with status -15 (143 in a shell, "
        "as `docker stop` reports it) after completing every in-flight request and the "
        "lifespan shutdown. The checks accept that status together with uvicorn's 'Application "
        "shutdown complete' line.",
        "- Contract findings worth fixing in the OpenAPI document (app/api/params.py), shown "
        "above as precision findings when Schemathesis generates them: the options are "
        "documented as `integer | null` (from the Pydantic model), but a null cannot be sent in "
        "a form or query and any spelling of it is answered 422; `POST /captions` documents "
        "`files` as an array without `minItems: 1` (nor `maxItems`), so an empty list is "
        "schema-valid but answered 422 `missing_file`; an invalid query option is ignored, "
        "not refused, when a form field gives the same option (form fields win); and a "
        "repeated option (form field or query parameter) is answered with one of its values, "
        "the others silently ignored.",
    ]
    if "load" in results:
        rss = results["load"].get("rss_mb", {})
        last_30s = results["load"].get("rss_last_30s_growth_mb")
        recent = f"{last_30s} MB in its last 30 s; " if last_30s is not None else ""
        lines.append(
            f"- Memory under sustained load: the server's RSS went from {rss.get('first')} to "
            f"{rss.get('last')} MB over the measured run ({recent}the series is above); the "
            "check compares the medians of the first and last thirds. Only a soak of half an "
            "hour or more can tell allocator and TensorFlow caches settling from a slow leak."
        )
    lines.append("")
    return "\n".join(lines)
