"""Captions cut where the decoder is unsure: where the cut may go and where it may not."""

from __future__ import annotations

import math

import pytest

from captioning.phrases import (
    COLOURS,
    DANGLING_WORD,
    PHRASE,
    VERB_PHRASE,
    frame_rule,
    phrase_kinds,
    sure_length,
    sure_words,
    word_roles,
)
from captioning.text import END_TOKEN, SPECIAL_TOKENS, Vocabulary

WORDS = [
    "a",
    "little",
    "brown",
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
    "and",
    "white",
    "helmet",
    "wearing",
]
VOCABULARY = Vocabulary(SPECIAL_TOKENS + tuple(WORDS))
KINDS = phrase_kinds(VOCABULARY)
SURE, UNSURE = 0.9, 0.05


def kept(
    text: str,
    probabilities: list[float],
    *,
    keep: int = 1,
    floor: float = 0.1,
    keep_verb: bool = False,
) -> str:
    words = text.split()
    assert len(words) == len(probabilities)
    length = sure_length(
        [VOCABULARY.id_of(w) for w in words],
        [math.log(p) for p in probabilities],
        KINDS,
        keep=keep,
        min_probability=floor,
        keep_verb=keep_verb,
    )
    return " ".join(words[:length])


def test_the_caption_stops_before_the_first_unsure_phrase():
    text = "a dog is standing on the grass with a ball"
    assert kept(text, [SURE] * 9 + [UNSURE]) == "a dog is standing on the grass"
    assert kept(text, [SURE, SURE, SURE, UNSURE, SURE, SURE, SURE, SURE, SURE, SURE]) == "a dog"


def test_a_verb_phrase_goes_with_the_guess_it_led_into():
    """'a zebra is riding' was on its way to 'on a dirt path'; alone it is no truer."""
    text = "a dog is standing on the grass"
    assert kept(text, [SURE] * 6 + [UNSURE]) == "a dog"
    assert kept("a dog is standing", [SURE] * 4) == "a dog is standing"
    # Where the decoder knows the scene (a setting without evidence cut), the verb stays.
    assert kept(text, [SURE] * 6 + [UNSURE], keep_verb=True) == "a dog is standing"


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
    text = "a dog with a ball next to a tree"
    assert kept(text, [SURE] * 5 + [UNSURE, SURE, SURE, SURE]) == "a dog with a ball"
    assert kept(text, [SURE] * 8 + [UNSURE]) == "a dog with a ball"


def test_no_cut_leaves_a_noun_phrase_without_its_noun():
    """'a little is standing on the grass' (no noun written) is not cut to 'a little'."""
    text = "a little is standing on the grass"
    assert kept(text, [SURE, SURE, SURE, UNSURE, SURE, SURE, SURE]) == text
    text = "a little with the ball on the grass"
    assert kept(text, [SURE] * 7 + [UNSURE]) == "a little with the ball"


@pytest.mark.parametrize("word", ["on", "with", "next"])
def test_phrase_starts_and_dangling_words_are_marked(word):
    assert KINDS[VOCABULARY.id_of(word)] == PHRASE
    assert KINDS[VOCABULARY.id_of("is")] == VERB_PHRASE
    assert KINDS[VOCABULARY.id_of("little")] == DANGLING_WORD
    assert KINDS[VOCABULARY.id_of("dog")] == 0


def test_unsure_words_between_the_article_and_the_subject_go():
    words = ["a", "little", "brown", "dog", "on", "the", "grass"]
    ids = [VOCABULARY.id_of(w) for w in words]

    def kept_words(probabilities: list[float], subject_at: int | None) -> str:
        log_probs = [math.log(p) for p in probabilities]
        positions = sure_words(ids, log_probs, KINDS, subject_at=subject_at, min_probability=0.1)
        return " ".join(words[i] for i in positions)

    assert kept_words([SURE, SURE, UNSURE, SURE, SURE, SURE, SURE], 3) == "a dog on the grass"
    assert kept_words([SURE, SURE, UNSURE, SURE, SURE, SURE, UNSURE], 3) == "a dog"
    assert kept_words([SURE] * 7, 3) == "a little brown dog on the grass"
    # Without a subject there is nothing to keep them from.
    assert kept_words([SURE, SURE, UNSURE, SURE, SURE, SURE, SURE], None) == " ".join(words)


def test_a_guessed_colour_before_the_subject_goes_however_sure() -> None:
    words = ["a", "little", "brown", "dog", "on", "the", "grass"]
    ids = [VOCABULARY.id_of(w) for w in words]
    sure = [math.log(SURE)] * len(words)
    colours = frozenset(VOCABULARY.id_of(w) for w in COLOURS if w in VOCABULARY)
    kept = sure_words(ids, sure, KINDS, subject_at=3, min_probability=0.1, guessed=colours)
    assert " ".join(words[i] for i in kept) == "a dog on the grass"


ROLES = word_roles(VOCABULARY)


def blocked(prefix: str) -> set[str]:
    """The words `WordRoles.blocked_after` forbids after the caption so far."""
    ids = [VOCABULARY.id_of(word) for word in prefix.split()]
    return {VOCABULARY.words[i] for i in ROLES.blocked_after(ids)}


@pytest.mark.parametrize(
    ("prefix", "forbidden", "allowed"),
    [
        # The noun grounding took away leaves an adjective: no verb, phrase or end after it.
        ("a little", {"is", "on", "with", END_TOKEN}, {"dog", "brown"}),
        ("a", {"is", "on", END_TOKEN}, {"dog", "little"}),
        ("a brown and white", {"is", "on", END_TOKEN, "brown"}, {"dog"}),
        # After "is" an adjective ends the sentence well.
        ("the dog is white", {"white"}, {END_TOKEN, "on", "and", "with"}),
        ("a dog is", {"is"}, {"standing", "on"}),
        ("a white and", {"white", END_TOKEN, "is"}, {"brown"}),
        ("a dog wearing a helmet and a", {"helmet"}, {"ball"}),
        ("a dog and a", {"dog", END_TOKEN}, {"ball"}),
    ],
)
def test_word_roles_forbid_broken_grammar(prefix, forbidden, allowed) -> None:
    found = blocked(prefix)
    assert forbidden <= found
    assert not allowed & found


def test_a_dog_and_another_dog_stay_possible() -> None:
    """Only the word right after "and", or after one modifier, may not repeat the one before."""
    assert "dog" not in blocked("a brown dog and a white")


FRAME_WORDS = ("a", "girl", "is", "riding", "sitting", "on", "red", "sax", "horse", "player")


@pytest.mark.parametrize(
    ("caption", "attested", "expected"),
    [
        ("a girl is riding a red sax", (), "a girl with a red sax"),
        ("a girl is sitting on a sax", (), "a girl with a sax"),
        ("a girl is riding a horse", ("riding",), "a girl is riding a horse"),  # attested
        ("a girl is riding a sax player", (), "a girl is riding a sax player"),  # a modifier
        ("a sax", (), "a sax"),  # no verb
    ],
)
def test_an_unattested_verb_before_a_written_in_noun_becomes_with(
    caption, attested, expected
) -> None:
    vocabulary = Vocabulary((*SPECIAL_TOKENS, *FRAME_WORDS, "with", "and"))
    rule = frame_rule(vocabulary, ("riding", "sitting on"))
    ids = [vocabulary.id_of(word) for word in caption.split()]
    noun = "sax" if "sax" in caption else "horse"
    span = rule.loose_span(ids, caption.split().index(noun), frozenset(attested))
    if span is not None:
        ids = [*ids[: span[0]], vocabulary.id_of("with"), *ids[span[1] :]]
    assert " ".join(vocabulary.decode(ids)) == expected
