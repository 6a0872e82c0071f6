"""CIDEr-D of single captions against one image's references, with corpus-level document
frequencies: the reward of self-critical training (`training.self_critical`).

pycocoevalcap's `Cider` scores a whole evaluation set at once and takes its document
frequencies from the references it is given. A reward needs the score of each sampled caption
on its own, thousands of times per epoch, against the document frequencies of the whole
training corpus; recomputing them per batch would make rare words look common. This is the same
formula (n-grams 1..4, tf-idf, clipped cosine, Gaussian length penalty with sigma 6, x10), with
the references' vectors computed once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

MAX_N = 4
SIGMA = 6.0

NgramCounts = Counter  # {ngram tuple: count}


def ngram_counts(words: Sequence[str], max_n: int = MAX_N) -> NgramCounts:
    counts: NgramCounts = Counter()
    for n in range(1, max_n + 1):
        for start in range(len(words) - n + 1):
            counts[tuple(words[start : start + n])] += 1
    return counts


class _Vector:
    """A caption's tf-idf weights per n-gram order, their norms, and its length."""

    __slots__ = ("length", "norms", "weights")

    def __init__(self, counts: NgramCounts, idf) -> None:
        self.weights: list[dict[tuple[str, ...], float]] = [{} for _ in range(MAX_N)]
        squares = [0.0] * MAX_N
        # pycocoevalcap counts bigrams as the length; the penalty only sees differences.
        self.length = 0
        for ngram, count in counts.items():
            order = len(ngram) - 1
            weight = count * idf(ngram)
            self.weights[order][ngram] = weight
            squares[order] += weight * weight
            if order == 1:
                self.length += count
        self.norms = [math.sqrt(s) for s in squares]


class CiderD:
    """Scores candidate captions of a given image against that image's references."""

    def __init__(self, references: Sequence[Sequence[Sequence[str]]]) -> None:
        """`references[i]` holds image i's reference captions, each a list of words."""
        self.document_frequency: Counter = Counter()
        counted = [[ngram_counts(ref) for ref in refs] for refs in references]
        for refs in counted:
            self.document_frequency.update({ngram for ref in refs for ngram in ref})
        self.log_images = math.log(float(len(references)))
        self.references = [[_Vector(ref, self._idf) for ref in refs] for refs in counted]

    def _idf(self, ngram: tuple[str, ...]) -> float:
        return self.log_images - math.log(max(1.0, self.document_frequency.get(ngram, 0)))

    def score(self, image: int, words: Sequence[str]) -> float:
        """CIDEr-D of one caption (a list of words) for image `image`."""
        candidate = _Vector(ngram_counts(words), self._idf)
        references = self.references[image]
        total = 0.0
        for reference in references:
            penalty = math.exp(-((candidate.length - reference.length) ** 2) / (2 * SIGMA**2))
            similarity = 0.0
            for order in range(MAX_N):
                ref_weights = reference.weights[order]
                dot = 0.0
                for ngram, weight in candidate.weights[order].items():
                    ref_weight = ref_weights.get(ngram)
                    if ref_weight is not None:
                        dot += min(weight, ref_weight) * ref_weight  # clipped, as CIDEr-D
                norm = candidate.norms[order] * reference.norms[order]
                similarity += dot / norm if norm else dot
            total += similarity / MAX_N * penalty
        return 10.0 * total / len(references)
