"""`python -m benchmarks.bulk`: `training caption` against `python -m bulk` on the same photos.

    python -m benchmarks.bulk --photos ../shared/flickr8k/Flicker8k_Dataset --limit 1000

Runs the three commands back to back (the caption command, Ray with one actor on every core,
Ray with one actor per core), each as its own process timed from start to exit, then compares
the rows image by image. Writes bulk.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe_machine, usable_cores
from benchmarks.markdown import table
from captioning.offline import IMAGE_SUFFIXES, read_rows

logger = logging.getLogger("benchmarks.bulk")


# The bulk command's last line: its own time, from Ray being up to the last row written.
_BULK_SUMMARY = re.compile(r"in ([\d.]+) s: ([\d.]+) images/s")
_STAGES = re.compile(r"actor seconds by stage: (\{.*\})")


def _timed(command: list[str], log: Path) -> tuple[float, float, float | None]:
    """(wall seconds from start to exit, load average afterwards, bulk's own seconds)."""
    logger.info("running %s (log: %s)", " ".join(command[:4]), log)
    started = time.perf_counter()
    with log.open("w") as handle:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=handle)
    seconds = time.perf_counter() - started
    text = log.read_text(errors="replace")
    found = _BULK_SUMMARY.findall(text)
    stages = _STAGES.findall(text)
    if stages:
        logger.info("actor seconds by stage: %s", stages[-1])
    return seconds, os.getloadavg()[0], float(found[-1][0]) if found else None


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    return {row["image"]: row for row in read_rows(path)}


def run(photos: Path, limit: int, work: Path, artifacts: Path) -> dict[str, Any]:
    images = sorted(p for p in photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    work.mkdir(parents=True, exist_ok=True)
    listing = work / "photos.txt"
    listing.write_text("".join(f"{p}\n" for p in images))
    python = sys.executable
    cores = usable_cores()
    runs = {
        "caption command": [
            python, "-m", "training", "caption", "--artifacts", str(artifacts),
            "--output", str(work / "caption.jsonl"), *map(str, images),
        ],
        "Ray, 1 actor": [
            python, "-m", "bulk", "--list", str(listing), "--artifacts",
            str(artifacts), "--output", str(work / "ray1.jsonl"), "--actors", "1",
            "--cpus-per-actor", str(cores),
        ],
        f"Ray, {cores} actors": [
            python, "-m", "bulk", "--list", str(listing), "--artifacts",
            str(artifacts), "--output", str(work / f"ray{cores}.jsonl"), "--actors", str(cores),
            "--cpus-per-actor", "1",
        ],
    }  # fmt: skip
    for name in runs:  # a rerun must caption everything again, not skip it
        output = Path(runs[name][runs[name].index("--output") + 1])
        output.unlink(missing_ok=True)
    results: dict[str, Any] = {"images": len(images), "machine": describe_machine(), "runs": {}}
    for number, (name, command) in enumerate(runs.items()):
        seconds, load, captioning_s = _timed(command, work / f"run{number}.log")
        results["runs"][name] = {
            "seconds": round(seconds, 1),
            "images_per_second": round(len(images) / seconds, 1),
            "captioning_seconds": captioning_s,  # bulk only: without Ray's start-up
            "load_after": round(load, 2),
            "command": " ".join(command[:8]) + " ...",
        }
    reference = _rows(work / "caption.jsonl")
    for name, command in list(runs.items())[1:]:
        rows = _rows(Path(command[command.index("--output") + 1]))
        same = sum(rows.get(image) == row for image, row in reference.items())
        results["runs"][name]["identical_rows"] = same
        results["runs"][name]["identical_captions"] = sum(
            rows.get(image, {}).get("caption") == row["caption"] for image, row in reference.items()
        )
    (work / "bulk.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def report(results: dict[str, Any]) -> str:
    header = [
        f"{results['images']} photos",
        "seconds (whole command)",
        "images/s",
        "seconds after Ray start",
        "identical rows",
        "identical captions",
    ]
    rows = [
        [
            name,
            run_["seconds"],
            run_["images_per_second"],
            run_["captioning_seconds"] or "-",
            run_.get("identical_rows", "-"),
            run_.get("identical_captions", "-"),
        ]
        for name, run_ in results["runs"].items()
    ]
    return "\n".join(table(header, rows, numeric=5)).rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bulk", description=__doc__)
    parser.add_argument("--photos", type=Path, default=Path("../shared/flickr8k/Flicker8k_Dataset"))
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--work", type=Path, default=Path("work/bulk"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(report(run(args.photos, args.limit, args.work, args.artifacts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
