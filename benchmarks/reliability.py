"""`python -m benchmarks.reliability` (`make reliability`): the long reliability checks.

    python -m benchmarks.reliability                      # everything, under ~10 minutes
    python -m benchmarks.reliability --quick              # a smoke run of every part
    python -m benchmarks.reliability --parts load,faults  # only some parts

Parts: `contract` (Schemathesis on every route, the real model), `images` (mutated image files
into decode_image and the upload route), `load` (concurrency 32 for 2 minutes on a real server,
then overload against a tiny queue), `faults` (SIGTERM under load; SIGKILL of training and
resume), `security` (tests/reliability/test_security.py). The model is --artifacts, else
$CAPTIONER_ARTIFACTS_DIR, else artifacts/ if it holds a model, else the test suite's tiny model,
trained on the spot. Writes docs/reliability.md; exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cli import split_parts
from benchmarks.images import jpeg_set
from benchmarks.load import client_headers
from benchmarks.machine import describe_machine
from benchmarks.reliability_server import (
    CLEAN_SIGTERM_EXITS,
    rss_growth_mb,
    run_load,
    sigterm_under_load,
)
from benchmarks.server_process import REPO_ROOT, running_server

logger = logging.getLogger("benchmarks.reliability")

PARTS = ("load", "faults", "contract", "images", "security")  # in the order they run
DEFAULT_OUTPUT = Path("docs/reliability.md")
MAX_RSS_GROWTH_MB = 100.0  # over the measured load run, after the warm-up
MAX_DECODE_S = 2.0
MAX_DECODE_PEAK_MB = 256.0


@dataclass(frozen=True)
class Plan:
    concurrency: int
    warmup_s: float
    load_s: float
    overload_queue: int
    overload_s: float
    sigterm_in_flight: int
    contract_examples: int  # per operation and generation mode
    decode_examples: int
    route_examples: int


FULL = Plan(
    concurrency=32,
    warmup_s=20.0,
    load_s=120.0,
    overload_queue=4,
    overload_s=20.0,
    sigterm_in_flight=24,
    contract_examples=400,
    decode_examples=8000,
    route_examples=600,
)
# The same checks with seconds of load and few examples: a smoke run.
QUICK = dataclasses.replace(
    FULL,
    warmup_s=3.0,
    load_s=8.0,
    overload_s=5.0,
    sigterm_in_flight=8,
    contract_examples=10,
    decode_examples=100,
    route_examples=20,
)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


class Run:
    def __init__(self, plan: Plan, artifacts: Path, model_note: str, work: Path) -> None:
        self.plan = plan
        self.artifacts = artifacts
        self.model_note = model_note
        self.work = work
        self.results: dict[str, Any] = {}
        self.checks: list[Check] = []

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append(Check(name, bool(passed), detail))
        logger.log(logging.INFO if passed else logging.ERROR, "%s: %s (%s)", name, passed, detail)

    def part(self, name: str, function: Callable[[], None]) -> None:
        logger.info("--- %s ---", name)
        started = time.perf_counter()
        try:
            function()
        except Exception as exc:  # one broken part must not hide the others' figures
            logger.exception("part %s failed", name)
            last_line = (str(exc).strip().splitlines() or [""])[-1][:300]
            self.check(f"{name}: ran to the end", False, f"{type(exc).__name__}: {last_line}")
        self.results.setdefault(name, {})["part_seconds"] = round(time.perf_counter() - started, 1)

    # --- load ---------------------------------------------------------------------------------
    def load(self) -> None:
        from app.config import Settings

        plan = self.plan
        images = jpeg_set(8)
        with running_server(self.artifacts, self.work) as server:
            if client_headers():
                self._check_keys(server.base_url)
            asyncio.run(run_load(server.base_url, images, plan.concurrency, plan.warmup_s))
            result = asyncio.run(
                run_load(server.base_url, images, plan.concurrency, plan.load_s, server.process.pid)
            )
        summary = result.summary()
        growth = rss_growth_mb(result.rss_samples_mb)
        summary["rss_growth_mb"] = round(growth, 1)
        # Every 5th one-second sample: enough to see whether growth levels off.
        summary["rss_series_mb"] = [round(mb) for _, mb in result.rss_samples_mb[::5]]
        values = [mb for _, mb in result.rss_samples_mb]
        summary["rss_last_30s_growth_mb"] = (
            round(values[-1] - values[-31], 1) if len(values) > 31 else None
        )
        summary["queue_bound"] = Settings.model_fields["max_queue_size"].default
        self.results["load"] = summary
        self.check(
            "load: no failed request below the queue bound",
            result.failed == 0 and result.requests > 0,
            f"{result.requests} requests at concurrency {plan.concurrency} for "
            f"{plan.load_s:.0f} s, statuses {dict(result.statuses)}",
        )
        self.check(
            "load: memory flat",
            growth < MAX_RSS_GROWTH_MB,
            f"RSS growth {growth:.1f} MB (median of last third minus first third; "
            f"bound {MAX_RSS_GROWTH_MB:.0f} MB)",
        )

        # A /captions request must fit the queue whole, so its file limit shrinks with it.
        settings = {
            "max_queue_size": str(plan.overload_queue),
            "max_images_per_request": str(plan.overload_queue),
        }
        with running_server(self.artifacts, self.work, settings) as server:
            over = asyncio.run(run_load(server.base_url, images, plan.concurrency, plan.overload_s))
            after = asyncio.run(run_load(server.base_url, images, 2, 2.0))
        self.results["overload"] = over.summary() | {"queue_bound": plan.overload_queue}
        self.check(
            "overload: surplus refused with 503 + Retry-After, nothing else",
            set(over.statuses) <= {"200", "503"}
            and over.statuses["503"] > 0
            and over.overloaded_without_retry_after == 0,
            f"statuses {dict(over.statuses)} at concurrency {plan.concurrency}, queue bound "
            f"{plan.overload_queue}; 503 without Retry-After: "
            f"{over.overloaded_without_retry_after}",
        )
        self.check(
            "overload: healthy afterwards",
            after.failed == 0 and after.requests > 0,
            f"statuses {dict(after.statuses)}",
        )

    def _check_keys(self, base_url: str) -> None:
        import httpx

        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            statuses = {
                "no key": client.get("/model").status_code,
                "wrong key": client.get("/model", headers={"X-API-Key": "wrong"}).status_code,
                "the key": client.get("/model", headers=client_headers()).status_code,
                "/ready without": client.get("/ready").status_code,
            }
        self.check(
            "api keys: refused without the key, served with it, probes open",
            statuses == {"no key": 401, "wrong key": 401, "the key": 200, "/ready without": 200},
            f"statuses {statuses}",
        )

    # --- faults -------------------------------------------------------------------------------
    def faults(self) -> None:
        from benchmarks.reliability_training import kill_mid_epoch_and_resume

        images = jpeg_set(4)
        with running_server(self.artifacts, self.work, {"max_batch_size": "1"}) as server:
            result = asyncio.run(
                sigterm_under_load(server, images, self.plan.sigterm_in_flight, late_requests=5)
            )
        self.results["sigterm"] = result.summary()
        self.check(
            "SIGTERM: in-flight requests complete",
            result.in_flight == {"200": self.plan.sigterm_in_flight},
            f"in flight: {dict(result.in_flight)}",
        )
        self.check(
            "SIGTERM: new requests refused cleanly",
            set(result.after) <= {"ConnectError", "503"},
            f"after the signal: {dict(result.after)}",
        )
        self.check(
            "SIGTERM: graceful exit",
            result.shutdown_complete and result.exit_code in CLEAN_SIGTERM_EXITS,
            f"exit status {result.exit_code} after {result.seconds_to_exit:.2f} s, "
            f"shutdown complete logged: {result.shutdown_complete}",
        )

        resume = kill_mid_epoch_and_resume(self.work / "training")
        self.results["training_kill_resume"] = resume.summary()
        self.check(
            "training: SIGKILL mid-epoch then --resume loses no finished epoch",
            not resume.problems(),
            f"killed after epoch {resume.finished_before_kill}, resumed: epochs "
            f"{[r['epoch'] for r in resume.final_history]}; "
            f"problems: {resume.problems() or 'none'}",
        )

    # --- contract -----------------------------------------------------------------------------
    def _app(self) -> Any:
        from app.config import Settings
        from app.main import create_app

        settings = Settings(_env_file=None, artifacts_dir=self.artifacts)  # type: ignore[call-arg]
        return create_app(settings)

    def contract(self) -> None:
        from benchmarks.reliability_contract import run_contract

        stats = run_contract(self._app(), self.plan.contract_examples, client_headers())
        self.results["contract"] = stats.summary() | {
            "examples_per_operation_and_mode": self.plan.contract_examples
        }
        five_hundreds = sum(
            count for key, count in stats.requests.items() if int(key.rsplit(" ", 1)[1]) >= 500
        )
        self.check(
            "contract: no 5xx, every answer as documented",
            not stats.failures and five_hundreds == 0,
            f"{sum(stats.requests.values())} requests, {len(stats.failures)} violations",
        )

    # --- images -------------------------------------------------------------------------------
    def images(self) -> None:
        from fastapi.testclient import TestClient
        from hypothesis import HealthCheck, given, settings

        from benchmarks.reliability_images import (
            IMAGE_ERROR_CODES,
            DecodeStats,
            decode_and_record,
            mutated_images,
        )

        stats = DecodeStats()
        unexpected: list[str] = []
        common = settings(
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )

        @settings(common, max_examples=self.plan.decode_examples)
        @given(sample=mutated_images())
        def decode(sample: tuple[str, bytes]) -> None:
            decode_and_record(stats, *sample)

        try:
            decode()
        except Exception as exc:  # Hypothesis re-raises the smallest failing example
            unexpected.append(f"decode_image: {type(exc).__name__}: {exc}")
        summary = stats.summary()
        self.results["decode"] = summary
        self.check(
            "images: decode_image raises only documented ImageError codes",
            not unexpected,
            f"{stats.examples} mutated files, outcomes {summary['outcomes']}",
        )
        self.check(
            "images: decode time bounded",
            stats.max_seconds < MAX_DECODE_S,
            f"max {summary['max_decode_ms']} ms ({summary['slowest']}); bound {MAX_DECODE_S} s",
        )
        if stats.peak_measured:
            self.check(
                "images: memory bounded",
                stats.peak_growth_mb < MAX_DECODE_PEAK_MB,
                f"peak RSS {summary['peak_growth_mb']} MB above the start with max_pixels "
                f"{summary['max_pixels']:,}; bound {MAX_DECODE_PEAK_MB:.0f} MB",
            )

        statuses: dict[str, int] = {}
        with TestClient(self._app(), headers=client_headers()) as client:

            @settings(common, max_examples=self.plan.route_examples)
            @given(sample=mutated_images())
            def upload(sample: tuple[str, bytes]) -> None:
                response = client.post("/caption", files={"file": ("x.bin", sample[1])})
                key = str(response.status_code)
                if response.status_code != 200:
                    key += " " + response.json()["error"]["code"]
                statuses[key] = statuses.get(key, 0) + 1
                allowed = response.status_code in (413, 415, 422) and key.split()[1] in (
                    IMAGE_ERROR_CODES
                )
                assert response.status_code == 200 or allowed, response.text

            try:
                upload()
            except Exception as exc:
                unexpected.append(f"upload route: {type(exc).__name__}: {exc}")
        self.results["upload_route"] = {"requests": sum(statuses.values()), "statuses": statuses}
        self.check(
            "images: upload route answers 200 or a documented image error",
            not any(u.startswith("upload") for u in unexpected),
            f"{sum(statuses.values())} uploads: {dict(sorted(statuses.items()))}",
        )
        self.results["images_unexpected"] = unexpected

    # --- security -----------------------------------------------------------------------------
    def security(self) -> None:
        command = [
            sys.executable,
            "-m",
            "pytest",
            "tests/reliability/test_security.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        # Those tests build their own apps and settings; a key from this run would refuse them.
        env = {k: v for k, v in os.environ.items() if k != "CAPTIONER_API_KEYS"}
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
        self.results["security"] = {"pytest": last, "exit_code": done.returncode}
        self.check("security: tests/reliability/test_security.py", done.returncode == 0, last)


def resolve_artifacts(given: Path | None, work: Path) -> tuple[Path, str]:
    if given is not None:
        return given, f"`{given}` (given with --artifacts)"
    if os.environ.get("CAPTIONER_ARTIFACTS_DIR"):
        path = Path(os.environ["CAPTIONER_ARTIFACTS_DIR"])
        return path, f"`{path}` (from CAPTIONER_ARTIFACTS_DIR)"
    if (REPO_ROOT / "artifacts" / "manifest.json").is_file():
        return REPO_ROOT / "artifacts", "`artifacts/` (the project's model)"
    from benchmarks.reliability_training import build_tiny_model

    logger.info("no model found: training the test suite's tiny model (about a minute)")
    return build_tiny_model(work / "tiny"), "the test suite's tiny model, trained for this run"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__)
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quick", action="store_true", help="few examples, seconds of load")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS)
    )
    parser.add_argument(
        "--no-api-key",
        action="store_true",
        help="run the servers open; by default they get a random CAPTIONER_API_KEYS and every "
        "client sends it (a key already in the environment is used as it is)",
    )
    args = parser.parse_args(argv)
    args.parts = split_parts(parser, args.parts, PARTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.no_api_key and not os.environ.get("CAPTIONER_API_KEYS"):
        # Inherited by every server this run starts and read by the in-process apps' Settings.
        os.environ["CAPTIONER_API_KEYS"] = secrets.token_urlsafe(24)
    logger.info("API keys: %s", "on" if client_headers() else "off")
    machine = describe_machine()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="captioner-reliability-") as temporary:
        work = Path(temporary)
        artifacts, model_note = resolve_artifacts(args.artifacts, work)
        manifest = json.loads((artifacts / "manifest.json").read_text())
        run = Run(QUICK if args.quick else FULL, artifacts, model_note, work)
        for name in PARTS:
            if name in args.parts:
                run.part(name, getattr(run, name))
    seconds = time.perf_counter() - started
    from benchmarks.reliability_report import render

    text = render(run, machine, manifest, args, seconds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    failed = [c.name for c in run.checks if not c.passed]
    logger.info(
        "wrote %s in %.0f s; %d checks, %d failed",
        args.output,
        seconds,
        len(run.checks),
        len(failed),
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
