"""Decoding time per caption of two or more bundles, in one process, rounds alternating between
them (timings drift by a third between runs, so only a comparison within one run holds).

Each round captions the same open-world photos one at a time through `predictor.generate`
(the service's search: beam 3, concepts, grounding), one BLAS thread as the service runs, after
each bundle encoded them once; the encoder is not timed.

    python -m benchmarks.experiments.decode_time_ab old-artifacts/ artifacts/ \\
        --photos ../shared/openworld/imagenet-sample [--style auto]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from captioning.predictor import CaptionPredictor
from training.open_world import class_named_photos

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifacts", type=Path, nargs="+", help="bundles to compare")
    parser.add_argument("--photos", type=Path, required=True, help="a folder of photos")
    parser.add_argument("--count", type=int, default=40, help="photos, spread over the folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--style", help="the style of the bundles trained with caption styles (e.g. auto)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    paths = class_named_photos(args.photos)
    paths = paths[:: max(1, len(paths) // args.count)][: args.count]
    predictors = {str(a): CaptionPredictor.from_artifacts(a) for a in args.artifacts}
    settings = {
        name: p.search.with_options(style=args.style if p.style_names else None)
        for name, p in predictors.items()
    }
    encoded = {
        name: p.encode(p.preprocess([p.read_image(path) for path in paths]))
        for name, p in predictors.items()
    }
    per_caption: dict[str, list[float]] = {name: [] for name in predictors}
    words: dict[str, float] = {}
    with threadpool_limits(1, user_api="blas"):
        for name, predictor in predictors.items():  # warm-up, and the captions' lengths
            results = [
                predictor.generate(encoded[name][i : i + 1], settings[name])[0]
                for i in range(len(paths))
            ]
            words[name] = float(np.mean([len(r.best.tokens) for r in results]))
        for _ in range(args.rounds):
            for name, predictor in predictors.items():
                started = time.perf_counter()
                for index in range(len(paths)):
                    predictor.generate(encoded[name][index : index + 1], settings[name])
                per_caption[name].append((time.perf_counter() - started) / len(paths) * 1000)
    first = next(iter(predictors))
    report = {
        name: {
            "ms_per_caption_median": round(float(np.median(times)), 2),
            "rounds": [round(t, 2) for t in times],
            "words_per_caption": round(words[name], 2),
            "ratio_to_first": round(float(np.median(times) / np.median(per_caption[first])), 3),
        }
        for name, times in per_caption.items()
    }
    print(json.dumps({"photos": len(paths), "bundles": report}, indent=2))


if __name__ == "__main__":
    main()
