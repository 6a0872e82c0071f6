"""Grounded captions on photos the evidence heads never saw: 5-fold cross-validation over the
labelled open-world photos, end to end (heads, claims, decoding, the judge).

The shipped heads are fitted on Flickr8k train plus the 500 labelled open-world photos (the
negatives Flickr8k lacks), so `evaluate-open` on those photos scores heads on their own
training photos. Here each fold's photos are captioned by heads fitted without them; as each
photo is a class of its own, that is also a measure on unseen classes, like the withheld ones.

    python -m benchmarks.experiments.grounding_folds --data ../shared/flickr8k \\
        --openworld ../shared/openworld --artifacts artifacts --output /tmp/grounding-folds
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from captioning.predictor import CaptionPredictor
from training.grounding import DEFAULT_HEADS, SHIPPED_HEADS, add_grounding, stratified_folds
from training.open_world import (
    class_named_photos,
    open_world_rows,
    read_labels,
    write_open_world,
)
from training.wordnet import WordNet

logger = logging.getLogger(__name__)

FOLDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="Flickr8k folder")
    parser.add_argument(
        "--openworld", type=Path, required=True, help="imagenet-sample/ + labels.tsv"
    )
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/evidence/cache"))
    parser.add_argument("--output", type=Path, default=Path("/tmp/grounding-folds"))
    parser.add_argument("--seed", type=int, default=0, help="which photos share a fold")
    parser.add_argument("--no-scenery", action="store_true", help="as add-grounding's")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    labels_file = args.openworld / "labels.tsv"
    lines = labels_file.read_text(encoding="utf-8").splitlines()
    labels = read_labels(labels_file)
    photos = {p.name: p for p in class_named_photos(args.openworld / "imagenet-sample")}
    names = [line.split("\t")[0] for line in lines]
    fold_of = stratified_folds(np.array([labels[n].person for n in names]), FOLDS, args.seed)
    wordnet = WordNet.load()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        for fold in range(FOLDS):
            artifacts = Path(scratch) / f"fold{fold}"
            shutil.copytree(args.artifacts, artifacts)
            fitted = Path(scratch) / f"labels{fold}.tsv"
            fitted.write_text(
                "\n".join(line for line, f in zip(lines, fold_of, strict=True) if f != fold) + "\n"
            )
            add_grounding(
                artifacts,
                args.data,
                extra_labels=fitted,
                extra_photos=args.openworld / "imagenet-sample",
                cache=args.cache,
                specs=DEFAULT_HEADS if args.no_scenery else SHIPPED_HEADS,
            )
            predictor = CaptionPredictor.from_artifacts(artifacts)
            held_out = [photos[n] for n, f in zip(names, fold_of, strict=True) if f == fold]
            rows += open_world_rows(predictor, held_out, predictor.search, wordnet, labels)
            logger.info(
                "fold %d: %d photos captioned by heads fitted without them", fold, len(held_out)
            )
    order = {name: index for index, name in enumerate(sorted(photos))}
    rows.sort(key=lambda row: order[row["image"]])
    summary = write_open_world(
        rows, predictor, predictor.search, list(photos.values()), args.output
    )
    summary["heads"] = (
        f"{FOLDS}-fold (seed {args.seed}): each photo captioned by heads fitted without it"
    )
    (args.output / "open_world_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("out-of-fold: %s", json.dumps(summary))


if __name__ == "__main__":
    main()
