"""Captions that stop where the decoder stops being sure of what it says.

Outside Flickr8k's scenes the decoder still ends every sentence the way Flickr8k's captions end:
the subject right, then a setting it guesses ("a black and white dog is standing in front of a
waterfall" for a lapdog on a sofa). Each word's probability says how sure the decoder was of it,
so a caption can be cut before the first phrase, after the subject, holding a word the decoder
gave less than a floor: "a black and white dog is standing". A phrase starts at a preposition or
a conjunction ("in", "with", "while") or at "is"/"are"; a phrase start right after another one
belongs to the same phrase ("next to"). The subject is named first, so no cut loses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from captioning.text import Vocabulary

# Such captions name their subject among their first words ("a goblet ...", not "a large rock
# in the air above a goblet"): room for an article and three adjectives.
NAME_WITHIN = 5

PHRASE_STARTS = frozenset(
    {
        *("in", "on", "at", "with", "near", "next", "behind", "under", "over", "through"),
        *("by", "beside", "while", "into", "onto", "across", "along", "around", "down", "up"),
        *("from", "towards", "toward", "past", "outside", "inside", "during", "as", "against"),
        *("for", "to", "who", "that", "underneath", "beneath", "above", "between", "among"),
        *("out", "off", "is", "are"),
    }
)
# Words a caption may not end on: a cut after them leaves a noun phrase without its noun
# ("a little" from "a little is sitting on a train", where the decoder wrote no noun).
DANGLING = frozenset(
    {
        *("a", "an", "the", "two", "three", "four", "several", "many", "some", "little"),
        *("small", "large", "big", "young", "old", "white", "black", "brown", "red", "blue"),
        *("green", "yellow", "orange", "pink", "purple", "gray", "grey", "tan", "dark"),
    }
)


def phrase_kinds(vocabulary: Vocabulary) -> np.ndarray:
    """(V,) int8: 1 where a word starts a phrase, -1 where a caption may not end on it."""
    kinds = [1 if w in PHRASE_STARTS else -1 if w in DANGLING else 0 for w in vocabulary.words]
    return np.array(kinds, np.int8)


def sure_length(
    token_ids: Sequence[int],
    word_log_probs: Sequence[float],
    kinds: np.ndarray,
    *,
    keep: int,
    min_probability: float,
) -> int:
    """How many of the caption's words to keep: all of them, or those before the first phrase
    starting at word `keep` or later that holds a word below `min_probability`. `kinds` is
    `phrase_kinds`'s: no cut leaves a caption ending on a dangling word."""
    if min_probability <= 0.0 or len(word_log_probs) < len(token_ids):
        return len(token_ids)
    floor = math.log(min_probability)
    starts = [
        position
        for position in range(max(keep, 1), len(token_ids))
        if kinds[token_ids[position]] == 1 and kinds[token_ids[position - 1]] != 1
    ]
    cut = len(token_ids)  # the latest place a cut may go, so far
    ends = [*starts[1:], len(token_ids)] if starts else []
    for begin, end in zip(starts, ends, strict=True):
        if kinds[token_ids[begin - 1]] != -1:
            cut = begin
        if min(word_log_probs[begin:end]) < floor:
            return cut
    return len(token_ids)
