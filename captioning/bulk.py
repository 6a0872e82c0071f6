"""Bulk captioning on Ray Data: `python -m captioning.bulk PHOTOS... --output captions.jsonl`.

The driver lists the images (folders, globs, list files; local paths or any URI pyarrow reads,
such as s3://bucket/photos/), leaves out those already in the output, and streams the rest
through a pool of actors that each load `CaptionPredictor` once and caption batches exactly as
`python -m training caption` does (same reading, decoding and rows). The driver writes the rows
as they arrive, so a rerun after a crash or Ctrl-C carries on where the last one stopped.

`ray.init()` starts a local Ray, or joins the cluster in `RAY_ADDRESS`: nothing else changes.
Ray is the optional `bulk` extra (`pip install -e '.[bulk]'`); serving never imports it.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

from captioning.images import ImageError, decode_image
from captioning.offline import (
    BATCH_SIZE,
    IMAGE_SUFFIXES,
    caption_batch,
    caption_row,
    expand_paths,
    format_row,
    read_rows,
)
from captioning.predictor import CaptionPredictor
from captioning.runtime import RuntimeOptions

logger = logging.getLogger("captioning.bulk")

OutputFormat = Literal["jsonl", "parquet"]
PARQUET_ROWS_PER_FILE = 10_000
PROGRESS_EVERY_S = 10.0
# What an actor spends a batch on: reading + decoding files, resizing, the encoder, the decoder.
STAGES = ("read", "preprocess", "encode", "generate")
_GLOB_CHARACTERS = frozenset("*?[")


class BulkError(Exception):
    """A problem with the command's inputs or environment, reported without a traceback."""


@dataclass(frozen=True)
class ImageRef:
    """`image`: the name written in the rows (as given, like `training caption`); `location`:
    what a worker opens (an absolute path, or the URI), valid whatever its working folder."""

    image: str
    location: str


@dataclass(frozen=True)
class BulkSummary:
    listed: int  # images found in the inputs
    skipped: int  # already in the output from an earlier run
    captioned: int  # rows written by this run, error rows included
    errors: int  # of which unreadable or undecodable files
    seconds: float  # from Ray being up to the last row written
    actor_seconds: dict[str, float]  # per stage, summed over the actors

    @property
    def images_per_second(self) -> float:
        return self.captioned / self.seconds if self.seconds else 0.0


def import_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # the extra must bring Ray Data, not only the core
    except ImportError as exc:
        raise BulkError(
            "bulk captioning needs Ray Data, the optional 'bulk' extra: "
            "pip install -e '.[bulk]' (or pip install 'ray[data]')"
        ) from exc
    return ray


def _is_uri(text: str) -> bool:
    return "://" in text


def list_images(inputs: Iterable[str]) -> list[ImageRef]:
    """Images in the inputs (files, folders searched recursively, globs, URIs), each once."""
    refs: list[ImageRef] = []
    for item in inputs:
        if _is_uri(item):
            refs += _list_uri(item)
            continue
        if _GLOB_CHARACTERS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise BulkError(f"no file matches {item}")
            paths = expand_paths(Path(m) for m in matches)
        else:
            paths = expand_paths([Path(item)])
        refs += [ImageRef(str(p), str(p.resolve())) for p in paths]
    return list({ref.image: ref for ref in refs}.values())


def _list_uri(uri: str) -> list[ImageRef]:
    from pyarrow import fs  # Ray Data depends on pyarrow

    filesystem, path = fs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [ImageRef(uri, uri)]
    if info.type != fs.FileType.Directory:
        raise BulkError(f"{uri} does not exist")
    found = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
    names = sorted(
        f.path
        for f in found
        if f.type == fs.FileType.File and Path(f.path).suffix.lower() in IMAGE_SUFFIXES
    )
    # Local paths come back absolute ("/x"), bucket paths without the slash ("bucket/x").
    return [ImageRef(f"{scheme}://{name}", f"{scheme}://{name}") for name in names]


def read_list_file(path: Path) -> list[str]:
    """A file of images or folders, one per line; blank lines and # comments left out."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class RowWriter(Protocol):
    def written_images(self) -> set[str]: ...
    def write(self, rows: Sequence[str]) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    """One JSON lines file, appended to: a rerun adds the rows the last run did not write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_last_line(path)
        self._handle = path.open("a", encoding="utf-8")

    def written_images(self) -> set[str]:
        return {row["image"] for row in read_rows(self.path) if "image" in row}

    def write(self, rows: Sequence[str]) -> None:
        self._handle.write("".join(row + "\n" for row in rows))
        self._handle.flush()  # what is written survives a crash of the run

    def close(self) -> None:
        self._handle.close()


def _drop_partial_last_line(path: Path) -> None:
    """A run killed mid-write leaves a line without its newline; appending would garble it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    logger.warning("%s ends with an incomplete row; it is dropped and redone", path)
    with path.open("r+b") as handle:
        handle.truncate(keep)


class ParquetWriter:
    """A folder of Parquet files of up to PARQUET_ROWS_PER_FILE rows; each file appears whole
    (written aside, then renamed), so a crash costs at most the rows not yet in a file."""

    def __init__(self, folder: Path, rows_per_file: int = PARQUET_ROWS_PER_FILE) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._rows_per_file = rows_per_file
        self._pending: list[dict[str, Any]] = []
        self._run = uuid.uuid4().hex[:8]
        self._files = 0

    def written_images(self) -> set[str]:
        import pyarrow.parquet as pq

        images: set[str] = set()
        for part in sorted(self.folder.glob("*.parquet")):
            images.update(pq.read_table(part, columns=["image"]).column("image").to_pylist())
        return images

    def write(self, rows: Sequence[str]) -> None:
        self._pending += [json.loads(row) for row in rows]
        while len(self._pending) >= self._rows_per_file:
            self._flush(self._pending[: self._rows_per_file])
            self._pending = self._pending[self._rows_per_file :]

    def close(self) -> None:
        if self._pending:
            self._flush(self._pending)
            self._pending = []

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Columns from every row, not only the first: error rows have one that others lack.
        names = list(dict.fromkeys(name for row in rows for name in row))
        table = pa.table({name: [row.get(name) for row in rows] for name in names})
        final = self.folder / f"part-{self._run}-{self._files:05d}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        pq.write_table(table, partial)
        partial.rename(final)
        self._files += 1


def open_writer(output: Path, output_format: OutputFormat) -> RowWriter:
    if output_format == "jsonl":
        if output.is_dir():
            raise BulkError(f"{output} is a folder; JSON lines output is a file")
        return JsonlWriter(output)
    if output.exists() and not output.is_dir():
        raise BulkError(f"{output} is a file; Parquet output is a folder of part files")
    return ParquetWriter(output)


def read_image_location(location: str, min_size: int) -> Image.Image:
    """A local file or a URI's bytes, decoded as `CaptionPredictor.read_image` decodes."""
    if _is_uri(location):
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(location)
        with filesystem.open_input_file(path) as handle:
            data = handle.readall()
    else:
        data = Path(location).read_bytes()
    return decode_image(data, min_size=min_size)


class CaptionActor:
    """Ray Data actor: loads the predictor once, then captions one batch of images per call."""

    def __init__(self, artifacts: str, options: dict[str, Any], threads: int) -> None:
        # LiteRT threads as the actor's CPU share: actors on one machine do not fight for cores.
        self.predictor = CaptionPredictor.from_artifacts(
            artifacts, runtime=RuntimeOptions(encoder_batch_threads=threads)
        )
        # Resolved here, against the model's own defaults: the driver never loads the model.
        self.settings = self.predictor.search.with_options(**options)

    def _read(self, location: str) -> Image.Image:
        return read_image_location(location, self.predictor.input_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        images = [str(image) for image in batch["image"]]
        locations = [str(location) for location in batch["location"]]
        results = caption_batch(self.predictor, locations, self.settings, read=self._read)
        rows = [format_row(caption_row(i, r)) for i, r in zip(images, results, strict=True)]
        errors = [isinstance(result, ImageError) for result in results]
        # Where the batch's time went; each row carries an equal share, so sums stay right.
        timings = next((r.timings_ms for r in results if not isinstance(r, ImageError)), {})
        busy_ms = (time.perf_counter() - started) * 1000
        stages = {name: timings.get(name, 0.0) for name in STAGES[1:]}
        stages["read"] = busy_ms - sum(stages.values())  # reading and decoding the files
        share = np.array([[stages[name] for name in STAGES]]) / len(rows)
        return {
            "row": np.array(rows, dtype=object),
            "error": np.array(errors, dtype=bool),
            "stage_ms": np.repeat(share, len(rows), axis=0),
        }


def run_bulk(
    inputs: Sequence[str],
    output: Path,
    *,
    output_format: OutputFormat = "jsonl",
    artifacts: Path = Path("artifacts"),
    options: dict[str, Any] | None = None,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    batch_size: int = BATCH_SIZE,
) -> BulkSummary:
    """Caption every image in `inputs` not yet in `output`; see the module docstring."""
    ray = import_ray()
    options = options or {}  # search options by name (beam_size...); none: the model's
    if not (Path(artifacts) / "manifest.json").exists():
        raise BulkError(f"{artifacts} is not an artifacts folder (no manifest.json)")
    refs = list_images(inputs)
    writer = open_writer(output, output_format)
    try:
        done = writer.written_images()
        todo = [ref for ref in refs if ref.image not in done]
        logger.info(
            "%d images listed, %d already in %s, %d to caption",
            len(refs),
            len(refs) - len(todo),
            output,
            len(todo),
        )
        started = time.perf_counter()
        captioned = errors = 0
        actor_seconds = dict.fromkeys(STAGES, 0.0)
        if todo:
            _start_ray(ray, actors * cpus_per_actor)
            started = time.perf_counter()  # rates without Ray's start-up (seconds, once)
            captioned, errors, actor_seconds = _caption_on_ray(
                ray, todo, writer, str(Path(artifacts).resolve()), options,
                actors, cpus_per_actor, batch_size,
            )  # fmt: skip
    finally:
        writer.close()
    seconds = time.perf_counter() - started
    summary = BulkSummary(
        len(refs), len(refs) - len(todo), captioned, errors, seconds, actor_seconds
    )
    logger.info(
        "wrote %d rows (%d unreadable) to %s in %.1f s: %.1f images/s",
        captioned,
        errors,
        output,
        seconds,
        summary.images_per_second,
    )
    if captioned:
        logger.info("actor seconds by stage: %s", json.dumps(actor_seconds))
    return summary


def _start_ray(ray: ModuleType, cpus_wanted: float) -> None:
    """Start or join Ray, and refuse a pool that could never be scheduled (it would wait)."""
    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init()  # a local Ray, or the cluster in RAY_ADDRESS
    cpus = ray.cluster_resources().get("CPU", 0.0)
    where = os.environ.get("RAY_ADDRESS") or "local"
    logger.info("Ray (%s) up in %.1f s with %g CPUs", where, time.perf_counter() - started, cpus)
    if cpus_wanted > cpus:
        message = f"the actors ask for {cpus_wanted:g} CPUs and Ray has {cpus:g}"
        if where == "local":
            raise BulkError(message + ": use fewer --actors or a smaller --cpus-per-actor")
        logger.warning("%s; they start as the cluster grows", message)


def _caption_on_ray(
    ray: ModuleType,
    todo: list[ImageRef],
    writer: RowWriter,
    artifacts: str,
    options: dict[str, Any],
    actors: int,
    cpus_per_actor: float,
    batch_size: int,
) -> tuple[int, int, dict[str, float]]:
    items = [{"image": ref.image, "location": ref.location} for ref in todo]
    # A block per batch: rows stream back (and are written) as each batch is done.
    dataset = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch_size))
    captions = dataset.map_batches(
        CaptionActor,
        fn_constructor_kwargs={
            "artifacts": artifacts,
            "options": options,
            "threads": max(1, round(cpus_per_actor)),
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
    )
    captioned = errors = 0
    stage_ms = np.zeros(len(STAGES))
    last_report = time.perf_counter()
    started = last_report
    for batch in captions.iter_batches(batch_size=None, batch_format="numpy"):
        writer.write([str(row) for row in batch["row"]])
        captioned += len(batch["row"])
        errors += int(batch["error"].sum())
        stage_ms += batch["stage_ms"].sum(axis=0)
        now = time.perf_counter()
        if now - last_report >= PROGRESS_EVERY_S:
            logger.info(
                "%d/%d images, %.1f images/s",
                captioned,
                len(todo),
                captioned / (now - started),
            )
            last_report = now
    seconds = {name: round(ms / 1000, 2) for name, ms in zip(STAGES, stage_ms, strict=True)}
    return captioned, errors, seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m captioning.bulk",
        description="Caption many image files on Ray (a local one, or the cluster in "
        "RAY_ADDRESS); rows as `python -m training caption` writes them.",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        help="image files, folders (searched recursively), globs in quotes, or URIs "
        "pyarrow reads (s3://bucket/photos/)",
    )
    parser.add_argument(
        "--list", type=Path, action="append", default=[], help="a file of inputs, one per line"
    )
    parser.add_argument("--output", type=Path, required=True, help="JSON lines file, or a folder")
    parser.add_argument(
        "--format",
        choices=["jsonl", "parquet"],
        default="jsonl",
        help="jsonl: one file, as `training caption`; parquet: a folder of part files",
    )
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--beam-size", type=int, help="default: the model's")
    parser.add_argument("--actors", type=int, default=1, help="predictor actors (model copies)")
    parser.add_argument(
        "--cpus-per-actor",
        type=float,
        default=1.0,
        help="CPUs Ray reserves for each actor; also its encoder's threads",
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per call")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        inputs = [*args.inputs, *(item for path in args.list for item in read_list_file(path))]
        if not inputs:
            raise BulkError("no inputs: give image files, folders, globs, URIs or --list FILE")
        if args.actors < 1 or args.batch_size < 1 or args.cpus_per_actor <= 0:
            raise BulkError("--actors, --batch-size and --cpus-per-actor must be positive")
        run_bulk(
            inputs,
            args.output,
            output_format=args.format,
            artifacts=args.artifacts,
            options={"beam_size": args.beam_size},
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            batch_size=args.batch_size,
        )
    except (BulkError, FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
