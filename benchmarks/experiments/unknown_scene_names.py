"""How confident a concept must be to name the subject of a photo outside Flickr8k's scenes
(grounding finds no person or dog): the labelled open-world photos and Flickr8k dev captioned
through the service's predictor at each `unknown_scene_threshold`, with open-world CIDEr-D
against labels.tsv's one reference, dev CIDEr and BLEU-4, and on the open-world photos how many
subjects are named and how many of those are a concept of the photo's own ImageNet class (its
file name). The captions go to --output, one JSON file per threshold, for looking at.

    python -m benchmarks.experiments.unknown_scene_names --artifacts artifacts \\
        --openworld ../shared/openworld --data ../shared/flickr8k --thresholds 0.4,0.3,0.2,0.15
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from benchmarks.experiments.photo_weight import (
    DEV,
    OPEN_WORLD,
    add_photo_arguments,
    best_captions,
    load_scored_photos,
)
from captioning.predictor import CaptionPredictor, guesses_scene
from captioning.subjects import SubjectNamer
from captioning.types import EncodedImages
from training.metrics import java_available, score_captions
from training.open_world import class_of

logger = logging.getLogger(__name__)


def subject_counts(
    predictor: CaptionPredictor, names: list[str], encoded: EncodedImages
) -> dict[str, int]:
    """On photos outside Flickr8k's scenes: subjects named, and those of the photo's class."""
    assert predictor.namer is not None and encoded.concepts is not None
    table = predictor.namer.table
    unknown = guesses_scene(predictor.evidence(encoded))
    subjects = predictor.namer.subjects(encoded.concepts, unknown)
    named = right = 0
    for name, subject, outside in zip(names, subjects, unknown, strict=True):
        if subject is None or not outside:
            continue
        truth = table.class_concepts[table.class_ids.index(str(class_of(Path(name))))]
        named += 1
        right += subject.word in {table.words[concept] for concept in truth}
    return {"photos_outside_scenes": int(unknown.sum()), "named": named, "of_its_class": right}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_photo_arguments(parser)
    parser.add_argument("--thresholds", default="0.4,0.3,0.2,0.15", help="comma-separated")
    parser.add_argument("--output", type=Path, default=Path("/tmp/unknown-scene-names"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    predictor = CaptionPredictor.from_artifacts(args.artifacts)
    assert predictor.namer is not None, "the artifacts have no concepts.json"
    namer = predictor.namer
    photos = load_scored_photos(predictor, args.openworld, args.data)
    args.output.mkdir(parents=True, exist_ok=True)
    results = {}
    for threshold in (float(t) for t in args.thresholds.split(",")):
        predictor.namer = SubjectNamer(
            namer.table, namer.vocabulary, namer.threshold, unknown_scene_threshold=threshold
        )
        said = {
            split: best_captions(predictor, encoded) for split, encoded in photos.encoded.items()
        }
        open_scores, dev_scores = (
            score_captions(photos.references[split], said[split], full=False, ptb=java_available())
            for split in (OPEN_WORLD, DEV)
        )
        results[threshold] = {
            "open_world_cider_d": round(open_scores["CIDEr"], 4),
            **subject_counts(predictor, photos.names[OPEN_WORLD], photos.encoded[OPEN_WORLD]),
            "dev_cider": round(dev_scores["CIDEr"], 4),
            "dev_bleu_4": round(dev_scores["BLEU-4"], 4),
        }
        logger.info("threshold %s: %s", threshold, json.dumps(results[threshold]))
        named = {
            split: dict(zip(photos.names[split], texts, strict=True))
            for split, texts in said.items()
        }
        (args.output / f"captions_{threshold}.json").write_text(json.dumps(named, indent=1) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
