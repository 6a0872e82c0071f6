"""Decoding on a randomly initialised decoder: the search itself, not caption quality."""

import dataclasses

import keras
import numpy as np
import pytest

from captioning.decoder_step import BANNED_IDS, DecoderStepper, DecoderWeights
from captioning.phrases import WordRoles
from captioning.search import beam_search, constrained_beam_search, greedy_decode
from captioning.search_settings import SearchSettings
from captioning.text import END_ID
from training.modeling.decoder import DecoderConfig, build_decoder

CONFIG = DecoderConfig(vocab_size=40, feature_dim=16, regions=9, embedding_dim=8, hidden_dim=12)


def search(beam_size: int, max_length: int, num_captions: int = 1, **options) -> SearchSettings:
    """Settings for these tests: no n-gram blocking unless asked, so the search is plain."""
    return SearchSettings(
        beam_size=beam_size,
        max_length=max_length,
        num_captions=num_captions,
        no_repeat_ngram=options.pop("no_repeat_ngram", 0),
        **options,
    )


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
    greedy = greedy_decode(weights, grid, pooled, settings=search(1, 12))
    beam = beam_search(weights, grid, pooled, settings=search(1, 12, length_penalty=0.0))
    for g, b in zip(greedy, beam, strict=True):
        assert g.token_ids == b[0].token_ids
        assert g.log_prob == pytest.approx(b[0].log_prob, abs=1e-9)


def test_beam_search_is_batched_consistently(weights, features):
    """Captioning images together gives the same result as one at a time."""
    grid, pooled = features
    together = beam_search(weights, grid, pooled, settings=search(4, 12, 4))
    for i in range(len(pooled)):
        alone = beam_search(weights, grid[i : i + 1], pooled[i : i + 1], settings=search(4, 12, 4))[
            0
        ]
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
    keep_images = DecoderStepper.keep_images

    def record(self, images):
        kept.append(len(images))
        keep_images(self, images)

    monkeypatch.setattr(DecoderStepper, "keep_images", record)
    settings = search(3, 12, 3, return_attention=True)
    together = beam_search(weights, grid, pooled, settings=settings)
    assert kept and kept == sorted(kept, reverse=True) and kept[-1] < len(pooled)
    monkeypatch.undo()
    for i in range(len(pooled)):
        alone = beam_search(weights, grid[i : i + 1], pooled[i : i + 1], settings=settings)[0]
        assert [h.token_ids for h in alone] == [h.token_ids for h in together[i]]
        for a, b in zip(alone, together[i], strict=True):
            assert a.log_prob == pytest.approx(b.log_prob, rel=1e-5)
            np.testing.assert_allclose(a.attention, b.attention, rtol=1e-4, atol=1e-6)


def test_n_best_is_ranked_and_distinct(weights, features):
    grid, pooled = features
    results = beam_search(weights, grid, pooled, settings=search(5, 10, 5))
    for hypotheses in results:
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert len({h.token_ids for h in hypotheses}) == len(hypotheses)


def test_attention_maps_are_distributions_one_per_word(weights, features):
    grid, pooled = features
    for hyp in greedy_decode(weights, grid, pooled, settings=search(1, 10, return_attention=True)):
        assert hyp.attention.shape == (len(hyp.token_ids), 9)
        np.testing.assert_allclose(hyp.attention.sum(axis=1), 1.0, rtol=1e-5)
    for hyps in beam_search(
        weights, grid, pooled, settings=search(3, 10, 2, return_attention=True)
    ):
        for hyp in hyps:
            assert hyp.attention.shape == (len(hyp.token_ids), 9)


def test_special_tokens_are_never_generated_and_length_is_bounded(weights, features):
    grid, pooled = features
    for hyps in beam_search(weights, grid, pooled, settings=search(4, 5, 4)):
        for hyp in hyps:
            assert len(hyp.token_ids) <= 5
            assert not set(hyp.token_ids) & {*BANNED_IDS, END_ID}


def test_numpy_step_matches_the_keras_model(features):
    """The NumPy recurrence computes the same probabilities as the trained Keras graph."""
    keras.utils.set_random_seed(5)
    model = build_decoder(CONFIG)
    weights = DecoderWeights.from_model(model)
    grid, pooled = features
    hyp = greedy_decode(weights, grid[:1], pooled[:1], settings=search(1, 8))[0]
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
    free = beam_search(weights, grid, pooled, settings=search(4, 20, 4, no_repeat_ngram=0))
    blocked = beam_search(weights, grid, pooled, settings=search(4, 20, 4, no_repeat_ngram=3))
    assert any(_has_repeated_trigram(h.token_ids) for hyps in free for h in hyps), "no loops"
    assert not any(_has_repeated_trigram(h.token_ids) for hyps in blocked for h in hyps)
    greedy = greedy_decode(weights, grid, pooled, settings=search(1, 20, no_repeat_ngram=3))
    assert not any(_has_repeated_trigram(h.token_ids) for h in greedy)
    settings = search(1, 20, length_penalty=0.0, no_repeat_ngram=3)
    beam_one = beam_search(weights, grid, pooled, settings=settings)
    assert [h.token_ids for h in greedy] == [b[0].token_ids for b in beam_one]


def test_constrained_search_always_writes_a_required_word(weights, features):
    grid, pooled = features
    required = [[5], [6, 7], [8], [9], [10], [11, 12]]
    results = constrained_beam_search(
        weights, grid, pooled, required=required, settings=search(3, 12, 3)
    )
    for words, hypotheses in zip(required, results, strict=True):
        assert hypotheses
        assert all(set(words) & set(h.token_ids) for h in hypotheses)
        assert all(np.isfinite(h.log_prob) for h in hypotheses)


def test_constrained_search_keeps_a_best_caption_that_has_the_word(weights, features):
    """Asking for a word the best caption already has finds that caption, or a better one."""
    grid, pooled = features
    settings = search(3, 12, length_penalty=0.0)
    free = beam_search(weights, grid, pooled, settings=settings)
    for image, (best,) in enumerate(free):
        word = next(t for t in best.token_ids)
        one = slice(image, image + 1)
        (constrained,) = constrained_beam_search(
            weights, grid[one], pooled[one], required=[[word]], settings=settings
        )[0][:1]
        # The two searches multiply different numbers of rows at once (GEMV or GEMM), so
        # float32 rounding differs at about 1e-7 of the score.
        assert constrained.score >= best.score - 1e-6 * abs(best.score)


def test_constrained_search_is_batched_consistently(weights, features):
    grid, pooled = features
    required = [[5], [6], [7], [8], [9], [10]]
    settings = search(3, 12)
    together = constrained_beam_search(weights, grid, pooled, required=required, settings=settings)
    for i in range(len(pooled)):
        one = slice(i, i + 1)
        alone = constrained_beam_search(
            weights, grid[one], pooled[one], required=required[one], settings=settings
        )
        assert [h.token_ids for h in alone[0]] == [h.token_ids for h in together[i]]


def test_each_words_log_prob_adds_up_to_the_captions(weights, features):
    """What the caption cut (`captioning.phrases`) reads: one log-prob per word, <end> aside."""
    grid, pooled = features
    settings = search(3, 12, 3)
    found = [
        *[[h] for h in greedy_decode(weights, grid, pooled, settings=search(1, 12))],
        *beam_search(weights, grid, pooled, settings=settings),
        *constrained_beam_search(weights, grid, pooled, required=[[5]] * 6, settings=settings),
    ]
    for hypotheses in found:
        for h in hypotheses:
            assert len(h.word_log_probs) == len(h.token_ids)
            assert all(p <= 0.0 for p in h.word_log_probs)
            # The words' own, then <end>'s (or nothing when the length limit ended it).
            assert sum(h.word_log_probs) >= h.log_prob - 1e-6


def test_constrained_search_can_require_the_word_among_the_first(weights, features):
    grid, pooled = features
    required = [[5], [6, 7], [8], [9], [10], [11, 12]]
    settings = search(3, 12, 3)
    free = constrained_beam_search(weights, grid, pooled, required=required, settings=settings)
    early = constrained_beam_search(
        weights, grid, pooled, required=required, settings=settings, name_within=np.full(6, 2)
    )
    first = [
        min(i for i, t in enumerate(h[0].token_ids) if t in words)
        for words, h in zip(required, free, strict=True)
    ]
    assert max(first) >= 2, "the test needs a caption that names its word late"
    for words, hypotheses in zip(required, early, strict=True):
        for h in hypotheses:
            assert set(words) & set(h.token_ids[:2]), h.token_ids
    # 0: no deadline, as without one.
    same = constrained_beam_search(
        weights, grid, pooled, required=required, settings=settings, name_within=np.zeros(6, int)
    )
    assert [[h.token_ids for h in x] for x in same] == [[h.token_ids for h in x] for x in free]


# Roles for ids the random decoder writes often: "and" 6, determiners 10 and 32, adjectives 11
# and 22; 39, 13 and <end> may not follow them inside a noun phrase.
ROLES = WordRoles(
    conjunction=6,
    determiners=frozenset({10, 32}),
    adjectives=frozenset({11, 22}),
    not_after_modifier=(13, 39, END_ID),
)


def _breaks_grammar(ids: tuple[int, ...], max_length: int) -> bool:
    """Whether a caption writes a word `ROLES` forbids after its prefix, or ends where <end>
    is forbidden before the length limit forces it."""
    if any(ids[i] in ROLES.blocked_after(ids[:i]) for i in range(1, len(ids))):
        return True
    return len(ids) < max_length and END_ID in ROLES.blocked_after(ids)


def test_searches_given_word_roles_write_no_broken_grammar(weights, features):
    grid, pooled = features
    settings = search(4, 20, 4)
    free = beam_search(weights, grid, pooled, settings=settings)
    assert any(_breaks_grammar(h.token_ids, 20) for hyps in free for h in hyps), "no stutter"
    found = [
        *[[h] for h in greedy_decode(weights, grid, pooled, settings=search(1, 20), roles=ROLES)],
        *beam_search(weights, grid, pooled, settings=settings, roles=ROLES),
        *constrained_beam_search(
            weights, grid, pooled, required=[[5]] * 6, settings=settings, roles=ROLES
        ),
    ]
    for hypotheses in found:
        assert hypotheses
        for h in hypotheses:
            assert not _breaks_grammar(h.token_ids, 20), h.token_ids
