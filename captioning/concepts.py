"""Concepts: the encoder's ImageNet classes rolled up into caption words.

`concepts.json` (built by `training.concepts` from WordNet, shipped in `artifacts/`) lists,
for each of the classifier's classes, the concepts it belongs to, most specific first
("tabby" -> cat, mammal). A concept's probability is the sum of its classes' probabilities,
so 120 dog breeds of 0.5% each still make a confident "dog". Serving needs no WordNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from captioning.plain_file import PlainJsonFile

CONCEPTS_FORMAT = "captioner-concepts/1"
# A concept is reported as a tag, and named in the caption, from this probability on. Tuned
# on the shared sets: at 0.4 the open-world photos gain most while Flickr8k dev CIDEr holds
# (docs/experiments.md).
DEFAULT_CONCEPT_THRESHOLD = 0.4
# How a concept's word is written with nothing of the decoder's around it ("a desk", "bread",
# "jeans"): counted from caption text when the table is built (`training.noun_forms`).
COUNTABLE, MASS, PLURAL = "countable", "mass", "plural"
NOUN_FORMS = (COUNTABLE, MASS, PLURAL)


@dataclass(frozen=True)
class Tag:
    word: str
    probability: float


@dataclass(frozen=True)
class ConceptTable(PlainJsonFile):
    FILE = "concepts.json"

    class_ids: tuple[str, ...]  # the classifier's classes, in its output order (wnids)
    class_concepts: tuple[tuple[int, ...], ...]  # per class: concept indices, specific first
    words: tuple[str, ...]  # per concept: its caption word
    wnids: tuple[str, ...]  # per concept: its WordNet synset
    stand_ins: tuple[str, ...]  # per concept: the vocabulary word decoded in its place
    plurals: tuple[str, ...]  # per concept: its word in the plural
    stand_in_plurals: tuple[str | None, ...]  # the stand-in's plural, if the vocabulary has it
    synonyms: tuple[tuple[str, ...], ...]  # per concept: its other lemmas ("bike", "cycle")
    # Per concept: COUNTABLE, MASS or PLURAL; empty: all countable (a table built without text).
    forms: tuple[str, ...] = ()
    # The verb frames counted in caption text ("riding", "sitting on"), and per concept those
    # seen before its word ("riding a horse"); empty: none checked (a table built without text).
    checked_frames: tuple[str, ...] = ()
    frames: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if len(self.class_concepts) != len(self.class_ids):
            raise ValueError("concepts.json: one concept list per class is required")
        count = len(self.words)
        lengths = {len(self.wnids), len(self.stand_ins), len(self.plurals), len(self.synonyms)}
        if lengths | {len(self.stand_in_plurals)} != {count}:
            raise ValueError("concepts.json: the concepts' fields differ in length")
        if self.forms and (len(self.forms) != count or not set(self.forms) <= set(NOUN_FORMS)):
            raise ValueError(f"concepts.json: one form per concept is required, of {NOUN_FORMS}")
        if self.frames and (
            len(self.frames) != count
            or not {f for found in self.frames for f in found} <= set(self.checked_frames)
        ):
            raise ValueError("concepts.json: one list of checked frames per concept is required")
        if any(not 0 <= i < count for found in self.class_concepts for i in found):
            raise ValueError("concepts.json: a class names a concept that does not exist")
        membership = np.zeros((len(self.class_ids), count), np.float32)
        # How many classes each concept covers: fewer is more specific.
        for index, found in enumerate(self.class_concepts):
            membership[index, list(found)] = 1.0
        object.__setattr__(self, "_membership", membership)
        object.__setattr__(self, "_breadth", membership.sum(axis=0))
        related: list[set[int]] = [set() for _ in range(count)]
        for found in self.class_concepts:
            for index in found:
                related[index].update(found)
        object.__setattr__(self, "_related", tuple(frozenset(r) for r in related))

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def form(self, index: int) -> str:
        """How concept `index`'s word is written alone: COUNTABLE, MASS or PLURAL."""
        return self.forms[index] if self.forms else COUNTABLE

    def frames_of(self, index: int) -> tuple[str, ...]:
        """The checked verb frames caption text says before concept `index`'s word."""
        return self.frames[index] if self.frames else ()

    def concept_probabilities(self, class_probabilities: np.ndarray) -> np.ndarray:
        """(batch, classes) softmax outputs -> (batch, concepts) rolled-up probabilities."""
        return np.asarray(class_probabilities, np.float32) @ self._membership

    def tags(self, concept_probabilities: np.ndarray, threshold: float) -> list[Tag]:
        """One image's concepts at or above `threshold`, most likely first, one per word."""
        order = np.argsort(-concept_probabilities, kind="stable")
        tags: dict[str, Tag] = {}
        for index in order:
            probability = float(concept_probabilities[index])
            if probability < threshold:
                break
            tags.setdefault(self.words[index], Tag(self.words[index], round(probability, 4)))
        return list(tags.values())

    def subject(
        self, concept_probabilities: np.ndarray, threshold: float, within: int | None = None
    ) -> int | None:
        """The most specific concept at or above `threshold` (None: none is confident); with
        `within`, only `within` and the concepts it covers ("bird" for "black swan")."""
        confident = np.flatnonzero(concept_probabilities >= threshold)
        if within is not None:
            confident = np.array([i for i in confident if within in self.broader(int(i))], int)
        if not len(confident):
            return None
        # Of two naming the same classes, `within` keeps its place.
        return int(
            min(
                confident,
                key=lambda i: (self._breadth[i], -concept_probabilities[i], i != within),
            )
        )

    def entities(self, concept_probabilities: np.ndarray, threshold: float) -> np.ndarray:
        """Each image's subject (`subject`) as a decoder conditioned on concepts takes it:
        (images, concepts) -> (images,) the concept's index + 1, or 0 when none is confident."""
        found = (self.subject(row, threshold) for row in concept_probabilities)
        return np.array([0 if index is None else index + 1 for index in found], np.int64)

    def broader(self, index: int) -> frozenset[int]:
        """The concept and those covering every class it covers: its hypernyms among the
        concepts ("dog" and "animal" for "terrier"; not "cat" for "mammal")."""
        membership = self._membership  # type: ignore[attr-defined]
        classes = membership[:, index] > 0
        covered = membership[classes].min(axis=0) > 0
        return frozenset(int(i) for i in np.flatnonzero(covered))

    def related(self, index: int) -> frozenset[int]:
        """The concept and those that share a class with it, more general or more specific:
        what names the same thing in other words ("dog" for "terrier", "bike" for "vehicle")."""
        return self._related[index]  # type: ignore[attr-defined]

    def to_plain(self) -> dict:
        return {
            "format": CONCEPTS_FORMAT,
            **({"checked_frames": list(self.checked_frames)} if self.checked_frames else {}),
            "classes": [
                {"id": wnid, "concepts": list(found)}
                for wnid, found in zip(self.class_ids, self.class_concepts, strict=True)
            ],
            "concepts": [
                {
                    "word": word,
                    "plural": plural,
                    "wnid": wnid,
                    "stand_in": stand_in,
                    "stand_in_plural": stand_in_plural,
                    "synonyms": list(synonyms),
                    # Written only where it is not COUNTABLE, the form a table without one has.
                    **({"form": self.form(index)} if self.form(index) != COUNTABLE else {}),
                    **({"frames": list(self.frames_of(index))} if self.frames_of(index) else {}),
                }
                for index, (word, plural, wnid, stand_in, stand_in_plural, synonyms) in enumerate(
                    zip(
                        self.words,
                        self.plurals,
                        self.wnids,
                        self.stand_ins,
                        self.stand_in_plurals,
                        self.synonyms,
                        strict=True,
                    )
                )
            ],
        }

    @classmethod
    def from_plain(cls, data: object) -> ConceptTable:
        if not isinstance(data, dict) or data.get("format") != CONCEPTS_FORMAT:
            raise ValueError(f"concepts.json is not in the {CONCEPTS_FORMAT} format")
        try:
            classes, concepts = data["classes"], data["concepts"]
            return cls(
                class_ids=tuple(str(c["id"]) for c in classes),
                class_concepts=tuple(tuple(int(i) for i in c["concepts"]) for c in classes),
                words=tuple(str(c["word"]) for c in concepts),
                wnids=tuple(str(c["wnid"]) for c in concepts),
                stand_ins=tuple(str(c["stand_in"]) for c in concepts),
                plurals=tuple(str(c["plural"]) for c in concepts),
                stand_in_plurals=tuple(
                    None if c["stand_in_plural"] is None else str(c["stand_in_plural"])
                    for c in concepts
                ),
                synonyms=tuple(tuple(str(w) for w in c["synonyms"]) for c in concepts),
                # Tables written before noun forms: every word counted, as they were written.
                forms=tuple(str(c.get("form", COUNTABLE)) for c in concepts),
                checked_frames=tuple(str(f) for f in data.get("checked_frames", ())),
                frames=tuple(tuple(str(f) for f in c.get("frames", ())) for c in concepts)
                if data.get("checked_frames")
                else (),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"concepts.json lacks a required field: {exc}") from exc


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
