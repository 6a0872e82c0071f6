"""Broken English decoded again: how many captions break it, and what the guard costs.

The predictor decodes again, with the searches kept from it (`captioning.phrases.WordRoles`),
an image whose captions break English ("a little is sitting", "sunglasses and sunglasses").
This counts the broken best captions with that re-decoding off and on, scores both on Flickr8k
dev and the labelled open-world photos, and, with --timing-photos N, times decoding one photo
per call (as lone requests come), off and on taking turns on each photo for three rounds.

    python -m benchmarks.experiments.broken_english --artifacts artifacts \\
        --openworld ../shared/openworld --data ../shared/flickr8k --timing-photos 300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.experiments.photo_weight import (
    OPEN_WORLD,
    add_photo_arguments,
    best_captions,
    load_scored_photos,
)
from captioning.phrases import WordRoles
from captioning.predictor import CaptionPredictor
from captioning.types import EncodedImages
from training.metrics import java_available, score_captions

logger = logging.getLogger(__name__)


class _NeverBroken(WordRoles):
    """Roles under which no caption counts as broken: the predictor before the guard."""

    def breaks(self, token_ids: Sequence[int]) -> bool:
        return False


def _arms(predictor: CaptionPredictor) -> dict[str, WordRoles]:
    guarded = predictor.word_roles
    return {"off": _NeverBroken(**dataclasses.asdict(guarded)), "on": guarded}


def broken_share(predictor: CaptionPredictor, roles: WordRoles, said: list[str]) -> float:
    vocabulary = predictor.vocabulary
    broken = [roles.breaks([vocabulary.id_of(word) for word in text.split()]) for text in said]
    return round(sum(broken) / len(broken), 4)


def decoding_ms(predictor: CaptionPredictor, encoded: EncodedImages) -> dict[str, float]:
    """Mean ms per caption, one image per `generate` call, the two arms taking turns on each
    photo (who goes first alternates) for three rounds: whole rounds one after the other
    differed by a quarter on these cores, more than the arms do."""
    arms = list(_arms(predictor).items())
    spent: dict[str, float] = {name: 0.0 for name, _ in arms}
    for round_ in range(3):
        for index in range(len(encoded)):
            for name, roles in arms if (index + round_) % 2 else arms[::-1]:
                predictor.word_roles = roles
                started = time.perf_counter()
                predictor.generate(encoded[index : index + 1])
                spent[name] += time.perf_counter() - started
    predictor.word_roles = dict(arms)["on"]
    return {name: round(total / (3 * len(encoded)) * 1000, 2) for name, total in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_photo_arguments(parser)
    parser.add_argument("--output", type=Path, default=Path("/tmp/broken-english"))
    parser.add_argument("--timing-photos", type=int, default=0, help="0: no timing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    predictor = CaptionPredictor.from_artifacts(args.artifacts)
    photos = load_scored_photos(predictor, args.openworld, args.data)
    args.output.mkdir(parents=True, exist_ok=True)
    guarded = predictor.word_roles
    results: dict[str, dict] = {}
    for arm, roles in _arms(predictor).items():
        predictor.word_roles = roles
        results[arm] = {}
        for split, encoded in photos.encoded.items():
            said = best_captions(predictor, encoded, predictor.search)
            scores = score_captions(
                photos.references[split], said, full=False, ptb=java_available()
            )
            results[arm][split] = {
                "cider": round(scores["CIDEr"], 4),
                "broken": broken_share(predictor, guarded, said),
            }
            captions = dict(zip(photos.names[split], said, strict=True))
            (args.output / f"{arm}_{split}.json").write_text(json.dumps(captions, indent=1))
        logger.info("re-decoding %s: %s", arm, json.dumps(results[arm]))
    predictor.word_roles = guarded
    if args.timing_photos:
        timed = decoding_ms(predictor, photos.encoded[OPEN_WORLD][: args.timing_photos])
        for arm, ms in timed.items():
            results[arm]["decoding_ms_per_caption"] = ms
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
