"""`captioner`, the command of the serving install (`pip install .`, no TensorFlow).

    captioner serve                                  # the HTTP service, settings from CAPTIONER_*
    captioner caption photo.jpg folder/ [--output captions.jsonl]

`caption` writes the JSON lines of `python -m training caption` and `python -m bulk`
(captioning/offline.py's rows, one per image), to standard output unless --output names a file;
logs go to standard error. An unreadable file gets an error row, and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from captioning.bundle import ArtifactError
from captioning.images import ImageError
from captioning.offline import (
    BATCH_SIZE,
    add_caption_options,
    caption_batch,
    caption_row,
    expand_paths,
    format_row,
    search_options,
)
from captioning.predictor import CaptionPredictor

logger = logging.getLogger("captioner")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captioner", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve", help="run the HTTP service (settings from CAPTIONER_* variables, see README)"
    )
    caption = commands.add_parser(
        "caption", help="caption image files and folders offline, one JSON line per image"
    )
    caption.add_argument(
        "paths", type=Path, nargs="+", metavar="PHOTO", help="image files, or folders of them"
    )
    caption.add_argument(
        "--output", type=Path, default=None, help="JSON lines file (default: standard output)"
    )
    add_caption_options(caption)
    caption.add_argument("--log-level", default="WARNING")
    return parser


@contextlib.contextmanager
def _rows_to(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as handle:
        yield handle


def caption_command(args: argparse.Namespace) -> None:
    paths = expand_paths(args.paths)  # a missing file stops us before the model loads
    predictor = CaptionPredictor.from_artifacts(args.artifacts)
    settings = predictor.search.with_options(**search_options(args))
    unreadable = 0
    with _rows_to(args.output) as rows:
        for start in range(0, len(paths), BATCH_SIZE):
            batch = paths[start : start + BATCH_SIZE]
            results = caption_batch(predictor, batch, settings)
            unreadable += sum(isinstance(result, ImageError) for result in results)
            lines = (
                format_row(caption_row(str(p), r)) for p, r in zip(batch, results, strict=True)
            )
            rows.write("".join(line + "\n" for line in lines))
            rows.flush()  # a reader of the pipe sees each batch as it is done
    if unreadable:
        logger.warning("%d of %d files could not be read (error rows)", unreadable, len(paths))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from app.main import run  # builds the app: only this command needs it

        run()
        return 0
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        caption_command(args)
    except (ArtifactError, FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
