"""The tiny trained model names a concept it never saw in a caption, and without concepts it
captions exactly as before."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from captioning.bundle import ENCODER_KERAS, ENCODER_TFLITE, load_bundle
from captioning.concepts import DEFAULT_CONCEPT_THRESHOLD, ConceptTable
from captioning.predictor import CaptionPredictor
from captioning.types import Caption, CaptionResult
from tests.support.fixtures import tiny_examples
from tests.support.wordnet import write_wordnet
from training.concepts import add_concepts
from training.noun_forms import MIN_PHRASES

ENCODER_FILES = (ENCODER_KERAS, ENCODER_TFLITE)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory) -> Path:
    return write_wordnet(tmp_path_factory.mktemp("wordnet"))


@pytest.fixture(scope="module")
def concept_artifacts(tiny_artifacts, tmp_path_factory, wordnet) -> Path:
    """The tiny model given its concepts after training, from a small WordNet."""
    artifacts = tmp_path_factory.mktemp("concepts") / "artifacts"
    shutil.copytree(tiny_artifacts, artifacts)
    manifest = add_concepts(artifacts, wordnet)
    assert manifest["concepts"]["threshold"] == DEFAULT_CONCEPT_THRESHOLD
    return artifacts


@pytest.fixture(scope="module")
def predictor(concept_artifacts) -> CaptionPredictor:
    return CaptionPredictor.from_artifacts(concept_artifacts)


def test_concepts_built_again_keep_the_encoder_and_count_noun_forms(
    concept_artifacts, wordnet, tmp_path
) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(concept_artifacts, artifacts)
    encoders = {name: (artifacts / name).read_bytes() for name in ENCODER_FILES}
    captions = [["a", "dog", "with", "bread"]] * MIN_PHRASES
    manifest = add_concepts(artifacts, wordnet, captions=captions, counted_in={"mine": 10})
    assert {name: (artifacts / name).read_bytes() for name in ENCODER_FILES} == encoders
    assert manifest["concepts"]["noun_forms"]["counted_in"] == {"mine": 10}
    assert load_bundle(artifacts).concepts is not None  # the hashes were written anew


@pytest.fixture(scope="module")
def photos(predictor):
    images = [image for _, image, _ in tiny_examples()[:4]]
    return predictor.encode(predictor.preprocess(images))


def one_hot(table: ConceptTable, word: str, images: int) -> np.ndarray:
    probabilities = np.zeros((images, len(table.words)), np.float32)
    probabilities[:, table.words.index(word)] = 0.9
    return probabilities


def captions(results: list[CaptionResult]) -> list[tuple[Caption, ...]]:
    return [result.captions for result in results]


def test_concepts_added_after_training_keep_the_captions(predictor, photos, tiny_artifacts):
    plain = CaptionPredictor.from_artifacts(tiny_artifacts)
    assert plain.concepts is None
    same = plain.encode(plain.preprocess([image for _, image, _ in tiny_examples()[:4]]))
    np.testing.assert_allclose(same.pooled, photos.pooled, atol=1e-2 * np.abs(same.pooled).max())
    assert captions(plain.generate(same)) == captions(predictor.generate(photos))


def test_the_tiny_model_ships_tags_from_its_concept_table(predictor, photos) -> None:
    assert predictor.concepts is not None
    assert photos.concepts is not None and photos.concepts.shape[0] == 4
    for tags in (result.tags for result in predictor.generate(photos)):
        assert [t.probability for t in tags] == sorted((t.probability for t in tags), reverse=True)
        assert all(t.probability >= predictor.concept_threshold for t in tags)


def test_a_confident_concept_unseen_in_captions_is_named(predictor, photos) -> None:
    table = predictor.concepts
    assert "zebra" not in predictor.vocabulary  # the tiny captions are coloured shapes
    zebra = dataclasses.replace(photos, concepts=one_hot(table, "zebra", len(photos)))
    for best in (r.best for r in predictor.generate(zebra, predictor.search)):
        assert "zebra" in best.tokens, best.text
        assert "an zebra" not in best.text and best.text.split()[0] in ("a", "zebra")
    # Off by option: the decoder's own captions, word for word.
    plain = dataclasses.replace(photos, concepts=None)
    without_concepts = predictor.search.with_options(concepts=False)
    assert captions(predictor.generate(zebra, without_concepts)) == captions(
        predictor.generate(plain)
    )


def test_a_concept_below_the_threshold_changes_nothing(predictor, photos) -> None:
    table = predictor.concepts
    unsure = dataclasses.replace(photos, concepts=one_hot(table, "zebra", len(photos)) / 3)
    plain = dataclasses.replace(photos, concepts=None)
    assert captions(predictor.generate(unsure)) == captions(predictor.generate(plain))


def test_an_unsure_caption_keeps_its_subject_and_loses_its_guesses(predictor, photos) -> None:
    """Below the floor every phrase after the subject goes: what is left names the zebra (the
    decoder wrote its stand-in among the first words) and stops before the first phrase."""
    zebra = dataclasses.replace(photos, concepts=one_hot(predictor.concepts, "zebra", len(photos)))
    nearly_sure = predictor.search.with_options(min_word_probability=1.0 - 1e-9)
    whole = predictor.search.with_options(min_word_probability=0.0)
    for cut, full in zip(
        predictor.generate(zebra, nearly_sure), predictor.generate(zebra, whole), strict=True
    ):
        words, full_words = cut.best.tokens, full.best.tokens
        assert words[:2] == ("a", "zebra") and "on" not in words, (words, full_words)
        assert full_words[: len(words)] == words and "on" in full_words
