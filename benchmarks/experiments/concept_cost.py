"""What naming concepts costs per caption: the same photos captioned one at a time (as a lone
request is), with concepts on and off, interleaved over rounds.

    python -m benchmarks.experiments.concept_cost ../shared/openworld/imagenet-sample --limit 100
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from captioning.offline import expand_paths
from captioning.predictor import CaptionPredictor

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    predictor = CaptionPredictor.from_artifacts(args.artifacts)
    predictor.warmup()
    paths = expand_paths([args.photos])[: args.limit]
    encoded = [predictor.encode(predictor.preprocess([predictor.read_image(p)])) for p in paths]
    timings: dict[bool, list[float]] = {True: [], False: []}
    constrained = 0
    for _ in range(args.rounds):
        for concepts in (False, True):
            options = predictor.search.with_options(concepts=concepts)
            started = time.perf_counter()
            for image in encoded:
                predictor.generate(image, options)
            timings[concepts].append((time.perf_counter() - started) * 1000 / len(encoded))
    for image in encoded:  # how many needed the constrained search
        plain = predictor.generate(image, predictor.search.with_options(concepts=False))[
            0
        ].best.text
        constrained += predictor.generate(image)[0].best.text != plain
    for concepts, values in timings.items():
        logger.info(
            "concepts %s: decoding %.2f ms per caption (median of %d rounds; %s)",
            "on " if concepts else "off",
            statistics.median(values),
            len(values),
            ", ".join(f"{v:.2f}" for v in values),
        )
    logger.info("%d of %d captions changed by naming a concept", constrained, len(encoded))


if __name__ == "__main__":
    main()
