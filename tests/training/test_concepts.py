"""The concept table's rule, on a small WordNet fixture, and the open-world judge."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioning.concepts import ConceptTable
from captioning.text import SPECIAL_TOKENS, Vocabulary
from tests.support.wordnet import SYNSETS, write_wordnet
from training.concepts import CommonWords, build_concept_table, read_imagenet_classes
from training.open_world import Judge
from training.wordnet import WordNet

VOCABULARY = Vocabulary((*SPECIAL_TOKENS, "a", "dog", "dogs", "bird", "birds", "cat", "animal"))


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory) -> WordNet:
    return WordNet.load(write_wordnet(tmp_path_factory.mktemp("wordnet")))


@pytest.fixture(scope="module")
def table(wordnet: WordNet) -> ConceptTable:
    return build_concept_table(wordnet, read_imagenet_classes(), VOCABULARY, CommonWords.load())


def words_of(table: ConceptTable, wnid: str) -> list[str]:
    return [table.words[c] for c in table.class_concepts[table.class_ids.index(wnid)]]


def test_classes_map_to_common_words_up_their_hypernyms(table: ConceptTable) -> None:
    assert words_of(table, "n02123045") == ["cat"]  # "tabby" is too rare a word
    assert words_of(table, "n01622779") == ["great grey owl", "owl", "bird"]
    assert words_of(table, "n02099712")[-1] == "dog"
    assert words_of(table, "n07697537") == ["hot dog", "sandwich"]  # "hotdog" is rare
    # The walk stops at generic synsets: "animal" is never a concept.
    assert "animal" not in table.words


def test_a_word_must_read_as_the_class(table: ConceptTable) -> None:
    # "crane" reads as the machine (its first sense), so the bird is only a "bird".
    assert words_of(table, "n02012849") == ["bird"]


def test_words_the_decoder_lacks_get_a_stand_in_it_knows(table: ConceptTable) -> None:
    zebra = table.words.index("zebra")
    assert table.stand_ins[zebra] == "animal"  # the nearest hypernym it knows
    owl = table.words.index("owl")
    assert (table.stand_ins[owl], table.stand_in_plurals[owl]) == ("bird", "birds")
    dog = table.words.index("dog")
    assert table.stand_ins[dog] == "dog"
    # "dog" is also a verb, so its "-s" form is not written as a stand-in's plural.
    assert table.stand_in_plurals[dog] is None


def test_a_class_under_a_generic_synset_only_has_no_concept(table: ConceptTable) -> None:
    assert words_of(table, "n01440764") == []  # class 0, a placeholder under "object"
    placeholders = [w for w in table.class_ids if w[1:] not in SYNSETS]
    assert len(placeholders) > 990 and not any(words_of(table, w) for w in placeholders)


def test_the_table_round_trips_through_json(table: ConceptTable) -> None:
    assert ConceptTable.from_json(table.to_json()) == table


def test_plurals(wordnet: WordNet) -> None:
    assert [wordnet.plural(w) for w in ("dog", "goose", "bus", "puppy", "hot dog")] == [
        "dogs",
        "geese",
        "buses",
        "puppies",
        "hot dogs",
    ]
    assert wordnet.plural("article of clothing") == "articles of clothing"


def test_the_judge_counts_the_class_and_its_hypernyms_but_not_generic_words(
    wordnet: WordNet,
) -> None:
    judge = Judge(wordnet)
    assert judge.names_subject("a great grey owl on a branch", "n01622779")
    assert judge.names_subject("two birds on a branch", "n01622779")
    assert not judge.names_subject("an animal on a branch", "n01622779")
    assert not judge.names_subject("a dog on a branch", "n01622779")
    assert judge.names_subject("a man eating a hot dog", "n07697537")
    assert not judge.names_subject("a hot day", "n07697537")
    assert [judge.group(w) for w in ("n02099712", "n01622779", "n02391049", "n07697537")] == [
        "dogs",
        "birds",
        "other animals",
        "everything else",
    ]


def test_a_missing_wordnet_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        WordNet.load(tmp_path)
