"""Captioning image files offline: shared by `python -m training caption`, `captioner caption`
(app/cli.py) and `python -m bulk`.

All three read a file as the service decodes an upload (`CaptionPredictor.read_image`), caption
in batches and write the same rows, so their outputs can be compared line by line.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from captioning.images import ImageError
from captioning.predictor import CaptionPredictor
from captioning.search_settings import DEFAULT_MIN_WORD_PROBABILITY, SearchSettings
from captioning.types import CaptionResult

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
BATCH_SIZE = 32

ImageReader = Callable[[str], Image.Image]


def add_caption_options(parser: argparse.ArgumentParser) -> None:
    """The model and decoding options that every offline captioning command takes."""
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="model bundle")
    parser.add_argument(
        "--beam-size",
        type=int,
        help="beam width, 1: greedy (default: the model's, from its manifest)",
    )
    parser.add_argument(
        "--no-concepts",
        action="store_true",
        help="captions of the decoder alone, not made to name the photo's concepts",
    )
    parser.add_argument(
        "--no-grounding",
        action="store_true",
        help="let captions mention people, dogs and cats without evidence for them",
    )
    parser.add_argument(
        "--style",
        help="for a model trained with caption styles: the corpus whose style to write in "
        "(the manifest's decoder.style_names), or auto: Flickr8k's where grounding finds "
        "people or dogs, COCO's elsewhere (default: Flickr8k's)",
    )
    parser.add_argument(
        "--min-word-probability",
        type=float,
        help="on photos without people or dogs, cut the caption before the first phrase after "
        "its subject holding a word the decoder gave less than this (and, with grounding, on "
        "every photo a setting without evidence); 0: whole sentences "
        f"(default: {DEFAULT_MIN_WORD_PROBABILITY})",
    )


def search_options(args: argparse.Namespace) -> dict[str, Any]:
    """The search options `add_caption_options`' flags give, by name (None: the model's), for
    `SearchSettings.with_options` once the model is loaded."""
    return {
        "beam_size": getattr(args, "beam_size", None),
        "concepts": False if getattr(args, "no_concepts", False) else None,
        "grounding": False if getattr(args, "no_grounding", False) else None,
        "style": getattr(args, "style", None),
        "min_word_probability": getattr(args, "min_word_probability", None),
    }


def expand_paths(inputs: Iterable[Path]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted, recursively)."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.exists():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item} does not exist")
    return paths


def caption_batch(
    predictor: CaptionPredictor,
    paths: Sequence[str | Path],
    settings: SearchSettings,
    read: ImageReader | None = None,
) -> list[CaptionResult | ImageError]:
    """One result per path, in order; a file that cannot be read or decoded gives its error.

    `read` opens a path (default: `predictor.read_image`, a local file); the bulk command
    passes one that also reads URIs, then decodes the bytes the same way.
    """
    read = read or predictor.read_image
    images: list[Image.Image] = []
    outcomes: list[CaptionResult | ImageError | None] = []
    for path in paths:
        try:
            images.append(read(str(path)))
            outcomes.append(None)  # filled with its captions below
        except (ImageError, OSError) as exc:
            outcomes.append(exc if isinstance(exc, ImageError) else ImageError(str(exc)))
    captioned = iter(predictor.caption_images(images, settings) if images else [])
    return [outcome or next(captioned) for outcome in outcomes]


def caption_row(image: str, result: CaptionResult | ImageError) -> dict[str, Any]:
    """{"image", "caption", "score", "tags", "evidence"} (score: the caption's log-probability;
    tags: the image's confident concepts, most likely first; evidence: what grounding found), or
    with "error"."""
    if isinstance(result, ImageError):
        return {
            "image": image,
            "caption": None,
            "score": None,
            "tags": [],
            "evidence": [],
            "error": {"code": result.code, "message": str(result)},
        }
    return {
        "image": image,
        "caption": result.best.text,
        "score": result.best.log_prob,
        "tags": [{"word": t.word, "probability": t.probability} for t in result.tags],
        "evidence": [
            {"label": e.label, "score": e.score, "count": e.count} for e in result.evidence
        ],
    }


def format_row(row: dict[str, Any]) -> str:
    """One JSON line, without its newline."""
    return json.dumps(row)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON lines file; a line cut short (by a crash mid-write) is left out."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s line %d is not a complete row; ignored", path, number)
    return rows
