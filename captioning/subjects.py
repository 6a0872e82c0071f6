"""Naming the photo's subject: which concept a caption must name, and how it is written.

The decoder writes a concept's word, or a stand-in word it knows when its vocabulary lacks the
concept's ("animal" for a zebra, as in DCC); the caption then shows the concept's word in the
stand-in's place, with its article made to agree.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from captioning.bundle import ArtifactError
from captioning.concepts import COUNTABLE, PLURAL, ConceptTable
from captioning.phrases import ADJECTIVES
from captioning.text import Vocabulary

# On photos where grounding finds none of Flickr8k's subjects (people, dogs), the decoder's own
# subject is a guess from Flickr8k's scenes ("a small brown and white duck" for a meat loaf), so
# there a concept is named from this lower probability on when none reaches the threshold.
# Tuned on the shared photos (docs/experiments.md).
UNKNOWN_SCENE_CONCEPT_THRESHOLD = 0.25


@dataclass(frozen=True)
class Subject:
    """The concept a caption is made to name, and how. The decoder writes one of the
    `written` tokens (the concept's word or a stand-in it knows, singular or plural), and
    the caption shows the concept's word in its place. A caption that already has one of the
    `named` tokens (the concept or a broader one, as words: "dog" for a terrier) is kept."""

    word: str  # the concept's own word
    written: dict[int, str]  # token -> the words shown in its place
    named: frozenset[int]
    # The tokens of the concept and its broader concepts ("dog" for a terrier): what the
    # concept is evidence for, so grounding lets a caption say them.
    supported: frozenset[int] = frozenset()
    form: str = COUNTABLE  # how its word is written: "a desk", "bread", "jeans"
    # The verb frames caption text says before it or a broader concept ("riding" a bicycle);
    # None: the table checks none.
    frames: frozenset[str] | None = None


class SubjectNamer:
    """The subjects of images from their concept probabilities, and captions that show them."""

    def __init__(
        self,
        table: ConceptTable,
        vocabulary: Vocabulary,
        threshold: float,
        unknown_scene_threshold: float = UNKNOWN_SCENE_CONCEPT_THRESHOLD,
    ) -> None:
        stand_ins = {*table.stand_ins, *(w for w in table.stand_in_plurals if w)}
        unknown = sorted(w for w in stand_ins if w not in vocabulary)
        if unknown:
            raise ArtifactError(f"concepts.json: stand-in words not in tokenizer.p: {unknown[:5]}")
        self.table = table
        self.vocabulary = vocabulary
        self.threshold = threshold
        # Never above the threshold: a photo outside Flickr8k's scenes needs no more evidence.
        self.unknown_scene_threshold = min(unknown_scene_threshold, threshold)
        self._cache: dict[int, Subject] = {}

    def subject(self, index: int) -> Subject:
        """Concept `index` as a `Subject` (built once per concept)."""
        if index not in self._cache:
            table, vocabulary = self.table, self.vocabulary
            form = table.form(index)
            shown = table.plurals[index] if form == PLURAL else table.words[index]
            written = {vocabulary.id_of(table.stand_ins[index]): shown}
            if table.stand_in_plurals[index]:
                written[vocabulary.id_of(table.stand_in_plurals[index])] = table.plurals[index]
            named = self._tokens(table.related(index))
            supported = self._tokens(table.broader(index)) | written.keys()
            frames = None
            if table.checked_frames:
                frames = frozenset(f for c in table.broader(index) for f in table.frames_of(c))
            self._cache[index] = Subject(
                table.words[index], written, named, frozenset(supported), form, frames
            )
        return self._cache[index]

    def _tokens(self, concepts: frozenset[int]) -> frozenset[int]:
        """The vocabulary's tokens for these concepts' words, plurals and synonyms."""
        table, vocabulary = self.table, self.vocabulary
        return frozenset(
            vocabulary.id_of(word)
            for concept in concepts
            for word in (table.words[concept], table.plurals[concept], *table.synonyms[concept])
            if word in vocabulary
        )

    def subjects(
        self, concepts: np.ndarray, unknown_scene: Sequence[bool] | None = None
    ) -> list[Subject | None]:
        """Each image's most specific confident concept, from (images, concepts) probabilities;
        for an image marked in `unknown_scene`, the most specific concept at
        `unknown_scene_threshold` among those the confident one covers ("a bird" becomes "a
        black swan"), or among all when none is confident."""
        marked = [False] * len(concepts) if unknown_scene is None else unknown_scene
        found = []
        for row, unknown in zip(concepts, marked, strict=True):
            index = self.table.subject(row, self.threshold)
            if unknown:
                index = self.table.subject(row, self.unknown_scene_threshold, within=index)
            found.append(index)
        return [None if index is None else self.subject(index) for index in found]

    def plain_name(
        self,
        subject: Subject | None,
        concepts: np.ndarray,
        floor: float,
        forbidden: frozenset[str] = frozenset(),
    ) -> str | None:
        """'a whistle': the subject's word with its article or, when there is no subject, the
        likeliest concept's at `floor` or above whose words are not `forbidden` (grounding's:
        no "a dog" without a dog); None when no concept qualifies."""
        found = None if subject is None else self.table.words.index(subject.word)
        for index in np.argsort(-concepts, kind="stable") if found is None else ():
            if concepts[index] < floor:
                break
            if not forbidden.intersection(self.table.words[index].split(" ")):
                found = int(index)
                break
        if found is None:
            return None
        form = self.table.form(found)
        word = self.table.plurals[found] if form == PLURAL else self.table.words[found]
        return " ".join(name_subject(("a", word), 1, word, form))

    def show(
        self, words: tuple[str, ...], token_ids: tuple[int, ...], subject: Subject
    ) -> tuple[str, ...]:
        """The caption's words with the concept's word where the decoder wrote a stand-in, and
        an article before a counted one that opens the caption (the constrained search may
        start with it: "bell cote is standing" -> "a bell cote is standing")."""
        position = next((i for i, t in enumerate(token_ids) if t in subject.written), None)
        if position is None:
            return words
        word = subject.written[token_ids[position]]
        if position == 0 and word == subject.word and subject.form == COUNTABLE:
            words, position = ("a", *words), 1
        return name_subject(words, position, word, subject.form)


_AN_EXCEPTIONS = ("uni", "use", "usu", "eu", "one", "once")
_SILENT_H = ("hour", "honest", "honor", "honour", "heir")


def name_subject(
    words: tuple[str, ...], position: int, word: str, form: str = COUNTABLE
) -> tuple[str, ...]:
    """The caption with `word` at `position` (where the decoder wrote its stand-in), and the
    article before it agreeing ("a animal" -> "an axolotl", "an animal" -> "a zebra"); a word
    of another `form` than COUNTABLE loses the article ("a bread" -> "bread"), and a PLURAL
    one takes a plural verb ("jeans are")."""
    named = list(words)
    parts = word.split(" ")
    # "soccer" + "ball" -> "soccer ball", not "soccer soccer ball".
    lead = next(
        (
            k
            for k in range(len(parts) - 1, 0, -1)
            if named[max(position - k, 0) : position] == parts[:k]
        ),
        0,
    )
    named[position - lead : position + 1] = [word]
    if form != COUNTABLE:
        named = _without_article(named, position - lead, plural=form == PLURAL)
    return agree_articles(named)


def _without_article(words: list[str], at: int, *, plural: bool) -> list[str]:
    """The words without the "a"/"an" that opens the noun phrase of the word at `at` (before
    its adjectives), and with "is" after it made "are" for a `plural` word."""
    start = at - 1
    while start >= 0 and (words[start] in ADJECTIVES or words[start] == "and"):
        start -= 1
    kept = list(words)
    if start >= 0 and kept[start] in ("a", "an"):
        del kept[start]
        at -= 1
    if plural and at + 1 < len(kept) and kept[at + 1] == "is":
        kept[at + 1] = "are"
    return kept


def agree_articles(words: Sequence[str]) -> tuple[str, ...]:
    """The words with each "a" or "an" agreeing with the word after it ("a atv" -> "an atv")."""
    agreed = list(words)
    for position, (word, following) in enumerate(itertools.pairwise(words)):
        if word in ("a", "an"):
            agreed[position] = "an" if takes_an(following) else "a"
    return tuple(agreed)


def takes_an(word: str) -> bool:
    """Whether the word's article is "an"."""
    if word.startswith(_SILENT_H):
        return True
    return word[:1] in "aeiou" and not word.startswith(_AN_EXCEPTIONS)
