"""The command line of `python -m bulk`; see bulk/__init__.py."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bulk import BulkError
from bulk.inputs import read_list_file
from bulk.ray_run import Pool, run_bulk
from captioning.offline import BATCH_SIZE, add_caption_options, search_options

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bulk",
        description="Caption many image files on Ray (a local one, or the cluster in "
        "RAY_ADDRESS); rows as `python -m training caption` and `captioner caption` write them.",
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
    add_caption_options(parser)
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
            options=search_options(args),
            pool=Pool(args.actors, args.cpus_per_actor, args.batch_size),
        )
    except (BulkError, FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    return 0
