"""The benchmark's pure pieces: statistics, target evaluation, reports. Never timings."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from benchmarks.__main__ import FULL, QUICK, parse_args
from benchmarks.images import jpeg_set, photo_like
from benchmarks.machine import cpu_model
from benchmarks.markdown import table
from benchmarks.procfs import children_of, cpu_seconds, kib_field, peak_rss_mb, status_kib
from benchmarks.report import finite, render_markdown, write_reports
from benchmarks.server import summarize_level
from benchmarks.stats import interleaved, ratio, summarize, time_calls
from benchmarks.targets import FAIL, MISSING, PASS, evaluate_targets
from tests.support.imports import REPO, imported_packages


def stats(value: float) -> dict[str, float]:
    return {"median": value, "p95": value, "mean": value, "min": value, "max": value, "n": 3}


def results_dict(**overrides: float) -> dict:
    """A complete results dict in which every target passes, unless overridden."""
    values = {
        "tf_ms": 30.0,
        "litert_ms": 15.0,
        "beam3_ms": 3.0,
        "p50_ms": 20.0,
        "tput1": 40.0,
        "tput8": 70.0,
        "baseline_ms": 2000.0,
        "rss_mb": 700.0,
        "ready_s": 6.0,
        "difference": 1e-5,
    }
    values.update(overrides)
    return {
        "meta": {
            "machine": {"cpu_model": "Test CPU", "usable_cores": 2, "versions": {"python": "3"}},
            "model": {"model_id": "m", "vocab_size": 100, "max_length": 20},
            "quick": True,
            "repeats": 1,
        },
        "encoder": {
            "service_runtime": "litert",
            "tflite_source": "encoder.tflite (artifacts)",
            "max_pooled_difference": values["difference"],
            "runtimes_agree": values["difference"] <= 2e-2,
            "agreement_rtol": 2e-2,
            "runtimes": {
                "tensorflow": {"batch_1": stats(values["tf_ms"]), "batch_8": stats(20.0)},
                "litert": {"batch_1": stats(values["litert_ms"]), "batch_8": stats(10.0)},
            },
        },
        "decoder": {
            "images": 16,
            "greedy": {"mean_words": 9.0, "batch_1": stats(1.0), "batch_16": stats(0.2)},
            "beam_3": {"mean_words": 9.5, "batch_1": stats(values["beam3_ms"])},
        },
        "http": {
            "concurrency": {
                "1": {"images_per_s": values["tput1"], "p50_ms": values["p50_ms"], "p95_ms": 25},
                "8": {"images_per_s": values["tput8"], "p50_ms": 90.0, "p95_ms": 120.0},
            },
            "peak_rss_mb": values["rss_mb"],
            "ready_s": stats(values["ready_s"]),
        },
        "baseline": {
            "matched_words": 11,
            "max_length": 34,
            "caption_matched_ms": stats(values["baseline_ms"]),
        },
    }


def statuses(results: dict) -> list[str]:
    return [t.status for t in evaluate_targets(results)]


# --- statistics -------------------------------------------------------------------------------
def test_summarize_scales_every_statistic():
    summary = summarize([8.0, 16.0, 24.0], scale=1 / 8)
    assert summary["median"] == 2.0
    assert summary["p95"] == pytest.approx(2.9)  # linear interpolation between 2 and 3
    assert summary["min"] == 1.0 and summary["max"] == 3.0
    assert summary["mean"] == pytest.approx(2.0)
    assert summary["n"] == 3
    assert all(type(value) in (float, int) for value in summary.values())  # plain JSON numbers
    with pytest.raises(ValueError):
        summarize([])


def test_ratio_handles_missing_values():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_time_calls_counts_calls_and_excludes_warmup():
    calls = []
    samples = time_calls(lambda: calls.append(1), calls=4, warmup=2)
    assert len(samples) == 4 and len(calls) == 6


def test_interleaved_runs_cases_in_turn():
    order: list[str] = []
    samples = interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 2, 1, warmup=0
    )
    assert order == ["a", "b", "a", "b"]
    assert {k: len(v) for k, v in samples.items()} == {"a": 2, "b": 2}


# --- targets ----------------------------------------------------------------------------------
def test_all_targets_pass_on_good_numbers():
    assert statuses(results_dict()) == [PASS] * 8


@pytest.mark.parametrize(
    ("override", "index"),
    [
        ({"tf_ms": 14.0}, 0),  # service (litert, 15 ms) within 1.2x of tensorflow: passes
        ({"beam3_ms": 5.0}, 1),  # 5 / 15 > 25 %
        ({"p50_ms": 30.0}, 2),  # 30 / 15 > 1.5
        ({"tput8": 50.0}, 3),  # 50 / 40 < 1.3
        ({"baseline_ms": 500.0}, 4),  # 500 / 18 < 50
        ({"rss_mb": 1200.0}, 5),
        ({"ready_s": 12.0}, 6),
        ({"difference": float("nan")}, 7),
    ],
)
def test_each_target_can_fail_alone(override, index):
    expected = [PASS] * 8
    if index:
        expected[index] = FAIL
    assert statuses(results_dict(**override)) == expected


def test_service_runtime_slower_than_the_fastest_fails():
    results = results_dict(tf_ms=10.0, litert_ms=15.0)  # service (litert) 1.5x tensorflow
    target = evaluate_targets(results)[0]
    assert target.status == FAIL
    assert target.value == pytest.approx(1.5)
    assert "litert" in target.numbers and "tensorflow" in target.numbers


def test_broken_runtime_is_not_the_fastest():
    # LiteRT disagrees with TensorFlow: only TensorFlow's time counts as "fastest".
    results = results_dict(difference=float("nan"), tf_ms=30.0, litert_ms=5.0)
    first = evaluate_targets(results)[0]
    assert first.value == pytest.approx(5.0 / 30.0)
    assert "tensorflow" in first.numbers.split("fastest")[1]


def test_missing_parts_give_not_available():
    results = results_dict()
    del results["http"], results["baseline"]
    got = statuses(results)
    assert got[2:7] == [MISSING] * 5
    assert got[0] == got[1] == PASS


def test_speedup_uses_encoder_plus_beam3():
    target = evaluate_targets(results_dict(litert_ms=15.0, beam3_ms=5.0, baseline_ms=1000.0))[4]
    assert target.value == pytest.approx(1000.0 / 20.0)
    assert target.status == PASS  # exactly 50x


# --- reports ----------------------------------------------------------------------------------
def test_markdown_has_the_tables_and_verdicts():
    results = results_dict(rss_mb=1500.0)
    markdown = render_markdown(results, evaluate_targets(results))
    assert "Test CPU" in markdown and "## Targets" in markdown
    assert markdown.count("**PASS**") == 7 and markdown.count("**FAIL**") == 1
    assert "| litert (service) | 15.00 | 10.00 |" in markdown
    assert "Not measured" not in markdown.split("## Seed-style baseline")[0]


def test_markdown_shows_cpu_per_request_and_the_ceiling_it_sets():
    results = results_dict(tput1=30.0)
    levels = results["http"]["concurrency"]
    levels["1"].update(server_cpu_ms_per_request=45.0, client_cpu_ms_per_request=5.0)
    levels["1"]["cores_busy"] = 0.75
    levels["8"].update(server_cpu_ms_per_request=36.0, client_cpu_ms_per_request=4.0)
    levels["8"]["cores_busy"] = 0.95

    markdown = render_markdown(results, evaluate_targets(results))

    assert "| 8 | 70.00 | 90.0 | 120.0 | None | 0 | 36.0 | 4.0 | 95% |" in markdown
    # 2 cores / 40 ms per request = 50 images/s, 1.67x the 30 of concurrency 1.
    assert "2 cores answer at most 50.0 images/s, 1.67x concurrency 1's" in markdown


def test_markdown_leaves_out_the_ceiling_when_cpu_was_not_measured():
    results = results_dict()
    markdown = render_markdown(results, evaluate_targets(results))
    assert "| 8 | 70.00 | 90.0 | 120.0 | None | 0 | – | – | – |" in markdown
    assert "answer at most" not in markdown


def test_markdown_names_parts_that_failed():
    results = results_dict()
    results["http"] = {"error": "RuntimeError: no server"}
    markdown = render_markdown(results, evaluate_targets(results))
    assert "Not measured: RuntimeError: no server." in markdown


def test_write_reports_writes_valid_json_markdown_and_plot(tmp_path):
    results = results_dict(difference=float("nan"))
    markdown = write_reports(results, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())  # NaN would be invalid JSON
    assert data["encoder"]["max_pooled_difference"] is None
    assert [t["status"] for t in data["targets"]][-1] == FAIL
    assert (tmp_path / "results.md").read_text() == markdown
    assert (tmp_path / "latency_throughput.png").read_bytes().startswith(b"\x89PNG")


def test_finite_replaces_nan_and_infinity():
    assert finite({"a": [math.nan, 1.0, math.inf], "b": (2, -math.inf)}) == {
        "a": [None, 1.0, None],
        "b": [2, None],
    }


def test_summarize_level_pools_latencies_and_takes_median_throughput():
    runs = [
        {"images_per_s": 10.0, "ok": 2, "errors": {}, "latencies_ms": [1.0, 2.0]},
        {"images_per_s": 30.0, "ok": 2, "errors": {"503": 1}, "latencies_ms": [3.0, 4.0]},
        {"images_per_s": 20.0, "ok": 1, "errors": {"503": 2}, "latencies_ms": [5.0]},
    ]
    level = summarize_level(runs, cores=2)
    assert level["images_per_s"] == 20.0
    assert level["p50_ms"] == 3.0
    assert level["requests"] == 5
    assert level["errors"] == {"503": 3}
    assert "server_cpu_ms_per_request" not in level  # not measured, not made up


def test_summarize_level_divides_cpu_time_by_answered_requests():
    runs = [
        {
            "images_per_s": 10.0,
            "ok": 10,
            "errors": {},
            "latencies_ms": [1.0],
            "seconds": 1.0,
            "server_cpu_s": 0.5,
            "client_cpu_s": 0.1,
        },
        {
            "images_per_s": 10.0,
            "ok": 30,
            "errors": {},
            "latencies_ms": [1.0],
            "seconds": 3.0,
            "server_cpu_s": 1.5,
            "client_cpu_s": 0.3,
        },
    ]
    level = summarize_level(runs, cores=2)
    assert level["server_cpu_ms_per_request"] == pytest.approx(50.0)  # 2.0 s / 40 requests
    assert level["client_cpu_ms_per_request"] == pytest.approx(10.0)
    assert level["cores_busy"] == pytest.approx(2.4 / (4.0 * 2))


def test_cpu_seconds_counts_this_process_work_and_zero_for_a_gone_one():
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.2
    assert cpu_seconds(2**22 + 12345) == 0.0  # above the largest pid Linux hands out


# --- machine, images, plans -------------------------------------------------------------------
def test_cpu_model_reads_the_first_model_name():
    text = "processor\t: 0\nmodel name\t: Fancy CPU @ 3GHz\n\nmodel name\t: other\n"
    assert cpu_model(text) == "Fancy CPU @ 3GHz"


def test_peak_rss_of_this_process_is_positive():
    assert peak_rss_mb(os.getpid()) > 1.0
    assert os.getpid() not in children_of(os.getpid())
    assert status_kib("self", "VmRSS") > 0 and status_kib(2**22 + 12345, "VmRSS") == 0


def test_kib_fields_read_meminfo_style_lines(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
    assert kib_field(status, "VmRSS") == 1024 and kib_field(status, "VmHWM") == 2048
    assert kib_field(status, "VmSwap") == 0 and kib_field(tmp_path / "gone", "VmRSS") == 0


def test_generated_photos_are_deterministic_jpegs():
    assert photo_like(3).size == (640, 480)
    first, second = jpeg_set(2)
    assert first.startswith(b"\xff\xd8") and first != second
    assert jpeg_set(1)[0] == first


def test_plans_and_arguments():
    assert QUICK.repeats < FULL.repeats
    args = parse_args(["--quick", "--parts", "encoder,decoder"])
    assert args.quick and args.parts == ["encoder", "decoder"]
    with pytest.raises(SystemExit):
        parse_args(["--parts", "gpu"])


def test_tables_keep_cells_on_one_line_and_align_numbers_right():
    lines = table(["run", "s"], [["a\nb | c", 1.5]], numeric=1)
    assert lines == ["| run | s |", "|---|---:|", "| a b \\| c | 1.5 |", ""]


def test_markdown_table_cells_escape_pipes():
    results = results_dict()
    markdown = render_markdown(results, evaluate_targets(results))
    row = next(line for line in markdown.splitlines() if line.startswith("| Check: the runtimes"))
    assert row.count(" | ") == 4  # five columns: the |difference| pipes are escaped
    assert "\\|difference\\|" in row


def test_benchmarks_import_nothing_from_tests() -> None:
    for path, names in imported_packages(REPO / "benchmarks").items():
        assert "tests" not in names, path
