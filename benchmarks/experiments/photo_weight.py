"""How much the concept-conditioned decoder should lean on the photo: the labelled open-world
photos captioned with their encoder features scaled by each weight (1: as served; 0: the
photo's concept alone, as the text-only captions taught it), scored with CIDEr-D against
labels.tsv's reference captions, through the service's predictor (grounding included).

    python -m benchmarks.experiments.photo_weight --artifacts artifacts \\
        --openworld ../shared/openworld --weights 1,0.5,0
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioning.predictor import CaptionPredictor
from captioning.search_settings import SearchSettings
from captioning.types import EncodedImages
from training.metrics import java_available, score_captions
from training.open_world import class_named_photos, read_labels

logger = logging.getLogger(__name__)

BATCH = 16


def encode_all(predictor: CaptionPredictor, paths: list[Path]) -> EncodedImages:
    parts = [
        predictor.encode(
            predictor.preprocess([predictor.read_image(p) for p in paths[i : i + BATCH]])
        )
        for i in range(0, len(paths), BATCH)
    ]
    return EncodedImages(
        np.concatenate([p.grid for p in parts]),
        np.concatenate([p.pooled for p in parts]),
        np.concatenate([p.concepts for p in parts]),
        np.concatenate([p.classes for p in parts]),
    )


OPEN_WORLD, DEV = "open_world", "dev"


@dataclass(frozen=True)
class ScoredPhotos:
    """The labelled open-world photos and Flickr8k's dev split, each encoded once, with their
    names and reference captions, by split (OPEN_WORLD, DEV)."""

    names: dict[str, list[str]]
    encoded: dict[str, EncodedImages]
    references: dict[str, list[list[str]]]


def add_photo_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments `load_scored_photos` needs: --artifacts, --openworld and --data."""
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument(
        "--openworld", type=Path, required=True, help="imagenet-sample/ + labels.tsv"
    )
    parser.add_argument("--data", type=Path, required=True, help="the Flickr8k folder (dev split)")


def load_scored_photos(predictor: CaptionPredictor, openworld: Path, data: Path) -> ScoredPhotos:
    from training.data import load_flickr8k

    labels = read_labels(openworld / "labels.tsv")
    photos = [p for p in class_named_photos(openworld / "imagenet-sample") if p.name in labels]
    dev = load_flickr8k(data).splits["dev"]
    return ScoredPhotos(
        names={OPEN_WORLD: [p.name for p in photos], DEV: [p.name for p in dev.image_paths]},
        encoded={
            OPEN_WORLD: encode_all(predictor, photos),
            DEV: encode_all(predictor, dev.image_paths),
        },
        references={
            OPEN_WORLD: [[labels[p.name].caption] for p in photos],
            DEV: [list(captions) for captions in dev.raw_captions],
        },
    )


def best_captions(
    predictor: CaptionPredictor, encoded: EncodedImages, settings: SearchSettings | None = None
) -> list[str]:
    """Each encoded image's best caption, generated BATCH images at a time."""
    return [
        result.best.text
        for start in range(0, len(encoded), BATCH)
        for result in predictor.generate(encoded[start : start + BATCH], settings)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument(
        "--openworld", type=Path, required=True, help="imagenet-sample/ + labels.tsv"
    )
    parser.add_argument("--weights", default="1,0.5,0", help="comma-separated feature weights")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    predictor = CaptionPredictor.from_artifacts(args.artifacts)
    labels = read_labels(args.openworld / "labels.tsv")
    paths = [p for p in class_named_photos(args.openworld / "imagenet-sample") if p.name in labels]
    encoded = encode_all(predictor, paths)
    references = [[labels[p.name].caption] for p in paths]
    results = {}
    for weight in (float(w) for w in args.weights.split(",")):
        scaled = EncodedImages(
            encoded.grid * weight, encoded.pooled * weight, encoded.concepts, encoded.classes
        )
        captions = best_captions(predictor, scaled)
        scores = score_captions(references, captions, full=False, ptb=java_available())
        results[weight] = round(float(scores["CIDEr"]), 4)
        logger.info("weight %.2f: CIDEr-D %.4f, e.g. %s", weight, scores["CIDEr"], captions[:3])
    print(json.dumps({"photos": len(paths), "CIDEr-D by photo weight": results}, indent=2))


if __name__ == "__main__":
    main()
