"""`python -m benchmarks`: encoder, decoder, HTTP service and seed-style baseline, one run.

    python -m benchmarks                       # full run (under 10 minutes on 2 cores)
    python -m benchmarks --quick --output /tmp/bench   # smoke test: few repeats
    python -m benchmarks --parts encoder,decoder       # only some parts

Writes results.json, results.md and latency_throughput.png to --output (docs/benchmarks).
The HTTP part runs first, while this process has not loaded TensorFlow yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The encoder and baseline parts load TensorFlow in this process (the served model does not).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.cli import split_parts
from benchmarks.machine import describe_machine
from benchmarks.report import write_reports
from benchmarks.server import CONCURRENCY_LEVELS, LoadPlan

logger = logging.getLogger("benchmarks")

PARTS = ("http", "encoder", "decoder", "baseline")  # in the order they run
DECODER_IMAGES = 16
DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_OUTPUT = Path("docs/benchmarks")


@dataclass(frozen=True)
class Plan:
    repeats: int
    encoder_calls: dict[int, int]  # timed calls per repeat, by batch size
    decoder_repeats: int
    decoder_calls: dict[int, int]
    baseline_captions: int
    load: LoadPlan


FULL = Plan(
    repeats=5,
    encoder_calls={1: 20, 8: 4},
    decoder_repeats=3,
    decoder_calls={1: DECODER_IMAGES, 16: 3},
    baseline_captions=5,
    load=LoadPlan(
        requests_per_level={1: 30, 4: 48, 8: 64, 16: 96},
        repeats=3,
        max_seconds_per_run=20.0,
        server_starts=3,
    ),
)
# Every part once, with few calls: a smoke test.
QUICK = dataclasses.replace(
    FULL,
    repeats=1,
    encoder_calls={1: 5, 8: 1},
    decoder_repeats=1,
    decoder_calls={1: DECODER_IMAGES, 16: 1},
    baseline_captions=1,
    load=dataclasses.replace(
        FULL.load,
        requests_per_level={1: 8, 4: 12, 8: 16, 16: 32},
        repeats=1,
        max_seconds_per_run=10.0,
        server_starts=1,
    ),
)
assert set(FULL.load.requests_per_level) == set(CONCURRENCY_LEVELS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke test")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    args.parts = split_parts(parser, args.parts, PARTS)
    return args


def model_summary(artifacts: Path) -> dict[str, Any]:
    """What the manifest says, read without importing TensorFlow."""
    try:
        manifest = json.loads((artifacts / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{artifacts} is not a Captioner artifacts folder: {exc}") from exc
    return {
        "artifacts": str(artifacts),
        "model_id": manifest.get("model_id"),
        "backbone": manifest.get("encoder", {}).get("backbone"),
        "vocab_size": manifest.get("vocabulary", {}).get("size"),
        "max_length": manifest.get("decoder", {}).get("max_length"),
        "files": sorted(manifest.get("files", {})),
    }


class Runner:
    """Runs the parts in order; a failing part is recorded and the others still run."""

    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.results: dict[str, Any] = {}
        self.failed: list[str] = []
        self._model: Any = None

    def model(self) -> Any:
        if self._model is None:
            from benchmarks.encoder import load_model

            logger.info("loading %s", self.args.artifacts)
            self._model = load_model(self.args.artifacts)
        return self._model

    def run(self, name: str, part: Callable[[], dict[str, Any]]) -> None:
        if name not in self.args.parts:
            return
        logger.info("--- %s ---", name)
        started = time.perf_counter()
        try:
            self.results[name] = part()
        except Exception as exc:
            logger.exception("%s failed", name)
            self.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            self.failed.append(name)
        logger.info("%s took %.0f s", name, time.perf_counter() - started)

    def http(self) -> dict[str, Any]:
        from benchmarks.server import bench_http
        from benchmarks.server_process import REPO_ROOT

        if not (REPO_ROOT / "app" / "main.py").is_file():
            raise RuntimeError("app/main.py does not exist yet")
        return bench_http(self.args.artifacts, self.plan.load)

    def encoder(self) -> dict[str, Any]:
        from benchmarks.encoder import ENCODER_BATCHES, bench_encoders, model_pixels

        pixels = model_pixels(self.model(), max(ENCODER_BATCHES))
        return bench_encoders(self.model(), pixels, self.plan.repeats, self.plan.encoder_calls)

    def decoder(self) -> dict[str, Any]:
        from benchmarks.decoder import bench_decoder
        from benchmarks.encoder import model_pixels

        pixels = model_pixels(self.model(), DECODER_IMAGES)
        return bench_decoder(
            self.model(), pixels, self.plan.decoder_repeats, self.plan.decoder_calls
        )

    def baseline(self) -> dict[str, Any]:
        from benchmarks.baseline import BASELINE_MAX_LENGTH, bench_baseline

        vocab_size = self.results.get("meta", {}).get("model", {}).get("vocab_size")
        mean_words = self.results.get("decoder", {}).get("beam_3", {}).get("mean_words")
        if mean_words is None:
            logger.warning("no beam-3 caption length measured: the baseline runs full length")
            matched, why = BASELINE_MAX_LENGTH, "full length (no caption length measured)"
        else:
            matched = round(mean_words) + 1
            why = f"our beam-3 mean caption ({mean_words:.1f} words) + `endseq`"
        return bench_baseline(int(vocab_size), matched, self.plan.baseline_captions, why)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    runner = Runner(args, plan)
    runner.results["meta"] = {
        "machine": describe_machine(),
        "model": model_summary(args.artifacts),
        "quick": args.quick,
        "repeats": plan.repeats,
        "parts": args.parts,
        "plan": {
            "encoder_calls": plan.encoder_calls,
            "decoder_calls": plan.decoder_calls,
            "decoder_repeats": plan.decoder_repeats,
            "baseline_captions": plan.baseline_captions,
            "http": vars(plan.load),
        },
    }
    machine = runner.results["meta"]["machine"]
    logger.info("%s, %s cores, %s", machine["cpu_model"], machine["usable_cores"], machine["date"])
    for name in PARTS:
        runner.run(name, getattr(runner, name))
    runner.results["meta"]["seconds"] = time.perf_counter() - started
    markdown = write_reports(runner.results, args.output)
    print(markdown)
    if runner.failed:
        logger.error("failed parts: %s", ", ".join(runner.failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
