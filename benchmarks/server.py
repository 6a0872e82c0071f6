"""End to end over HTTP: the real service in a uvicorn subprocess on 127.0.0.1, under load.

Measures the time from process start to `/ready` answering 200, latency and images/s at
several concurrency levels (JPEG uploads to `POST /caption`), the CPU time that server and
client spend per request (what bounds throughput once the cores are busy), and the peak
resident memory (VmHWM) of the server process and its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.images import PHOTO_SIZE, jpeg_set
from benchmarks.machine import usable_cores
from benchmarks.stats import median, percentile, summarize

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never anything else: the benchmark talks to its own server only
REPO_ROOT = Path(__file__).resolve().parent.parent
APP_MODULE = "app.main:app"
CONCURRENCY_LEVELS = (1, 4, 8, 16)
BEAM_SIZE = 3
UPLOAD_IMAGES = 8  # distinct JPEGs, sent in turn
READY_TIMEOUT_S = 180.0
READY_POLL_S = 0.05
REQUEST_TIMEOUT_S = 60.0
GRACEFUL_SHUTDOWN_S = 30  # as the Dockerfile's CMD
LOG_TAIL_CHARS = 3000


@dataclass(frozen=True)
class LoadPlan:
    requests_per_level: dict[int, int]  # timed requests per run, by concurrency
    repeats: int  # runs per concurrency level
    max_seconds_per_run: float  # a run stops early (with what it has) after this long
    server_starts: int  # the ready time is measured this many times


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid`, from the parent ids in /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def status_kib(pid: int, field: str) -> int:
    """A `kB` field (VmHWM, VmRSS) of /proc/<pid>/status; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM (peak resident memory) over the process and its children, in MB (10^6 B)."""
    return sum(status_kib(p, "VmHWM") for p in [pid, *children_of(pid)]) * 1024 / 1e6


def rss_mb(pid: int) -> float:
    """Sum of VmRSS (resident memory now) over the process and its children, in MB."""
    return sum(status_kib(p, "VmRSS") for p in [pid, *children_of(pid)]) * 1024 / 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) and its children so far; 0 for
    a process that is gone."""
    total = 0
    for process in [pid, *children_of(pid)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User + system CPU time of this (the client's) process so far."""
    times = os.times()
    return times.user + times.system


class ServerProcess:
    """`python -m uvicorn app.main:app` in a subprocess on 127.0.0.1, its output in `log_path`.

    The one server wrapper of both harnesses (`make bench` and `make reliability`).
    """

    def __init__(
        self, artifacts: Path, log_path: Path, settings: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        env = dict(os.environ)
        env.update(
            CAPTIONER_ARTIFACTS_DIR=str(Path(artifacts).resolve()),
            CAPTIONER_HOST=HOST,
            CAPTIONER_PORT=str(self.port),
            CAPTIONER_LOG_LEVEL="WARNING",
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        env.update(
            {f"CAPTIONER_{key.upper()}": str(value) for key, value in (settings or {}).items()}
        )
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            APP_MODULE,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--no-access-log",  # as `captioner-serve`: the app logs requests itself
            "--timeout-graceful-shutdown",
            str(GRACEFUL_SHUTDOWN_S),
        ]
        self._log = log_path.open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        return self.log_text()[-LOG_TAIL_CHARS:]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Seconds from process start until GET /ready answered 200."""
        deadline = self.started + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with {self.process.returncode} before it was "
                        f"ready; its log:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/ready").status_code == 200:
                        return time.perf_counter() - self.started
                time.sleep(READY_POLL_S)
        raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def stop(self, timeout_s: float = GRACEFUL_SHUTDOWN_S + 15) -> int:
        """SIGTERM (as `docker stop`), SIGKILL if it hangs; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("the server ignored SIGTERM; killing it")
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@contextlib.contextmanager
def running_server(artifacts: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """A started server (not yet ready: the benchmark times its start-up itself)."""
    server = ServerProcess(artifacts, log_dir / f"server-{time.time_ns()}.log")
    try:
        yield server
    finally:
        server.stop()


async def _post(client: httpx.AsyncClient, image: bytes) -> httpx.Response:
    return await client.post(
        "/caption",
        files={"file": ("photo.jpg", image, "image/jpeg")},
        data={"beam_size": str(BEAM_SIZE)},
    )


async def load_run(
    base_url: str,
    images: list[bytes],
    concurrency: int,
    requests: int,
    max_seconds: float,
    server_cpu_seconds: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """`concurrency` clients post `requests` images in total (after one untimed round).

    With `server_cpu_seconds` (the server's CPU time so far), the timed part's CPU time of
    server and client (this process) is measured too."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:
        await asyncio.gather(*(_post(client, images[i % len(images)]) for i in range(concurrency)))
        latencies: list[float] = []
        server_ms: list[dict[str, float]] = []  # the server's own timings_ms per request
        errors: dict[str, int] = {}
        issued = 0
        cpu_before = (server_cpu_seconds() if server_cpu_seconds else 0.0), own_cpu_seconds()
        started = time.perf_counter()
        deadline = started + max_seconds

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                image = images[issued % len(images)]
                issued += 1
                sent = time.perf_counter()
                try:
                    response = await _post(client, image)
                    status = str(response.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if status == "200":
                    latencies.append((time.perf_counter() - sent) * 1000.0)
                    server_ms.append(response.json().get("timings_ms", {}))
                else:
                    errors[status] = errors.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu: dict[str, float] = {}
        if server_cpu_seconds is not None:
            cpu["server_cpu_s"] = server_cpu_seconds() - cpu_before[0]
            cpu["client_cpu_s"] = own_cpu_seconds() - cpu_before[1]
    return {
        **cpu,
        "seconds": elapsed,
        "ok": len(latencies),
        "errors": errors,
        "images_per_s": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "latencies_ms": latencies,
        "server_ms": server_ms,
    }


def sample_caption(base_url: str, image: bytes) -> str:
    """The caption of one upload, to show in the log that the service really captions."""
    response = httpx.post(
        f"{base_url}/caption",
        files={"file": ("photo.jpg", image, "image/jpeg")},
        data={"beam_size": str(BEAM_SIZE)},
        timeout=REQUEST_TIMEOUT_S,
    )
    response.raise_for_status()
    body = response.json()
    captions = body.get("captions") or [{}]
    return str(captions[0].get("text", body))


def summarize_level(runs: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """Median images/s over the runs; latency percentiles over all their requests; CPU time
    per answered request and the share of the `cores` that server and client kept busy."""
    latencies = [value for run in runs for value in run["latencies_ms"]]
    errors: dict[str, int] = {}
    for run in runs:
        for status, count in run["errors"].items():
            errors[status] = errors.get(status, 0) + count
    level: dict[str, Any] = {
        "images_per_s": median([run["images_per_s"] for run in runs]),
        "images_per_s_runs": [round(run["images_per_s"], 3) for run in runs],
        "requests": sum(run["ok"] for run in runs),
        "errors": errors,
    }
    answered = level["requests"]
    if answered and all("server_cpu_s" in run for run in runs):
        server_cpu = sum(run["server_cpu_s"] for run in runs)
        client_cpu = sum(run["client_cpu_s"] for run in runs)
        level.update(
            server_cpu_ms_per_request=1000 * server_cpu / answered,
            client_cpu_ms_per_request=1000 * client_cpu / answered,
            cores_busy=(server_cpu + client_cpu) / (sum(run["seconds"] for run in runs) * cores),
        )
    if latencies:
        level.update(
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            latency_ms=summarize(latencies),
        )
    # Where a request's time goes on the server (median per stage): the rest of the latency
    # is HTTP, multipart parsing and the client.
    stages: dict[str, list[float]] = {}
    for run in runs:
        for timings in run.get("server_ms", []):
            for stage, value in timings.items():
                stages.setdefault(stage, []).append(float(value))
    if stages:
        level["server_median_ms"] = {stage: median(values) for stage, values in stages.items()}
    return level


def bench_http(artifacts: Path, plan: LoadPlan) -> dict[str, Any]:
    """Start the server `plan.server_starts` times (ready time); load the last one."""
    images = jpeg_set(UPLOAD_IMAGES)
    ready_s: list[float] = []
    results: dict[str, Any] = {
        "host": HOST,
        "beam_size": BEAM_SIZE,
        "upload_bytes_mean": sum(map(len, images)) / len(images),
        "upload_size": "x".join(map(str, PHOTO_SIZE)),
        "concurrency": {},
    }
    with tempfile.TemporaryDirectory(prefix="captioner-bench-") as log_dir:
        for start in range(plan.server_starts):
            with running_server(artifacts, Path(log_dir)) as server:
                ready_s.append(server.wait_ready())
                logger.info("server %d ready in %.2f s", start + 1, ready_s[-1])
                if start < plan.server_starts - 1:
                    continue
                results["peak_rss_at_ready_mb"] = server.peak_rss_mb()
                results["sample_caption"] = sample_caption(server.base_url, images[0])
                logger.info("sample caption: %r", results["sample_caption"])
                runs: dict[int, list[dict[str, Any]]] = {c: [] for c in CONCURRENCY_LEVELS}
                for _ in range(plan.repeats):  # levels interleaved, as the micro-benchmarks
                    for concurrency in CONCURRENCY_LEVELS:
                        run = asyncio.run(
                            load_run(
                                server.base_url,
                                images,
                                concurrency,
                                plan.requests_per_level[concurrency],
                                plan.max_seconds_per_run,
                                server.cpu_seconds,
                            )
                        )
                        runs[concurrency].append(run)
                        logger.info(
                            "concurrency %d: %.2f images/s, %d ok, errors %s",
                            concurrency,
                            run["images_per_s"],
                            run["ok"],
                            run["errors"] or "none",
                        )
                for concurrency, level_runs in runs.items():
                    results["concurrency"][str(concurrency)] = summarize_level(
                        level_runs, usable_cores()
                    )
                results["peak_rss_mb"] = server.peak_rss_mb()
                results["rss_after_load_mb"] = server.rss_mb()
    results["ready_s"] = summarize(ready_s)
    return results
