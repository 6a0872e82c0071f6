"""What Linux's /proc says about processes and the machine: the one reader of `make bench` and
`make reliability`. A process that is gone reads as 0, not as an error: servers exit mid-run."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
MEMINFO = PROC / "meminfo"


def kib_field(path: Path, name: str) -> int:
    """The number of a `Name:  123 kB` line (/proc/<pid>/status, /proc/meminfo); 0 when the
    file or the line is not there."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def status_kib(pid: int | str, name: str) -> int:
    """A `kB` field (VmHWM, VmRSS) of /proc/<pid>/status; pid "self" is this process."""
    return kib_field(PROC / str(pid) / "status", name)


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after the command name, which may hold spaces and parentheses (so the
    fields start after the last ')'): state, parent id, ...; empty for a process that is gone."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid`, from the parent ids in /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)):
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _tree_kib(pid: int, name: str) -> int:
    return sum(status_kib(process, name) for process in [pid, *children_of(pid)])


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM (peak resident memory) over the process and its children, in MB (10^6 B)."""
    return _tree_kib(pid, "VmHWM") * 1024 / 1e6


def rss_mb(pid: int) -> float:
    """Sum of VmRSS (resident memory now) over the process and its children, in MB."""
    return _tree_kib(pid, "VmRSS") * 1024 / 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) and its children so far; 0 for
    a process that is gone."""
    ticks = 0
    for process in [pid, *children_of(pid)]:
        fields = _stat_fields(process)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux); False where the kernel does not allow it."""
    try:
        (PROC / "self" / "clear_refs").write_text("5")
    except OSError:
        return False
    return True
