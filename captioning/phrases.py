"""Captions that stop where the decoder stops being sure of what it says.

Outside Flickr8k's scenes the decoder still ends every sentence the way Flickr8k's captions end:
the subject right, then a setting it guesses ("a black and white dog is standing in front of a
waterfall" for a lapdog on a sofa). Each word's probability says how sure the decoder was of it,
so a caption can be cut before the first phrase, after the subject, holding a word the decoder
gave less than a floor: "a black and white dog". A phrase starts at a preposition or a
conjunction ("in", "with", "while") or at "is"/"are"; a phrase start right after another one
belongs to the same phrase ("next to"). A verb phrase right before the cut goes with it: the verb
led into the guess ("a zebra is riding" on a dirt path). The subject is named first, so no cut
loses it. The words between the article and the subject go too when one of them is below the
floor: the decoder's colours are guesses on such photos ("a black and white vending machine").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

from captioning.text import END_ID, SPECIAL_TOKENS, Vocabulary

# Such captions name their subject among their first words ("a goblet ...", not "a large rock
# in the air above a goblet"): room for an article and three adjectives.
NAME_WITHIN = 5

PHRASE_STARTS = frozenset(
    {
        *("in", "on", "at", "with", "near", "next", "behind", "under", "over", "through"),
        *("by", "beside", "while", "into", "onto", "across", "along", "around", "down", "up"),
        *("from", "towards", "toward", "past", "outside", "inside", "during", "as", "against"),
        *("for", "to", "who", "that", "underneath", "beneath", "above", "between", "among"),
        *("out", "off"),
    }
)
VERB_STARTS = frozenset({"is", "are"})
# Words that open a noun phrase, and the adjectives the decoder puts in one.
DETERMINERS = frozenset({"a", "an", "the", "two", "three", "four", "several", "many", "some"})
ADJECTIVES = frozenset(
    {
        *("little", "small", "large", "big", "young", "old", "white", "black", "brown", "red"),
        *("blue", "green", "yellow", "orange", "pink", "purple", "gray", "grey", "tan", "dark"),
    }
)
# Colours, which the decoder says of Flickr8k's dogs and clothes: on a photo outside those
# scenes a colour before the subject is a guess (one in four true on the shared photos).
COLOURS = frozenset(
    {"white", "black", "brown", "red", "blue", "green", "yellow", "orange", "pink", "purple"}
    | {"gray", "grey", "tan"}
)
# Words a caption may not end on: a cut after them leaves a noun phrase without its noun
# ("a little" from "a little is sitting on a train", where the decoder wrote no noun).
DANGLING = DETERMINERS | ADJECTIVES

# What `phrase_kinds` says of a word.
PHRASE, VERB_PHRASE, DANGLING_WORD = 1, 2, -1


def phrase_kinds(vocabulary: Vocabulary) -> np.ndarray:
    """(V,) int8 per word: PHRASE or VERB_PHRASE where it starts one, DANGLING_WORD where a
    caption may not end on it, else 0."""
    kinds = [
        PHRASE
        if word in PHRASE_STARTS
        else VERB_PHRASE
        if word in VERB_STARTS
        else DANGLING_WORD
        if word in DANGLING
        else 0
        for word in vocabulary.words
    ]
    return np.array(kinds, np.int8)


def sure_length(
    token_ids: Sequence[int],
    word_log_probs: Sequence[float],
    kinds: np.ndarray,
    *,
    keep: int,
    min_probability: float,
    keep_verb: bool = False,
) -> int:
    """How many of the caption's words to keep: all of them, or those before the first phrase
    starting at word `keep` or later that holds a word below `min_probability`. `kinds` is
    `phrase_kinds`'s: no cut leaves a caption ending on a dangling word. A verb phrase right
    before the cut goes too, unless `keep_verb` (the decoder was sure of its verb)."""
    if min_probability <= 0.0 or len(word_log_probs) < len(token_ids):
        return len(token_ids)  # off, or a hypothesis without its words' log-probabilities
    kind = [int(kinds[token]) for token in token_ids]
    starts = [
        position
        for position in range(max(keep, 1), len(token_ids))
        if kind[position] > 0 and kind[position - 1] <= 0
    ]
    allowed: list[int] = []  # the places a cut may go, so far
    ends = [*starts[1:], len(token_ids)] if starts else []
    for begin, end in zip(starts, ends, strict=True):
        if kind[begin - 1] != DANGLING_WORD:
            allowed.append(begin)
        if not holds_unsure_word(word_log_probs[begin:end], min_probability):
            continue
        if not allowed:
            return len(token_ids)
        cut = allowed[-1]
        before = starts[starts.index(cut) - 1] if starts.index(cut) else None
        if not keep_verb and before in allowed and kind[before] == VERB_PHRASE:  # led to the cut
            return before
        return cut
    return len(token_ids)


def holds_unsure_word(word_log_probs: Sequence[float], min_probability: float) -> bool:
    """Whether any of these words' probabilities is below `min_probability`."""
    return min_probability > 0.0 and any(p < math.log(min_probability) for p in word_log_probs)


def sure_words(
    token_ids: Sequence[int],
    word_log_probs: Sequence[float],
    kinds: np.ndarray,
    *,
    subject_at: int | None,
    min_probability: float,
    guessed: AbstractSet[int] = frozenset(),
) -> list[int]:
    """The positions of the words a caption keeps: those before `sure_length`'s cut (after the
    subject, the word at `subject_at`), less the words between the first word (an article or a
    number, a dangling word) and the subject when one of them is below `min_probability` or
    among the `guessed` ("a black and white steel drum" keeps "a steel drum"). The caller
    makes an article agree."""
    length = sure_length(
        token_ids,
        word_log_probs,
        kinds,
        keep=(subject_at or 0) + 1,
        min_probability=min_probability,
    )
    modifiers = subject_at is not None and subject_at >= 2 and kinds[token_ids[0]] == DANGLING_WORD
    if modifiers and (
        holds_unsure_word(word_log_probs[1:subject_at], min_probability)
        or any(token in guessed for token in token_ids[1:subject_at])
    ):
        return [0, *range(subject_at, length)]
    return list(range(length))


@dataclass(frozen=True)
class WordRoles:
    """What the searches need to know of a few words to keep a sentence whole (token ids).

    When grounding forbids the noun the decoder was heading for, it can fall into broken
    English: "a little is sitting on a train" (no "girl"), "a white and white bird", "is is".
    The predictor decodes such a caption again with the searches forbidding these
    continuations (`blocked_after`), so the beam takes its next best, whole sentence.
    """

    conjunction: int | None  # "and"
    determiners: frozenset[int]
    adjectives: frozenset[int]
    # What may not follow a determiner or an adjective in a noun phrase: a phrase, a verb, <end>.
    not_after_modifier: tuple[int, ...]

    def blocked_after(self, words: Sequence[int]) -> list[int]:
        """The words that may not come next after `words` (a caption so far): the last word
        again ("is is"); the word before "and", right after it or after one modifier ("white
        and white", "a helmet and a helmet"); and, after a determiner or an adjective that
        belongs to a noun phrase ("a little", not "is white"), anything but more of the
        phrase."""
        if not words:
            return []
        last = words[-1]
        blocked = [last] if last >= len(SPECIAL_TOKENS) else []
        if len(words) >= 2 and last == self.conjunction:
            blocked.append(words[-2])
        elif (
            len(words) >= 3
            and words[-2] == self.conjunction
            and (last in self.determiners or last in self.adjectives)
        ):
            blocked.append(words[-3])
        if self._opens_noun_phrase(words):
            blocked.extend(self.not_after_modifier)
        return blocked

    def breaks(self, token_ids: Sequence[int]) -> bool:
        """Whether a caption writes a word `blocked_after` forbids where it stands."""
        return any(
            token_ids[i] in self.blocked_after(token_ids[:i]) for i in range(1, len(token_ids))
        )

    def _opens_noun_phrase(self, words: Sequence[int]) -> bool:
        """Whether the caption so far ends inside a noun phrase before its noun: on a
        determiner, or on adjectives (joined by "and") that follow one."""
        position = len(words) - 1
        while position >= 0 and (
            words[position] in self.adjectives or words[position] == self.conjunction
        ):
            position -= 1
        return position >= 0 and words[position] in self.determiners


def word_roles(vocabulary: Vocabulary) -> WordRoles:
    """The vocabulary's `WordRoles`."""

    def ids(words: frozenset[str]) -> frozenset[int]:
        return frozenset(vocabulary.id_of(word) for word in words if word in vocabulary)

    phrase_or_verb = ids(PHRASE_STARTS | VERB_STARTS)
    return WordRoles(
        conjunction=vocabulary.id_of("and") if "and" in vocabulary else None,
        determiners=ids(DETERMINERS),
        adjectives=ids(ADJECTIVES),
        not_after_modifier=(*sorted(phrase_or_verb), END_ID),
    )


@dataclass(frozen=True)
class FrameRule:
    """Which verb before a written-in concept goes: where the search wrote the photo's concept
    into the decoder's sentence, the verb before it was chosen for another noun ("a girl is
    riding a sax"). A `checked` frame ("riding", "sitting on") that caption text never says of
    the concept becomes "with" ("a girl with a sax"); token ids as the vocabulary's."""

    kinds: np.ndarray  # `phrase_kinds`
    participles: frozenset[int]  # the words ending in -ing
    words: tuple[str, ...]  # the vocabulary's words
    checked: frozenset[str]
    with_id: int | None
    and_id: int | None

    def loose_span(
        self, token_ids: Sequence[int], at: int, attested: AbstractSet[str]
    ) -> tuple[int, int] | None:
        """The span [start, end) of "is/are VERBing [PREPOSITION]" before the noun phrase whose
        noun, at `at`, heads it ("a sax", not "a sax player"), where that frame is checked and
        not `attested` of the noun; None where none goes."""
        if self.with_id is None or not self.checked:
            return None
        following = token_ids[at + 1] if at + 1 < len(token_ids) else None
        if following is not None and following != self.and_id and self.kinds[following] <= 0:
            return None  # the noun is a modifier: "a sax player"
        phrase = at
        while phrase > 0 and self.kinds[token_ids[phrase - 1]] == DANGLING_WORD:
            phrase -= 1  # "a", "a red", "two small"
        verb = phrase - 1
        if phrase == at or verb < 1:
            return None
        if self.kinds[token_ids[verb]] == PHRASE:
            verb -= 1  # "sitting on"
        if verb < 1 or token_ids[verb] not in self.participles:
            return None
        if self.kinds[token_ids[verb - 1]] != VERB_PHRASE:
            return None
        frame = " ".join(self.words[token] for token in token_ids[verb:phrase])
        if frame not in self.checked or frame in attested:
            return None
        return verb - 1, phrase


def frame_rule(vocabulary: Vocabulary, checked: Iterable[str]) -> FrameRule:
    """The vocabulary's `FrameRule` for the `checked` frames (a concept table's)."""

    def optional(word: str) -> int | None:
        return vocabulary.id_of(word) if word in vocabulary else None

    return FrameRule(
        kinds=phrase_kinds(vocabulary),
        participles=frozenset(i for i, word in enumerate(vocabulary.words) if word.endswith("ing")),
        words=tuple(vocabulary.words),
        checked=frozenset(checked),
        with_id=optional("with"),
        and_id=optional("and"),
    )
