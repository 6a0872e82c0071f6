"""The decoder conditioned on concepts: decoding (NumPy, LiteRT, straight from decoder.keras)
computes what the Keras model computes, each caption with its own concept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from captioning.decoder_step import BANNED_IDS, DecoderStepper, DecoderWeights, condition_ids
from captioning.keras_file import read_layer_weights
from captioning.runtime import LiteRTDecoderStep
from captioning.search import beam_search, greedy_decode
from captioning.search_settings import SearchSettings
from training.export import export_decoder_step
from training.modeling.decoder import DecoderConfig, build_decoder, set_entity_vectors

VOCABULARY, CONCEPTS, REGIONS, FEATURES = 30, 5, 4, 16
CONFIG = DecoderConfig(
    vocab_size=VOCABULARY,
    feature_dim=FEATURES,
    regions=REGIONS,
    embedding_dim=8,
    hidden_dim=12,
    entities=CONCEPTS,
    entity_dim=6,
)


STYLES = 2


@pytest.fixture(scope="module", params=[0, STYLES], ids=["concepts", "concepts-and-styles"])
def model(request):
    return make_model(styles=request.param)


def make_model(styles: int):
    rng = np.random.default_rng(0)
    decoder = build_decoder(dataclasses.replace(CONFIG, styles=styles))
    concepts = rng.normal(size=(CONCEPTS + 1, CONFIG.entity_dim)).astype(np.float32)
    concepts[0] = 0.0
    set_entity_vectors(decoder, concepts, rng.normal(size=(VOCABULARY, CONFIG.entity_dim)))
    for layer in decoder.layers:  # fresh Dense layers' outputs are too alike to tell apart
        if layer.name.startswith(("entity_init", "output_vector")):
            for weight in layer.weights:
                weight.assign(rng.normal(0, 0.5, weight.shape))
    return decoder


def teacher_forced(weights, grid, pooled, tokens, entity, runtime=None) -> np.ndarray:
    """Log-probs of every next word, one caption of one image, stepping the decoder."""
    stepper = DecoderStepper(weights, grid, pooled, runtime, np.array([entity]))
    h, c, rows = stepper.h0, stepper.c0, []
    for token in tokens:
        log_probs, h, c, _ = stepper.step(np.array([token]), h, c, beams=1)
        rows.append(log_probs[0])
    return np.array(rows)


def keras_log_probs(logits: np.ndarray) -> np.ndarray:
    """The Keras logits as decoding normalises them: without the banned ids."""
    allowed = np.ones(logits.shape[-1], bool)
    allowed[list(BANNED_IDS)] = False
    shifted = logits - logits[:, allowed].max(axis=-1, keepdims=True)
    normaliser = np.log(np.exp(shifted[:, allowed]).sum(axis=-1, keepdims=True))
    return np.where(allowed, shifted - normaliser, -np.inf)


@pytest.mark.parametrize("source", ["model", "file"])
def test_decoding_computes_the_keras_model_with_each_captions_concept(model, source, tmp_path):
    rng = np.random.default_rng(1)
    grid = rng.random((2, REGIONS, FEATURES)).astype(np.float32)
    pooled = grid.mean(axis=1)
    captions = rng.integers(4, VOCABULARY, (2, 3, 6)).astype(np.int32)
    entities = np.array([[1, 2, 0], [3, 3, 5]], np.int32)
    styled = any(layer.name == "style_vectors" for layer in model.layers)
    if styled:  # the same concepts, each caption in another style
        entities = condition_ids(entities, np.array([[0, 1, 2], [2, 0, 1]]), CONCEPTS)
        entities = entities.astype(np.int32)
    logits = model([grid, pooled, captions, entities], training=False).numpy()
    if source == "file":  # serving reads decoder.keras without Keras
        model.save(tmp_path / "decoder.keras")
        weights = DecoderWeights.from_layers(read_layer_weights(tmp_path / "decoder.keras"))
    else:
        weights = DecoderWeights.from_model(model)
    assert weights.entities == CONCEPTS
    assert weights.styles == (STYLES if styled else 0)
    allowed = np.ones(VOCABULARY, bool)
    allowed[list(BANNED_IDS)] = False
    for image, caption in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)]:
        ours = teacher_forced(
            weights,
            grid[image : image + 1],
            pooled[image : image + 1],
            captions[image, caption],
            entities[image, caption],
        )
        expected = keras_log_probs(logits[image * 3 + caption])
        np.testing.assert_allclose(ours[:, allowed], expected[:, allowed], atol=1e-4)


def test_the_style_changes_the_words():
    weights = DecoderWeights.from_model(make_model(styles=STYLES))
    rng = np.random.default_rng(4)
    grid = rng.random((1, REGIONS, FEATURES)).astype(np.float32)
    tokens = rng.integers(4, VOCABULARY, 5)
    rows = [
        teacher_forced(weights, grid, grid.mean(axis=1), tokens, condition_ids(2, style, CONCEPTS))
        for style in range(STYLES + 1)
    ]
    assert all(np.abs(rows[0] - other).max() > 1e-3 for other in rows[1:])


def test_the_concept_changes_the_words(model):
    weights = DecoderWeights.from_model(model)
    rng = np.random.default_rng(2)
    grid = np.repeat(rng.random((1, REGIONS, FEATURES)).astype(np.float32), CONCEPTS + 1, 0)
    tokens = rng.integers(4, VOCABULARY, 5)
    rows = [
        teacher_forced(weights, grid[:1], grid[:1].mean(axis=1), tokens, entity)
        for entity in range(CONCEPTS + 1)
    ]
    assert all(np.abs(rows[0] - other).max() > 1e-3 for other in rows[1:])
    # The searches take the same concepts; None is "no concept" (0) for every image.
    settings = SearchSettings(max_length=6, beam_size=3)
    pooled = grid.mean(axis=1)
    none = greedy_decode(weights, grid, pooled, settings=settings)
    zeros = greedy_decode(weights, grid, pooled, settings=settings, entities=np.zeros(6, int))
    assert none == zeros
    beams = beam_search(weights, grid, pooled, settings=settings, entities=np.arange(6))
    assert beams[0][0] == beam_search(weights, grid, pooled, settings=settings)[0][0]


def test_the_litert_step_takes_the_concepts_too(model):
    weights = DecoderWeights.from_model(model)
    runtime = LiteRTDecoderStep(export_decoder_step(weights))
    rng = np.random.default_rng(3)
    grid = rng.random((1, REGIONS, FEATURES)).astype(np.float32)
    tokens = rng.integers(4, VOCABULARY, 5)
    for entity in (0, 2, 4):
        exact = teacher_forced(weights, grid, grid.mean(axis=1), tokens, entity)
        fast = teacher_forced(weights, grid, grid.mean(axis=1), tokens, entity, runtime)
        allowed = weights.logits[1] > -1e8
        assert np.abs(exact[:, allowed] - fast[:, allowed]).max() < 0.1


def test_tables_of_the_wrong_shape_are_refused(model):
    with pytest.raises(ValueError, match="row 0 zero"):
        set_entity_vectors(model, np.ones((CONCEPTS + 1, 6)), np.zeros((VOCABULARY, 6)))
    with pytest.raises(ValueError, match="word vectors"):
        set_entity_vectors(model, np.zeros((CONCEPTS + 1, 6)), np.zeros((VOCABULARY + 1, 6)))


def test_a_decoder_without_concepts_has_no_concept_weights(tmp_path: Path):
    plain = build_decoder(DecoderConfig(vocab_size=VOCABULARY, feature_dim=FEATURES, regions=4))
    weights = DecoderWeights.from_model(plain)
    assert weights.entities == 0 and weights.entity_gates is None
