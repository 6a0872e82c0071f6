"""Is a retrained model better, or just different? A paired bootstrap over the images.

    python -m training compare old-eval/captions_dev.jsonl new-eval/captions_dev.jsonl

Both files come from `python -m training evaluate` (one JSON object per image with its
caption and references). Each image's CIDEr is computed for both models against the same
references; resampling the images (with replacement) gives a 95% interval for the mean
difference, and how often a resample finds the candidate no better (the bar for committing a
model is in docs/experiments.md). Text is tokenised by the captioner's own normaliser (as in
checkpoint selection), so the CIDEr here can differ from `evaluate`'s PTB-tokenised one in the
third decimal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.metrics import score_captions

RESAMPLES = 5000


def read_captions(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{image name: (caption, references)} from an evaluation's captions_<split>.jsonl."""
    captions = {}
    with Path(path).open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                captions[Path(record["image"]).name] = (
                    str(record["caption"]),
                    [str(r) for r in record["references"]],
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not an evaluation caption record") from exc
    return captions


def compare_caption_files(
    baseline: Path, candidate: Path, resamples: int = RESAMPLES, seed: int = 0
) -> dict:
    """CIDEr of both files on their shared images, and the bootstrap of the difference."""
    first, second = read_captions(baseline), read_captions(candidate)
    names = sorted(set(first) & set(second))
    if not names:
        raise ValueError(f"{baseline} and {candidate} share no image")
    references = [first[name][1] for name in names]
    per_image, summary = {}, {}
    for tag, captions in (("baseline", first), ("candidate", second)):
        scores = score_captions(
            references, [captions[name][0] for name in names], full=False, per_image=True
        )
        per_image[tag] = np.asarray(scores.pop("CIDEr_per_image"))
        summary[tag] = scores
    difference = per_image["candidate"] - per_image["baseline"]
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(names), (resamples, len(names)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "images": len(names),
        "baseline": {"file": str(baseline), **summary["baseline"]},
        "candidate": {"file": str(candidate), **summary["candidate"]},
        "CIDEr_difference": float(difference.mean()),
        "CIDEr_difference_95ci": [float(low), float(high)],
        "resamples_not_better": float(np.mean(means <= 0)),
        "images_better": int((difference > 0).sum()),
        "images_worse": int((difference < 0).sum()),
    }
