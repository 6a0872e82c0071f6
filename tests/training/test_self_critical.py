"""Self-critical training: its CIDEr-D reward, its advantages, its gradient step, and its phase
in the training pipeline (checkpointed, resumable, recorded in the manifest)."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from training.cider import CiderD


def _random_corpus(seed: int, images: int = 40):
    rng = random.Random(seed)
    words = [
        "a",
        "man",
        "dog",
        "runs",
        "on",
        "the",
        "grass",
        "in",
        "red",
        "shirt",
        "two",
        "children",
        "play",
        "ball",
        "water",
    ]

    def caption(low: int, high: int) -> list[str]:
        return [rng.choice(words) for _ in range(rng.randint(low, high))]

    references = [[caption(4, 12) for _ in range(5)] for _ in range(images)]
    hypotheses = [caption(2, 12) for _ in range(images)]
    return references, hypotheses


def test_cider_d_matches_pycocoevalcap_caption_by_caption():
    from pycocoevalcap.cider.cider import Cider

    references, hypotheses = _random_corpus(seed=3)
    mean, expected = Cider().compute_score(
        {i: [" ".join(r) for r in refs] for i, refs in enumerate(references)},
        {i: [" ".join(h)] for i, h in enumerate(hypotheses)},
    )
    scorer = CiderD(references)
    ours = np.array([scorer.score(i, h) for i, h in enumerate(hypotheses)])
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)
    assert ours.mean() == pytest.approx(mean)


def test_cider_d_prefers_the_reference_words():
    references = [
        [["a", "dog", "runs", "on", "the", "grass"], ["a", "brown", "dog", "on", "grass"]],
        [["two", "children", "play", "in", "the", "water"], ["children", "in", "water"]],
    ]
    scorer = CiderD(references)
    assert scorer.score(0, ["a", "dog", "on", "the", "grass"]) > scorer.score(
        0, ["two", "children", "in", "the", "water"]
    )
    assert scorer.score(0, []) == 0.0


@pytest.fixture(scope="module")
def tiny_trainer():
    import keras

    from captioning.text import Vocabulary
    from training.modeling.decoder import DecoderConfig, build_decoder
    from training.self_critical import SelfCriticalConfig, SelfCriticalTrainer

    keras.utils.set_random_seed(0)
    references, _ = _random_corpus(seed=5, images=8)
    vocabulary = Vocabulary.build([c for refs in references for c in refs], min_count=1)
    model = build_decoder(
        DecoderConfig(len(vocabulary), feature_dim=8, regions=4, embedding_dim=8, hidden_dim=16)
    )
    config = SelfCriticalConfig(learning_rate=1e-2, candidates_per_image=4)
    trainer = SelfCriticalTrainer(model, vocabulary, references, 8, config, seed=0)
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(8, 4, 8)).astype(np.float32)
    return trainer, grid, grid.mean(axis=1)


def test_advantages_are_relative_to_the_images_other_candidates(tiny_trainer):
    trainer, _, _ = tiny_trainer
    rewards = np.array([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0], np.float32)
    advantages = trainer.advantages(rewards)
    np.testing.assert_allclose(advantages, [1.0, -1 / 3, -1 / 3, -1 / 3, 0, 0, 0, 0], atol=1e-6)


def test_candidates_are_the_beams_n_best_ending_with_end(tiny_trainer):
    from captioning.text import END_ID, PAD_ID

    trainer, grid, pooled = tiny_trainer
    candidates = trainer.candidates(grid[:2], pooled[:2])
    assert candidates.shape[0] == 2 * trainer.config.candidates_per_image
    for row in candidates.tolist():
        assert END_ID in row
        assert set(row[row.index(END_ID) + 1 :]) <= {PAD_ID}


def test_a_step_raises_the_better_candidates_log_probability(tiny_trainer):
    """The policy gradient moves probability from the worse candidates to the better ones."""
    trainer, grid, pooled = tiny_trainer
    images = np.arange(len(grid))
    targets = trainer.candidates(grid, pooled)
    rewards = trainer.rewards(images, targets)
    advantages = trainer.advantages(rewards)
    assert np.abs(advantages).max() > 0, "the fixture needs candidates that differ in reward"
    before = _per_word_log_probs(trainer.model, grid, pooled, targets)
    for _ in range(3):
        trainer.train_batch(images, grid, pooled)
    after = _per_word_log_probs(trainer.model, grid, pooled, targets)
    # Weighted by advantage, the candidates' log-probabilities went up.
    assert float(advantages @ (after - before)) > 0


def _per_word_log_probs(model, grid, pooled, targets) -> np.ndarray:
    import keras

    from captioning.text import PAD_ID, START_ID

    n = len(targets) // len(grid)
    inputs = np.concatenate([np.full((len(targets), 1), START_ID), targets[:, :-1]], 1)
    logits = model([grid, pooled, inputs.reshape(len(grid), n, -1)], training=False)
    log_probs = keras.ops.convert_to_numpy(keras.ops.log_softmax(logits, axis=-1))
    chosen = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    mask = targets != PAD_ID
    return (chosen * mask).sum(1) / mask.sum(1)


def test_pipeline_runs_self_critical_epochs_and_resumes_them(tiny_training_run, tmp_path):
    from training.state import SELF_CRITICAL_AVERAGE_FILE, SELF_CRITICAL_FILE, TrainState
    from training.train import train

    config, _ = tiny_training_run
    work = tmp_path / "work"
    first = replace(
        config,
        work_dir=work,
        artifacts_dir=tmp_path / "a1",
        epochs=2,
        export_tflite=False,
        self_critical_minutes=30.0,
        self_critical_epochs=1,
        self_critical_learning_rate=1e-3,
    )
    manifest = train(first)
    phases = [record["phase"] for record in manifest["training"]["history"]]
    assert phases == ["cross-entropy", "cross-entropy", "self-critical"]
    assert manifest["training"]["self_critical_epochs_run"] == 1
    assert (work / "checkpoints" / SELF_CRITICAL_FILE).is_file()
    state = TrainState.load(work / "checkpoints")
    assert state.in_self_critical and state.self_critical_epochs == 1
    average_file = work / "checkpoints" / SELF_CRITICAL_AVERAGE_FILE
    with np.load(average_file) as stored:  # the averaged weights, one update per batch
        updates_after_one_epoch = int(stored["updates"])
    assert updates_after_one_epoch > 0

    resumed = replace(first, artifacts_dir=tmp_path / "a2", self_critical_epochs=2, resume=True)
    manifest = train(resumed)
    history = manifest["training"]["history"]
    assert [record["epoch"] for record in history] == [1, 2, 3, 4]
    assert history[-1]["phase"] == "self-critical" and "mean_reward" in history[-1]
    assert manifest["training"]["self_critical_epochs_run"] == 2
    with np.load(average_file) as stored:  # resumed, not restarted
        assert int(stored["updates"]) == 2 * updates_after_one_epoch
