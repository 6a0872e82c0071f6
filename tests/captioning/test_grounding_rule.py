"""Grounding's rule on its own: claims met by evidence counts, the word penalty, word salad."""

from __future__ import annotations

import numpy as np

from captioning.claims import ANY_LABEL, FLUENCY_FLOOR, Claim, ClaimRule, is_word_salad
from captioning.decoder_step import NEG_INF
from captioning.predictor import name_from_evidence
from captioning.text import Vocabulary
from captioning.types import Evidence

CLAIMS = (
    Claim("person", 1, ("man", "shirt")),
    Claim("person", 2, ("men",)),
    Claim(ANY_LABEL, 2, ("two",)),
)


def rule() -> ClaimRule:
    vocabulary = Vocabulary.build([["a", "man", "men", "shirt", "two", "dog", "runs"]], 1)
    return ClaimRule(CLAIMS, vocabulary)


def test_claims_are_met_by_the_evidence_counts() -> None:
    claims = rule()
    assert claims.unmet([]) == {0, 1, 2}
    assert claims.unmet([Evidence("person", 0.9, 1)]) == {1, 2}
    assert claims.unmet([Evidence("person", 0.9, 2)]) == set()
    # "two" is met by two of anything counted; "men" only by two people.
    assert claims.unmet([Evidence("dog", 0.8, 2)]) == {0, 1}
    assert claims.forbidden_words([Evidence("dog", 0.8, 2)]) == {"man", "shirt", "men"}


def test_the_penalty_forbids_unmet_words_except_the_allowed() -> None:
    claims = rule()
    vocabulary = Vocabulary.build([["a", "man", "men", "shirt", "two", "dog", "runs"]], 1)
    penalty = claims.word_penalty(
        [[], [Evidence("person", 0.9, 1)]], [[vocabulary.id_of("men")], []]
    )
    forbidden = [{vocabulary.words[i] for i in np.flatnonzero(row == NEG_INF)} for row in penalty]
    assert forbidden == [{"man", "shirt", "two"}, {"men", "two"}]


def test_a_claim_with_alternatives_is_met_by_any_of_them() -> None:
    vocabulary = Vocabulary.build([["a", "violin", "is", "playing", "man"]], 1)
    claims = ClaimRule([Claim("person|dog|cat|animal", 1, ("playing",))], vocabulary)
    assert claims.forbidden_words([]) == {"playing"}
    assert claims.forbidden_words([Evidence("dog", 0.4, None)]) == set()
    assert claims.forbidden_words([Evidence("animal", 0.9, None)]) == set()
    assert claims.forbidden_words([Evidence("grass", 0.9, None)]) == {"playing"}


def words(caption: str) -> list[str]:
    return caption.split(" ")


def test_word_salad() -> None:
    fluent = words("a dog runs through the grass with a ball in its mouth")
    assert not is_word_salad(fluent, -1.2)
    assert is_word_salad(fluent, FLUENCY_FLOOR - 0.1)  # the decoder itself finds it unlikely
    assert is_word_salad(words("a small brown haired haired dog"), -1.0)
    assert is_word_salad(words("a brown and white brown and brown dog"), -1.0)
    assert not is_word_salad(words("a man and a woman and a dog"), -1.0)  # function words


def test_a_setting_forbids_nothing_and_is_unsupported_without_its_evidence() -> None:
    vocabulary = Vocabulary.build([["a", "man", "dog", "in", "the", "snow", "grass"]], 1)
    claims = ClaimRule((*CLAIMS, Claim("snow", 1, ("snow",), setting=True)), vocabulary)
    penalty = claims.word_penalty([[]])
    assert penalty[0, vocabulary.id_of("snow")] == 0.0  # not forbidden: cut instead
    assert penalty[0, vocabulary.id_of("man")] == NEG_INF
    assert claims.unsupported_settings([]) == {vocabulary.id_of("snow")}
    assert claims.unsupported_settings([Evidence("snow", 0.8)]) == set()
    assert claims.forbidden_words([]) == {"man", "shirt", "men", "two"}


def test_a_setting_survives_grounding_json() -> None:
    setting = Claim("grass", 1, ("grass", "lawn"), setting=True)
    assert Claim.from_plain(setting.to_plain()) == setting
    plain = CLAIMS[0].to_plain()
    assert "setting" not in plain  # files without settings read as before
    assert Claim.from_plain(plain) == CLAIMS[0]


def test_salad_with_nothing_to_name_is_called_by_its_evidence() -> None:
    animal, water = Evidence("animal", 0.9), Evidence("water", 0.95)
    assert name_from_evidence([water, animal]) == "an animal"  # a setting names nothing
    assert name_from_evidence([Evidence("cat", 0.8, count=2)]) == "cats"
    # On Flickr8k's scenes (people, dogs) the decoder's own sentence stays.
    assert name_from_evidence([Evidence("person", 0.9, count=1), animal]) is None
    assert name_from_evidence([water]) is None
