"""What the benchmark ran on: CPU, cores, memory, library versions and the date."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform

from benchmarks.procfs import MEMINFO, PROC, kib_field

CPUINFO = PROC / "cpuinfo"
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
PACKAGES = (
    "captioner",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "numpy",
    "ai-edge-litert",
    "fastapi",
    "uvicorn",
    "httpx",
    "pillow",
)


def cpu_model(cpuinfo: str | None = None) -> str:
    """The first `model name` line of /proc/cpuinfo (or of the text given)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return platform.processor() or "unknown"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    kib = kib_field(MEMINFO, "MemTotal")
    return round(kib / 1024**2, 1) if kib else None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def describe_machine() -> dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "thread_env": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
    }
