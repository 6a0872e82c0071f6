"""Decoding on a randomly initialised decoder: the search itself, not caption quality."""

import dataclasses

import keras
import numpy as np
import pytest

from captioning import decoding
from captioning.decoding import BANNED_IDS, DecoderWeights, beam_search, greedy_decode
from captioning.text import END_ID
from training.modeling.decoder import DecoderConfig, build_decoder

CONFIG = DecoderConfig(vocab_size=40, feature_dim=16, regions=9, embedding_dim=8, hidden_dim=12)


@pytest.fixture(scope="module")
def weights() -> DecoderWeights:
    keras.utils.set_random_seed(3)
    model = build_decoder(CONFIG)
    # Larger weights than the initialiser's make sharper, more varied distributions.
    model.set_weights([w * 4 for w in model.get_weights()])
    return DecoderWeights.from_model(model)


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 9, 16)).astype(np.float32), rng.normal(size=(6, 16)).astype(
        np.float32
    )


def test_beam_size_one_reproduces_greedy_exactly(weights, features):
    grid, pooled = features
    greedy = greedy_decode(weights, grid, pooled, max_length=12)
    beam = beam_search(weights, grid, pooled, beam_size=1, max_length=12, length_penalty=0.0)
    for g, b in zip(greedy, beam, strict=True):
        assert g.token_ids == b[0].token_ids
        assert g.log_prob == pytest.approx(b[0].log_prob, abs=1e-9)


def test_beam_search_is_batched_consistently(weights, features):
    """Captioning images together gives the same result as one at a time."""
    grid, pooled = features
    together = beam_search(weights, grid, pooled, beam_size=4, max_length=12, num_results=4)
    for i in range(len(pooled)):
        alone = beam_search(weights, grid[i : i + 1], pooled[i : i + 1], 4, 12, num_results=4)[0]
        assert [h.token_ids for h in alone] == [h.token_ids for h in together[i]]
        np.testing.assert_allclose(
            [h.log_prob for h in alone], [h.log_prob for h in together[i]], rtol=1e-5
        )


def test_images_that_finish_early_leave_the_batch_with_their_results(
    weights, features, monkeypatch
):
    """The batch shrinks as images finish, and each image still gets exactly what it gets
    alone: words, log-probabilities and attention maps."""
    grid, pooled = features
    # A likelier <end> makes the captions end after 0 to 12 words, not all at the limit.
    kernel, bias = weights.logits
    end_bonus = np.where(np.arange(len(bias)) == END_ID, 4.0, 0.0).astype(bias.dtype)
    weights = dataclasses.replace(weights, logits=(kernel, bias + end_bonus))
    kept: list[int] = []
    keep_images = decoding._Stepper.keep_images

    def record(self, images):
        kept.append(len(images))
        keep_images(self, images)

    monkeypatch.setattr(decoding._Stepper, "keep_images", record)
    together = beam_search(
        weights, grid, pooled, beam_size=3, max_length=12, num_results=3, return_attention=True
    )
    assert kept and kept == sorted(kept, reverse=True) and kept[-1] < len(pooled)
    monkeypatch.undo()
    for i in range(len(pooled)):
        alone = beam_search(
            weights, grid[i : i + 1], pooled[i : i + 1], 3, 12, 3, return_attention=True
        )[0]
        assert [h.token_ids for h in alone] == [h.token_ids for h in together[i]]
        for a, b in zip(alone, together[i], strict=True):
            assert a.log_prob == pytest.approx(b.log_prob, rel=1e-5)
            np.testing.assert_allclose(a.attention, b.attention, rtol=1e-4, atol=1e-6)


def test_n_best_is_ranked_and_distinct(weights, features):
    grid, pooled = features
    results = beam_search(weights, grid, pooled, beam_size=5, max_length=10, num_results=5)
    for hypotheses in results:
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert len({h.token_ids for h in hypotheses}) == len(hypotheses)


def test_attention_maps_are_distributions_one_per_word(weights, features):
    grid, pooled = features
    for hyp in greedy_decode(weights, grid, pooled, 10, return_attention=True):
        assert hyp.attention.shape == (len(hyp.token_ids), 9)
        np.testing.assert_allclose(hyp.attention.sum(axis=1), 1.0, rtol=1e-5)
    for hyps in beam_search(weights, grid, pooled, 3, 10, 2, return_attention=True):
        for hyp in hyps:
            assert hyp.attention.shape == (len(hyp.token_ids), 9)


def test_special_tokens_are_never_generated_and_length_is_bounded(weights, features):
    grid, pooled = features
    for hyps in beam_search(weights, grid, pooled, 4, 5, 4):
        for hyp in hyps:
            assert len(hyp.token_ids) <= 5
            assert not set(hyp.token_ids) & {*BANNED_IDS, END_ID}


def test_numpy_step_matches_the_keras_model(features):
    """The NumPy recurrence computes the same probabilities as the trained Keras graph."""
    keras.utils.set_random_seed(5)
    model = build_decoder(CONFIG)
    weights = DecoderWeights.from_model(model)
    grid, pooled = features
    hyp = greedy_decode(weights, grid[:1], pooled[:1], max_length=8)[0]
    tokens = np.array([[[1, *hyp.token_ids]]], np.int32)
    logits = model([grid[:1], pooled[:1], tokens], training=False).numpy()[0]
    log_probs = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    # Keras logits include the banned words; renormalise without them as decoding does.
    allowed = np.setdiff1d(np.arange(CONFIG.vocab_size), BANNED_IDS)
    restricted = log_probs[:, allowed] - np.log(
        np.exp(log_probs[:, allowed]).sum(-1, keepdims=True)
    )
    targets = [*hyp.token_ids, END_ID][: len(tokens[0, 0])]
    expected = sum(restricted[t, np.searchsorted(allowed, w)] for t, w in enumerate(targets))
    if len(hyp.token_ids) < 8:
        assert hyp.log_prob == pytest.approx(expected, rel=1e-4)


def _has_repeated_trigram(ids: tuple[int, ...]) -> bool:
    trigrams = [ids[i : i + 3] for i in range(len(ids) - 2)]
    return len(trigrams) != len(set(trigrams))


def test_repeated_trigrams_can_be_blocked(weights, features):
    grid, pooled = features
    free = beam_search(weights, grid, pooled, 4, 20, 4, no_repeat_ngram=0)
    blocked = beam_search(weights, grid, pooled, 4, 20, 4, no_repeat_ngram=3)
    assert any(_has_repeated_trigram(h.token_ids) for hyps in free for h in hyps), "no loops"
    assert not any(_has_repeated_trigram(h.token_ids) for hyps in blocked for h in hyps)
    greedy = greedy_decode(weights, grid, pooled, 20, no_repeat_ngram=3)
    assert not any(_has_repeated_trigram(h.token_ids) for h in greedy)
    beam_one = beam_search(weights, grid, pooled, 1, 20, length_penalty=0.0, no_repeat_ngram=3)
    assert [h.token_ids for h in greedy] == [b[0].token_ids for b in beam_one]


def test_constrained_search_always_writes_a_required_word(weights, features):
    grid, pooled = features
    required = [[5], [6, 7], [8], [9], [10], [11, 12]]
    results = decoding.constrained_beam_search(
        weights, grid, pooled, required, beam_size=3, max_length=12, num_results=3
    )
    for words, hypotheses in zip(required, results, strict=True):
        assert hypotheses
        assert all(set(words) & set(h.token_ids) for h in hypotheses)
        assert all(np.isfinite(h.log_prob) for h in hypotheses)


def test_constrained_search_keeps_a_best_caption_that_has_the_word(weights, features):
    """Asking for a word the best caption already has finds that caption, or a better one."""
    grid, pooled = features
    free = beam_search(weights, grid, pooled, beam_size=3, max_length=12, length_penalty=0.0)
    for image, (best,) in enumerate(free):
        word = next(t for t in best.token_ids)
        (constrained,) = decoding.constrained_beam_search(
            weights, grid[image : image + 1], pooled[image : image + 1], [[word]], 3, 12,
            length_penalty=0.0,
        )[0][:1]  # fmt: skip
        assert constrained.score >= best.score - 1e-6 * abs(best.score)


def test_constrained_search_is_batched_consistently(weights, features):
    grid, pooled = features
    required = [[5], [6], [7], [8], [9], [10]]
    together = decoding.constrained_beam_search(weights, grid, pooled, required, 3, 12)
    for i in range(len(pooled)):
        alone = decoding.constrained_beam_search(
            weights, grid[i : i + 1], pooled[i : i + 1], required[i : i + 1], 3, 12
        )
        assert [h.token_ids for h in alone[0]] == [h.token_ids for h in together[i]]
