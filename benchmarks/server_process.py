"""The real service in a subprocess on 127.0.0.1: the one server runner of `make bench`,
`make reliability` and the tests that need a real server.

It starts exactly as the container starts it (`uvicorn app.main:app` with a graceful shutdown
timeout), on a free port, with `CAPTIONER_*` settings from the caller, and output in a log file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from benchmarks import procfs

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never anything else: the harnesses talk to their own servers only
REPO_ROOT = Path(__file__).resolve().parent.parent
APP_MODULE = "app.main:app"
READY_TIMEOUT_S = 240.0  # the model's load and self-test on a busy 2-core machine
READY_POLL_S = 0.05
GRACEFUL_SHUTDOWN_S = 30  # as the Dockerfile's CMD
LOG_TAIL_CHARS = 3000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`python -m uvicorn app.main:app` in a subprocess on 127.0.0.1, its output in `log_path`."""

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
            "--no-access-log",  # as `captioner serve`: the app logs requests itself
            "--timeout-graceful-shutdown",
            str(GRACEFUL_SHUTDOWN_S),
        ]
        self._log = log_path.open("wb")
        self.started = time.perf_counter()
        self.ready_s: float | None = None  # seconds from start to ready, once it is
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
                        self.ready_s = time.perf_counter() - self.started
                        return self.ready_s
                time.sleep(READY_POLL_S)
        raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def peak_rss_mb(self) -> float:
        return procfs.peak_rss_mb(self.process.pid)

    def cpu_seconds(self) -> float:
        return procfs.cpu_seconds(self.process.pid)

    def rss_mb(self) -> float:
        return procfs.rss_mb(self.process.pid)

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
def running_server(
    artifacts: Path, log_dir: Path, settings: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A server that is ready (its start-up time in `ready_s`), stopped on the way out."""
    server = ServerProcess(artifacts, log_dir / f"server-{time.time_ns()}.log", settings)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
