"""The reliability harness' pure pieces: argument parsing, figures and the report. No load."""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import pytest

from benchmarks.reliability import FULL, PARTS, Run, parse_args
from benchmarks.reliability_images import seed_images, set_dimensions
from benchmarks.reliability_report import render
from benchmarks.reliability_server import LoadResult, _metric, rss_growth_mb


def test_parse_args_defaults_and_parts() -> None:
    args = parse_args([])
    assert args.parts == list(PARTS) and not args.quick
    assert parse_args(["--parts", "load, images"]).parts == ["load", "images"]
    with pytest.raises(SystemExit):
        parse_args(["--parts", "load,nonsense"])


def test_rss_growth_compares_medians_of_thirds() -> None:
    flat_with_spike = [(float(i), 100.0) for i in range(9)]
    flat_with_spike[8] = (8.0, 400.0)  # one momentary peak is not growth
    assert rss_growth_mb(flat_with_spike) == 0.0
    climbing = [(float(i), 100.0 + 10 * i) for i in range(9)]
    assert rss_growth_mb(climbing) == 60.0


def test_load_result_counts_everything_but_200_as_failed() -> None:
    result = LoadResult(concurrency=2, seconds=2.0)
    result.statuses.update({"200": 8, "503": 1, "ConnectError": 1})
    result.latencies_ms = [10.0, 20.0, 30.0, 40.0]
    summary = result.summary()
    assert (result.requests, result.failed) == (10, 2)
    assert summary["requests_per_s"] == 5.0
    assert summary["latency_ms"]["p50"] == 25.0


def test_metric_reads_unlabelled_prometheus_samples() -> None:
    text = '# HELP x\ncaptioner_queue_depth 3.0\ncaptioner_images_total{outcome="ok"} 5.0\n'
    assert _metric(text, "captioner_queue_depth") == 3.0
    assert _metric(text, "captioner_missing") is None


def test_set_dimensions_rewrites_png_with_a_valid_crc() -> None:
    data = bytearray(seed_images()["PNG"])
    set_dimensions(data, "PNG", 640, 480)
    assert struct.unpack(">II", bytes(data[16:24])) == (640, 480)
    assert struct.unpack(">I", bytes(data[29:33]))[0] == zlib.crc32(bytes(data[12:29]))


def test_report_renders_every_section(tmp_path: Path) -> None:
    run = Run(FULL, tmp_path, "the test suite's tiny model, trained for this run", tmp_path)
    run.check("load: something", True, "figures")
    run.check("images: something else", False, "more | figures\nover two lines")
    load = {
        "concurrency": 32,
        "seconds": 120.0,
        "requests": 100,
        "statuses": {"200": 100},
        "requests_per_s": 0.8,
        "latency_ms": {"p50": 1.0, "p90": 2.0, "p95": 3.0, "p99": 4.0, "max": 5.0},
        "rss_mb": {"first": 1.0, "last": 2.0, "min": 1.0, "max": 2.0, "samples": 3},
        "rss_growth_mb": 1.0,
        "rss_last_30s_growth_mb": None,
        "rss_series_mb": [1, 2],
        "queue_bound": 64,
    }
    run.results = {
        "load": load,
        "overload": load | {"statuses": {"200": 5, "503": 5}},
        "sigterm": {
            "in_flight": {"200": 24},
            "after_sigterm": {"ConnectError": 5},
            "exit_code": -15,
            "shutdown_complete_logged": True,
            "seconds_to_exit": 0.5,
        },
        "training_kill_resume": {
            "killed_exit_code": -9,
            "finished_before_kill": 2,
            "resumed_exit_code": 0,
            "final_epochs": [1, 2, 3],
            "problems": [],
            "seconds": 30.0,
        },
        "contract": {
            "requests": 10,
            "by_status": {"200": 10},
            "by_operation": {"GET /health 200": 10},
            "contract_failures": [],
            "precision_findings": {"POST /caption [positive]: rejected": 2},
            "precision_examples": {"POST /caption [positive]: rejected": "422 {...}"},
            "without_cases": ["GET /health [negative]"],
            "examples_per_operation_and_mode": 400,
        },
        "decode": {
            "examples": 5,
            "outcomes": {"ok": 5},
            "by_format": {"PNG ok": 5},
            "max_decode_ms": 1.0,
            "slowest": "PNG, 10 bytes",
            "rss_start_mb": 1.0,
            "rss_end_mb": 1.0,
            "peak_growth_mb": 0.0,
            "max_pixels": 2_000_000,
        },
        "upload_route": {"requests": 1, "statuses": {"200": 1}},
        "security": {"pytest": "17 passed", "exit_code": 0},
    }
    machine = {
        "date": "2026-01-01T00:00:00+00:00",
        "cpu_model": "CPU",
        "usable_cores": 2,
        "logical_cpus": 2,
        "memory_gib": 8.0,
        "load_average_at_start": [1.0, 1.0, 1.0],
        "versions": {"python": "3.11", "tensorflow-cpu": "2.21.0"},
    }
    args = argparse.Namespace(quick=False, parts=list(PARTS))
    text = render(run, machine, {"model_id": "tiny-1"}, args, 360.0)
    assert "**1 of 2 checks passed**; failed: images: something else." in text
    assert "more \\| figures over two lines" in text  # one table row, pipes escaped
    for heading in ("## Setup", "## Load", "## Faults", "## Contract fuzzing", "## Image fuzz"):
        assert heading in text
    assert "tiny-1" in text and "not the Flickr8k model" in text
    assert "None" not in text
