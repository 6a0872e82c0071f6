"""Where to cut captions the decoder is unsure of: the labelled open-world photos and Flickr8k
dev captioned at each `min_word_probability` through the service's predictor (grounding
included), with open-world CIDEr-D against labels.tsv's one reference, dev CIDEr and BLEU-4,
and words per caption. The captions go to --output, one JSON file per floor, for looking at.
With --timing-photos N, also the decoding time per caption of N open-world photos one per call
(as lone requests come), the floors alternating for three rounds; the fastest round counts.

    python -m benchmarks.experiments.caption_cut --artifacts artifacts \\
        --openworld ../shared/openworld --data ../shared/flickr8k --floors 0,0.05,0.1,0.15
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks.experiments.photo_weight import (
    DEV,
    OPEN_WORLD,
    add_photo_arguments,
    best_captions,
    load_scored_photos,
)
from captioning.predictor import CaptionPredictor
from captioning.types import EncodedImages
from training.metrics import java_available, score_captions

logger = logging.getLogger(__name__)


def captions(predictor: CaptionPredictor, encoded: EncodedImages, floor: float) -> list[str]:
    return best_captions(
        predictor, encoded, predictor.search.with_options(min_word_probability=floor)
    )


def decoding_ms(predictor: CaptionPredictor, encoded: EncodedImages, floors: list[float]) -> dict:
    """Fastest of three alternating rounds, ms per caption, one image per `generate` call."""
    rounds: dict[float, list[float]] = {floor: [] for floor in floors}
    for _ in range(3):
        for floor in floors:
            settings = predictor.search.with_options(min_word_probability=floor)
            started = time.perf_counter()
            for index in range(len(encoded)):
                predictor.generate(encoded[index : index + 1], settings)
            rounds[floor].append((time.perf_counter() - started) / len(encoded) * 1000)
    return {floor: round(min(times), 2) for floor, times in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_photo_arguments(parser)
    parser.add_argument("--floors", default="0,0.05,0.1,0.15", help="comma-separated floors")
    parser.add_argument("--output", type=Path, default=Path("/tmp/caption-cut"))
    parser.add_argument("--timing-photos", type=int, default=0, help="0: no timing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    predictor = CaptionPredictor.from_artifacts(args.artifacts)
    photos = load_scored_photos(predictor, args.openworld, args.data)
    args.output.mkdir(parents=True, exist_ok=True)
    results = {}
    for floor in (float(f) for f in args.floors.split(",")):
        said = {
            split: captions(predictor, encoded, floor) for split, encoded in photos.encoded.items()
        }
        open_scores, dev_scores = (
            score_captions(photos.references[split], said[split], full=False, ptb=java_available())
            for split in (OPEN_WORLD, DEV)
        )
        results[floor] = {
            "open_world_cider_d": round(open_scores["CIDEr"], 4),
            "open_world_words": round(
                float(np.mean([len(c.split()) for c in said[OPEN_WORLD]])), 2
            ),
            "dev_cider": round(dev_scores["CIDEr"], 4),
            "dev_bleu_4": round(dev_scores["BLEU-4"], 4),
            "dev_words": round(float(np.mean([len(c.split()) for c in said[DEV]])), 2),
        }
        logger.info("min_word_probability %s: %s", floor, json.dumps(results[floor]))
        named = {
            split: dict(zip(photos.names[split], texts, strict=True))
            for split, texts in said.items()
        }
        (args.output / f"captions_{floor}.json").write_text(json.dumps(named, indent=1) + "\n")
    if args.timing_photos:
        floors = list(results)
        timed = decoding_ms(predictor, photos.encoded[OPEN_WORLD][: args.timing_photos], floors)
        for floor, ms in timed.items():
            results[floor]["decoding_ms_per_caption"] = ms
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
