"""Concept probabilities, tags and the subject a caption is made to name."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from captioning.concepts import MASS, PLURAL, ConceptTable
from captioning.subjects import SubjectNamer, name_subject
from captioning.text import Vocabulary

# Three classes: two dog breeds and a tabby; concepts: terrier, dog, cat.
TABLE = ConceptTable(
    class_ids=("n1", "n2", "n3"),
    class_concepts=((0, 1), (1,), (2,)),
    words=("terrier", "dog", "cat"),
    wnids=("n10", "n11", "n12"),
    stand_ins=("dog", "dog", "cat"),
    plurals=("terriers", "dogs", "cats"),
    stand_in_plurals=("dogs", "dogs", "cats"),
    synonyms=((), ("puppy", "puppies"), ()),
)


def test_a_concept_sums_its_classes_probabilities() -> None:
    probabilities = TABLE.concept_probabilities(np.array([[0.3, 0.3, 0.4]]))
    np.testing.assert_allclose(probabilities, [[0.3, 0.6, 0.4]])


def test_tags_are_the_concepts_above_the_threshold_most_likely_first() -> None:
    tags = TABLE.tags(np.array([0.3, 0.6, 0.4]), threshold=0.35)
    assert [(t.word, t.probability) for t in tags] == [("dog", 0.6), ("cat", 0.4)]


def test_the_subject_is_the_most_specific_confident_concept() -> None:
    assert TABLE.subject(np.array([0.55, 0.6, 0.1]), 0.5) == 0  # terrier, not dog
    assert TABLE.subject(np.array([0.3, 0.6, 0.1]), 0.5) == 1
    assert TABLE.subject(np.array([0.1, 0.2, 0.3]), 0.5) is None
    assert TABLE.related(0) == {0, 1}


def test_outside_flickr8ks_scenes_a_less_confident_concept_is_named() -> None:
    vocabulary = Vocabulary.build([["a", "dog", "and", "a", "cat", "dogs", "cats"]], min_count=1)
    namer = SubjectNamer(TABLE, vocabulary, threshold=0.5, unknown_scene_threshold=0.25)
    rows = np.array(
        [[0.1, 0.3, 0.1], [0.1, 0.3, 0.1], [0.3, 0.6, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.1]]
    )
    found = namer.subjects(rows, unknown_scene=[False, True, True, True, True])
    # A photo of Flickr8k's scenes needs the threshold; elsewhere a confident concept is made
    # more specific by a less confident one it covers ("terrier" for "dog"), not by another.
    words = [None if s is None else s.word for s in found]
    assert words == [None, "dog", "terrier", "dog", None]
    assert SubjectNamer(TABLE, vocabulary, 0.2).unknown_scene_threshold == 0.2  # never above


def test_a_decoders_input_concept_is_the_subject_counted_from_one() -> None:
    rows = np.array([[0.55, 0.6, 0.1], [0.3, 0.6, 0.1], [0.1, 0.2, 0.3]])
    assert TABLE.entities(rows, 0.5).tolist() == [1, 2, 0]  # 0: none confident


def test_a_table_that_names_a_missing_concept_is_refused() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ConceptTable(("n1",), ((3,),), ("dog",), ("n11",), ("dog",), ("dogs",), (None,), ((),))


@pytest.mark.parametrize(
    ("words", "position", "word", "expected"),
    [
        ("a animal in the grass", 1, "zebra", "a zebra in the grass"),
        ("a dog in the grass", 1, "axolotl", "an axolotl in the grass"),
        ("an animal in the grass", 1, "unicorn", "a unicorn in the grass"),
        ("a man with a soccer ball", 5, "soccer ball", "a man with a soccer ball"),
        ("two animals on a rock", 1, "zebras", "two zebras on a rock"),
        ("a dog with a ball", 4, "hour glass", "a dog with an hour glass"),
    ],
)
def test_the_subject_is_written_in_with_its_article(words, position, word, expected) -> None:
    assert " ".join(name_subject(tuple(words.split()), position, word)) == expected


@pytest.mark.parametrize(
    ("words", "position", "word", "form", "expected"),
    [
        ("a animal", 1, "bread", MASS, "bread"),
        ("a man eating a brown animal", 5, "bread", MASS, "a man eating brown bread"),
        ("a man in a blue garment", 5, "jeans", PLURAL, "a man in blue jeans"),
        ("a garment is on the bed", 1, "jeans", PLURAL, "jeans are on the bed"),
        ("the animal on a table", 1, "bread", MASS, "the bread on a table"),
    ],
)
def test_a_mass_or_plural_word_is_written_without_its_article(
    words, position, word, form, expected
) -> None:
    assert " ".join(name_subject(tuple(words.split()), position, word, form)) == expected


def test_noun_forms_travel_with_the_table_and_default_to_counted() -> None:
    table = dataclasses.replace(TABLE, forms=("countable", "countable", MASS))
    plain = table.to_plain()
    assert [c.get("form") for c in plain["concepts"]] == [None, None, MASS]  # counted: unsaid
    assert ConceptTable.from_plain(plain).form(2) == MASS
    assert TABLE.form(0) == "countable"  # a table built without caption text
    with pytest.raises(ValueError, match="one form per concept"):
        dataclasses.replace(TABLE, forms=("countable", "uncounted", MASS))


def test_a_plain_name_of_a_mass_noun_has_no_article() -> None:
    table = dataclasses.replace(TABLE, forms=("countable", "countable", MASS))
    vocabulary = Vocabulary.build([["a", "dog", "and", "a", "cat", "dogs", "cats"]], min_count=1)
    namer = SubjectNamer(table, vocabulary, threshold=0.5)
    assert namer.plain_name(None, np.array([0.1, 0.2, 0.6]), floor=0.1) == "cat"
    assert namer.plain_name(None, np.array([0.1, 0.7, 0.2]), floor=0.1) == "a dog"


def test_a_counted_subject_opening_the_caption_gets_its_article() -> None:
    vocabulary = Vocabulary.build([["a", "dog", "is", "asleep", "cat", "dogs", "cats"]], 1)
    namer = SubjectNamer(TABLE, vocabulary, threshold=0.5)
    said = ("cat", "is", "asleep")
    ids = tuple(vocabulary.id_of(word) for word in said)
    assert namer.show(said, ids, namer.subject(2)) == ("a", "cat", "is", "asleep")
    bread = SubjectNamer(
        dataclasses.replace(TABLE, forms=("countable",) * 2 + (MASS,)), vocabulary, 0.5
    )
    assert bread.show(said, ids, bread.subject(2)) == ("cat", "is", "asleep")  # a mass noun


def test_verb_frames_travel_with_the_table_and_a_subject_takes_its_broader_ones() -> None:
    table = dataclasses.replace(
        TABLE, checked_frames=("riding", "holding"), frames=((), ("riding",), ("holding",))
    )
    plain = table.to_plain()
    assert plain["checked_frames"] == ["riding", "holding"]
    assert "frames" not in plain["concepts"][0]  # none attested: unsaid
    assert ConceptTable.from_plain(plain).frames_of(1) == ("riding",)
    vocabulary = Vocabulary.build([["a", "dog", "and", "a", "cat", "dogs", "cats"]], 1)
    terrier = SubjectNamer(table, vocabulary, 0.5).subject(0)
    assert terrier.frames == {"riding"}  # a dog's frame is a terrier's
    assert SubjectNamer(TABLE, vocabulary, 0.5).subject(0).frames is None  # none checked
    with pytest.raises(ValueError, match="checked frames"):
        dataclasses.replace(TABLE, checked_frames=("riding",), frames=((), ("flying",), ()))
