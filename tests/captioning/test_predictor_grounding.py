"""Grounded captions on the tiny trained model: a word that claims something is written only
with evidence for it, counts follow the evidence's counts, and grounding off (or no evidence
heads) gives today's captions exactly."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from captioning.bundle import GROUNDING, MANIFEST, add_files
from captioning.claims import ANY_LABEL, Claim
from captioning.grounding import EvidenceHeads, Head, Normaliser
from captioning.predictor import CaptionPredictor
from captioning.search import Hypothesis
from captioning.subjects import Subject
from tests.support.fixtures import tiny_examples

pytestmark = pytest.mark.slow

# The tiny captions are "a red circle on white": "circle" stands in for a word that claims a
# person (or, in the count test, two of something).
CLAIMED = "circle"


def grounded(tiny_artifacts: Path, tmp_path: Path, heads: dict[str, float], claim: Claim):
    """The tiny model with evidence heads that always (bias > 0) or never (bias < 0) fire."""
    artifacts = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, artifacts)
    size = json.loads((artifacts / MANIFEST).read_text())["encoder"]["feature_dim"]
    normalisers = {"pooled": Normaliser(np.zeros(size), np.ones(size))}
    built = tuple(
        Head(name.split(">=")[0], 2 if ">=" in name else 1, ("pooled",), np.zeros(size), bias, 0.5)
        for name, bias in heads.items()
    )
    evidence = EvidenceHeads(built, normalisers, claims=(claim,))
    add_files(artifacts, {GROUNDING: evidence.to_json()})
    return CaptionPredictor.from_artifacts(artifacts)


@pytest.fixture(scope="module")
def images():
    return [image for _, image, caption in tiny_examples() if CLAIMED in caption][:4]


def texts(predictor: CaptionPredictor, images, **options) -> list[str]:
    settings = predictor.search.with_options(**options)
    return [r.best.text for r in predictor.caption_images(images, settings)]


def test_a_claim_without_evidence_is_not_written(tiny_artifacts, tmp_path, images) -> None:
    plain = CaptionPredictor.from_artifacts(tiny_artifacts)
    assert all(CLAIMED in text for text in texts(plain, images))
    predictor = grounded(
        tiny_artifacts, tmp_path, {"person": -30.0}, Claim("person", 1, (CLAIMED,))
    )
    results = predictor.caption_images(images, predictor.search.with_options(beam_size=3))
    assert all(r.evidence == () for r in results)
    assert not any(CLAIMED in r.best.tokens for r in results), [r.best.text for r in results]
    greedy = texts(predictor, images, beam_size=1)
    assert not any(CLAIMED in text.split() for text in greedy)
    # Off by option: the decoder's own words, exactly as without grounding.
    assert texts(predictor, images, grounding=False) == texts(plain, images)


def test_a_claim_with_evidence_is_written(tiny_artifacts, tmp_path, images) -> None:
    plain = CaptionPredictor.from_artifacts(tiny_artifacts)
    predictor = grounded(tiny_artifacts, tmp_path, {"person": 30.0}, Claim("person", 1, (CLAIMED,)))
    results = predictor.caption_images(images)
    assert [r.best.text for r in results] == texts(plain, images)
    for result in results:
        (evidence,) = result.evidence
        assert evidence.label == "person" and evidence.score > 0.99 and evidence.count is None


@pytest.mark.parametrize(("several", "written"), [(-30.0, False), (30.0, True)])
def test_count_words_follow_the_counts(tiny_artifacts, tmp_path, images, several, written) -> None:
    """A word claiming two or more (of anything counted) needs a 'two or more' head to fire."""
    heads = {"dog": 30.0, "dog>=2": several}
    predictor = grounded(tiny_artifacts, tmp_path, heads, Claim(ANY_LABEL, 2, (CLAIMED,)))
    results = predictor.caption_images(images)
    assert all(r.evidence[0].count == (2 if written else 1) for r in results)
    assert all((CLAIMED in r.best.tokens) == written for r in results)


def test_captions_stop_where_the_decoder_is_unsure_outside_flickr8ks_scenes(
    tiny_artifacts, tmp_path, images
) -> None:
    """Without people or dogs in the evidence, a caption is cut before a phrase holding a word
    below `min_word_probability`; with them, or at 0, it stays whole."""
    plain = CaptionPredictor.from_artifacts(tiny_artifacts)
    whole = texts(plain, images, min_word_probability=0.0)
    assert all(" on " in text for text in whole)
    nearly_sure = 1.0 - 1e-9  # every phrase holds a word below it
    cut = plain.caption_images(images, plain.search.with_options(min_word_probability=nearly_sure))
    for result, text in zip(cut, whole, strict=True):
        assert result.best.text == text.split(" on ")[0]
        # The kept words' own log-probability and score, not the whole sentence's.
        length_penalty = plain.search.length_penalty
        expected = result.best.log_prob / len(result.best.tokens) ** length_penalty
        assert result.best.score == pytest.approx(expected)
    person = grounded(tiny_artifacts, tmp_path, {"person": 30.0}, Claim("person", 1, ("x",)))
    assert texts(person, images, min_word_probability=nearly_sure) == whole


def test_a_caption_left_without_its_noun_is_decoded_again_whole(
    tiny_artifacts, tmp_path, images, monkeypatch
) -> None:
    """Forbidding "circle" leaves the tiny decoder writing "a red on black"; decoded again with
    the searches kept from broken English (`WordRoles`), every caption has its noun."""
    predictor = grounded(
        tiny_artifacts, tmp_path, {"person": -30.0}, Claim("person", 1, (CLAIMED,))
    )
    settings = predictor.search.with_options(beam_size=3)
    breaks = predictor.word_roles.breaks  # bound now, before the patch below

    def broken(tokens: tuple[str, ...]) -> bool:
        return breaks([predictor.vocabulary.id_of(word) for word in tokens])

    guarded = predictor.caption_images(images, settings)
    assert not any(broken(r.best.tokens) for r in guarded), [r.best.text for r in guarded]
    assert not any(CLAIMED in r.best.tokens for r in guarded)
    monkeypatch.setattr(type(predictor.word_roles), "breaks", lambda self, token_ids: False)
    unguarded = predictor.caption_images(images, settings)
    assert any(broken(r.best.tokens) for r in unguarded), "the test needs a broken caption"


def test_a_setting_without_its_evidence_is_cut_from_the_caption(
    tiny_artifacts, tmp_path, images
) -> None:
    """ "on white" stands in for "in the snow": with a person found, captions are otherwise
    whole, yet the phrase naming a setting whose evidence is missing goes, and only it."""
    setting = Claim("snow", 1, ("white", "black"), setting=True)
    without = grounded(tiny_artifacts, tmp_path / "a", {"person": 30.0, "snow": -30.0}, setting)
    with_it = grounded(tiny_artifacts, tmp_path / "b", {"person": 30.0, "snow": 30.0}, setting)
    whole = texts(with_it, images)
    assert all(text.endswith((" on white", " on black")) for text in whole), whole
    cut = texts(without, images)
    assert cut == [text.rsplit(" on ", 1)[0] for text in whole]
    assert texts(without, images, min_word_probability=0.0) == whole


def test_on_a_whole_sentence_only_the_unsupported_settings_phrase_goes(tiny_predictor) -> None:
    """Where captions are otherwise whole (floor 0), an unsupported setting cuts only its own
    phrase after the subject: nothing before the subject goes, unlike on a photo whose
    caption the decoder guesses (floor above 0), where unsure words before it go too."""
    vocabulary = tiny_predictor.vocabulary
    ids = tuple(vocabulary.id_of(word) for word in ["a", "red", "circle", "on", "white"])
    circle = vocabulary.id_of("circle")
    subject = Subject("circle", {circle: "circle"}, frozenset({circle}))
    hypothesis = Hypothesis(ids, 5 * math.log(0.9), math.log(0.9), None, (math.log(0.9),) * 5)
    settings = tiny_predictor.search

    def kept(floor: float, setting: str) -> str:
        unsupported = frozenset({vocabulary.id_of(setting)})
        cut = tiny_predictor._sure_part(
            hypothesis, subject, settings, floor=floor, unsupported=unsupported
        )
        return " ".join(vocabulary.decode(cut.token_ids))

    assert kept(0.0, "white") == "a red circle"
    assert kept(0.0, "red") == "a red circle on white"
    assert kept(0.1, "red") == "a circle on white"

    # Outside Flickr8k's scenes (as grounding finds) the decoder's colours before it go.
    colours = tiny_predictor.colour_ids
    guessed = tiny_predictor._sure_part(
        hypothesis, subject, settings, floor=0.1, unsupported=frozenset(), guessed=colours
    )
    assert " ".join(vocabulary.decode(guessed.token_ids)) == "a circle on white"
