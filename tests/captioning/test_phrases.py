"""Captions cut where the decoder is unsure: where the cut may go and where it may not."""

from __future__ import annotations

import math

import pytest

from captioning.phrases import phrase_kinds, sure_length
from captioning.text import SPECIAL_TOKENS, Vocabulary

WORDS = [
    "a",
    "little",
    "dog",
    "is",
    "standing",
    "on",
    "the",
    "grass",
    "next",
    "to",
    "tree",
    "with",
    "ball",
]
VOCABULARY = Vocabulary(SPECIAL_TOKENS + tuple(WORDS))
KINDS = phrase_kinds(VOCABULARY)
SURE, UNSURE = 0.9, 0.05


def kept(text: str, probabilities: list[float], *, keep: int = 1, floor: float = 0.1) -> str:
    words = text.split()
    assert len(words) == len(probabilities)
    length = sure_length(
        [VOCABULARY.id_of(w) for w in words],
        [math.log(p) for p in probabilities],
        KINDS,
        keep=keep,
        min_probability=floor,
    )
    return " ".join(words[:length])


def test_the_caption_stops_before_the_first_unsure_phrase():
    text = "a dog is standing on the grass"
    assert kept(text, [SURE] * 6 + [UNSURE]) == "a dog is standing"
    assert kept(text, [SURE, SURE, SURE, UNSURE, SURE, SURE, UNSURE]) == "a dog"


def test_a_sure_caption_and_a_zero_floor_keep_every_word():
    text = "a dog is standing on the grass"
    assert kept(text, [SURE] * 7) == text
    assert kept(text, [UNSURE] * 7, floor=0.0) == text


def test_words_up_to_the_subject_stay_however_unsure():
    text = "a dog is standing with a ball"
    probabilities = [SURE, SURE, SURE, UNSURE, SURE, SURE, SURE]
    assert kept(text, probabilities) == "a dog"
    assert kept(text, probabilities, keep=4) == "a dog is standing with a ball"
    assert kept(text, [SURE] * 6 + [UNSURE], keep=7) == text


def test_phrase_starts_in_a_row_are_one_phrase():
    """'next to a tree' is cut whole, never after 'next'."""
    text = "a dog is standing next to a tree"
    assert kept(text, [SURE] * 5 + [UNSURE, SURE, SURE]) == "a dog is standing"
    assert kept(text, [SURE] * 7 + [UNSURE]) == "a dog is standing"


def test_no_cut_leaves_a_noun_phrase_without_its_noun():
    """'a little is standing on the grass' (no noun written) is not cut to 'a little'."""
    text = "a little is standing on the grass"
    assert kept(text, [SURE, SURE, SURE, UNSURE, SURE, SURE, SURE]) == text
    assert kept(text, [SURE] * 6 + [UNSURE]) == "a little is standing"


@pytest.mark.parametrize("word", ["on", "is", "with", "next"])
def test_phrase_starts_and_dangling_words_are_marked(word):
    assert KINDS[VOCABULARY.id_of(word)] == 1
    assert KINDS[VOCABULARY.id_of("little")] == -1
    assert KINDS[VOCABULARY.id_of("dog")] == 0
