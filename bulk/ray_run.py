"""The Ray side of the bulk command: `CaptionActor` captions batches where the model lives,
and `run_bulk` (the driver) lists, skips what is written, feeds the actors and writes rows."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from bulk import BulkError
from bulk.inputs import ImageRef, list_images, read_image_location
from bulk.writers import OutputFormat, RowWriter, open_writer
from captioning.images import ImageError
from captioning.offline import BATCH_SIZE, caption_batch, caption_row, format_row
from captioning.predictor import CaptionPredictor
from captioning.runtime import RuntimeOptions

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0
# What an actor spends a batch on: reading + decoding files, resizing, the encoder, the decoder.
STAGES = ("read", "preprocess", "encode", "generate")


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
        # Ray Data would turn a column of dicts into Arrow structs, giving every row every key
        # (`"error": null` in good rows) and arrays for lists: rows cross as their JSON lines.
        lines = [format_row(caption_row(i, r)) for i, r in zip(images, results, strict=True)]
        errors = [isinstance(result, ImageError) for result in results]
        # Where the batch's time went; each row carries an equal share, so sums stay right.
        timings = next((r.timings_ms for r in results if not isinstance(r, ImageError)), {})
        busy_ms = (time.perf_counter() - started) * 1000
        stages = {name: timings.get(name, 0.0) for name in STAGES[1:]}
        stages["read"] = busy_ms - sum(stages.values())  # reading and decoding the files
        share = np.array([[stages[name] for name in STAGES]]) / len(lines)
        return {
            "line": np.array(lines, dtype=object),
            "error": np.array(errors, dtype=bool),
            "stage_ms": np.repeat(share, len(lines), axis=0),
        }


@dataclass(frozen=True)
class Pool:
    """The actors a run asks Ray for."""

    actors: int = 1
    cpus_per_actor: float = 1.0  # what Ray reserves for each; also its encoder's threads
    batch_size: int = BATCH_SIZE  # images per actor call


def run_bulk(
    inputs: list[str],
    output: Path,
    *,
    output_format: OutputFormat = "jsonl",
    artifacts: Path = Path("artifacts"),
    options: dict[str, Any] | None = None,
    pool: Pool | None = None,
) -> BulkSummary:
    """Caption every image in `inputs` not yet in `output`; see bulk/__init__.py."""
    ray = import_ray()
    options = options or {}  # search options by name (beam_size...); none: the model's
    pool = pool or Pool()
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
            _start_ray(ray, pool.actors * pool.cpus_per_actor)
            started = time.perf_counter()  # rates without Ray's start-up (seconds, once)
            artifacts_path = str(Path(artifacts).resolve())
            captioned, errors, actor_seconds = _caption_on_ray(
                ray, todo, writer, artifacts_path, options, pool
            )
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
    pool: Pool,
) -> tuple[int, int, dict[str, float]]:
    items = [{"image": ref.image, "location": ref.location} for ref in todo]
    # A block per batch: rows stream back (and are written) as each batch is done.
    blocks = math.ceil(len(items) / pool.batch_size)
    captions = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        CaptionActor,
        fn_constructor_kwargs={
            "artifacts": artifacts,
            "options": options,
            "threads": max(1, round(pool.cpus_per_actor)),
        },
        batch_size=pool.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool.actors),
        num_cpus=pool.cpus_per_actor,
    )
    captioned = errors = 0
    stage_ms = np.zeros(len(STAGES))
    last_report = time.perf_counter()
    started = last_report
    for batch in captions.iter_batches(batch_size=None, batch_format="numpy"):
        writer.write([json.loads(line) for line in batch["line"]])
        captioned += len(batch["line"])
        errors += int(batch["error"].sum())
        stage_ms += batch["stage_ms"].sum(axis=0)
        now = time.perf_counter()
        if now - last_report >= PROGRESS_EVERY_S:
            logger.info(
                "%d/%d images, %.1f images/s", captioned, len(todo), captioned / (now - started)
            )
            last_report = now
    seconds = {name: round(ms / 1000, 2) for name, ms in zip(STAGES, stage_ms, strict=True)}
    return captioned, errors, seconds
