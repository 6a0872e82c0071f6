"""Grounding's rule: a word that claims a person, a dog, a cat, or two or more of them, is
written only where the photo's evidence supports it; so is a word that only a living thing
does or has ("running", "its mouth"): a violin is not playing, a glove has no mouth.

`grounding.json` (built by `training`, from WordNet) lists the claims: for each evidence label
and count, the vocabulary words that need it ("man" needs a person, "men" two or more, "shirt"
a person to wear it, "two" two or more of anything counted). Decoding gets, per image, a word
penalty that forbids the words whose claims the image's evidence does not meet; the words that
name the photo's subject (its concept) stay allowed, since the concept is evidence of its own.
A claim marked as a setting ("snow" needs snow) forbids nothing: the phrase holding its word is
cut from the caption where the evidence does not meet it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from captioning.decoder_step import NEG_INF
from captioning.text import Vocabulary
from captioning.types import Evidence

ANY_LABEL = "*"  # a claim that any label's evidence can meet ("two" of whatever it is)
# A claim's label may list alternatives, any of which meets it: "person|dog|cat|animal".
ALTERNATIVES = "|"
# A grounded caption scoring below this (log-prob per word) is word salad: the decoder, kept
# from its usual noun ("a small brown and white ... dog"), strings adjectives together. No
# caption without grounding scores this low on the shared photos (docs/experiments.md); such
# a caption is replaced by the photo's concept named plainly ("a whistle").
FLUENCY_FLOOR = -2.4
# The concept used then, when the photo has no confident one: the likeliest at this or above.
FALLBACK_CONCEPT_MIN = 0.1
# Short words a fluent caption repeats freely; any other word three times, or any word twice in a
# row ("haired haired"), marks salad as well.
FUNCTION_WORDS = frozenset(
    {"a", "an", "the", "and", "of", "in", "on", "with", "is", "are", "at", "to"}
)


def is_word_salad(words: Sequence[str], score: float) -> bool:
    """Whether a grounded caption is salad: below `FLUENCY_FLOOR`, a word twice in a row, or a
    content word three times ("a small brown and white haired brown and brown haired ...")."""
    if score < FLUENCY_FLOOR or any(a == b for a, b in itertools.pairwise(words)):
        return True
    counts = Counter(word for word in words if word not in FUNCTION_WORDS)
    return any(count >= 3 for count in counts.values())


@dataclass(frozen=True)
class Claim:
    label: str  # an evidence label, labels joined by ALTERNATIVES, or ANY_LABEL
    count: int  # 1: present; 2: two or more
    words: tuple[str, ...]
    # A setting ("in the snow"): where the evidence does not meet it, the phrase holding the
    # word is cut from the caption instead of the word being forbidden, so the decoder does not
    # swap one guessed setting for another ("in the snow" for "in the grass").
    setting: bool = False

    def met_by(self, counts: dict[str, int]) -> bool:
        """Whether evidence counts {label: 1 or 2} meet this claim."""
        if self.label == ANY_LABEL:
            return any(count >= self.count for count in counts.values())
        return any(counts.get(label, 0) >= self.count for label in self.label.split(ALTERNATIVES))

    @classmethod
    def from_plain(cls, data: dict) -> Claim:
        words = tuple(str(w) for w in data["words"])
        return cls(str(data["label"]), int(data["count"]), words, bool(data.get("setting", False)))

    def to_plain(self) -> dict:
        plain = {"label": self.label, "count": self.count, "words": list(self.words)}
        return {**plain, "setting": True} if self.setting else plain


def evidence_counts(evidence: Iterable[Evidence]) -> dict[str, int]:
    """{label: 1, or 2 for two or more} from an image's evidence (present items only)."""
    counts: dict[str, int] = {}
    for item in evidence:
        counts[item.label] = max(counts.get(item.label, 0), min(item.count or 1, 2))
    return counts


class ClaimRule:
    """The claims over one vocabulary: evidence in, the words an image may not say out."""

    def __init__(self, claims: Sequence[Claim], vocabulary: Vocabulary) -> None:
        self.claims = tuple(claims)
        self.vocab_size = len(vocabulary)
        # Words the vocabulary lacks cannot be written anyway.
        self._token_ids = [
            np.array([vocabulary.id_of(w) for w in claim.words if w in vocabulary], np.int64)
            for claim in self.claims
        ]
        self._rows: dict[frozenset[int], np.ndarray] = {}

    def unmet(self, evidence: Iterable[Evidence], settings: bool = False) -> frozenset[int]:
        """Indices of the claims (the settings' with `settings`) an image's evidence does
        not meet."""
        counts = evidence_counts(evidence)
        return frozenset(
            i
            for i, claim in enumerate(self.claims)
            if claim.setting == settings and not claim.met_by(counts)
        )

    def forbidden_words(self, evidence: Iterable[Evidence]) -> frozenset[str]:
        """The words an image's evidence does not license (settings aside)."""
        unmet = self.unmet(evidence)
        return frozenset(word for i in unmet for word in self.claims[i].words)

    def unsupported_settings(self, evidence: Iterable[Evidence]) -> frozenset[int]:
        """The token ids of the settings an image's evidence does not support: a caption's
        phrase holding one is cut."""
        return frozenset(self.forbidden(self.unmet(evidence, settings=True)).tolist())

    def forbidden(self, unmet: frozenset[int]) -> np.ndarray:
        """The token ids the unmet claims forbid (cached: few images differ in their claims)."""
        if unmet not in self._rows:
            found = [self._token_ids[i] for i in sorted(unmet)]
            self._rows[unmet] = np.unique(np.concatenate(found)) if found else np.zeros(0, int)
        return self._rows[unmet]

    def word_penalty(
        self,
        evidence: Sequence[Sequence[Evidence]],
        allowed: Sequence[Iterable[int]] | None = None,
    ) -> np.ndarray:
        """(images, V): NEG_INF for each image's forbidden words, else 0; `allowed[i]` are
        token ids image i may say whatever its evidence (its subject's words)."""
        penalty = np.zeros((len(evidence), self.vocab_size), np.float32)
        for image, items in enumerate(evidence):
            forbidden = self.forbidden(self.unmet(items))
            if allowed is not None:
                forbidden = np.setdiff1d(forbidden, np.fromiter(allowed[image], np.int64))
            penalty[image, forbidden] = NEG_INF
        return penalty
