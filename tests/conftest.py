"""Session-wide fixtures: one tiny dataset and one tiny trained model, shared by every test."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.support.fixtures import write_flickr8k

TINY_TRAINING = {
    "min_word_count": 1,
    "embedding_dim": 32,
    "hidden_dim": 64,
    "dropout": 0.0,
    "region_dropout": 0.0,
    "label_smoothing": 0.0,
    "learning_rate": 1e-2,
    "lr_decay": 1.0,
    "epoch_lr_decay": 1.0,
    "batch_images": 6,
    "epochs": 24,
    "patience": 1000,
    "eval_beam_size": 3,
    "weight_average": 0.0,  # the raw weights: this model must overfit its few captions fast
    "self_critical_minutes": 0.0,  # cross-entropy alone; tests/training/test_self_critical.py
}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    root = tmp_path_factory.mktemp("flickr8k")
    return root, write_flickr8k(root)


@pytest.fixture(scope="session")
def tiny_training_run(tiny_dataset, tmp_path_factory: pytest.TempPathFactory):
    """Train the tiny captioner once per session with the real pipeline (Lite0 features too)."""
    from training.config import TrainConfig
    from training.train import train

    root, _ = tiny_dataset
    base = tmp_path_factory.mktemp("tiny-run")
    config = TrainConfig(
        data_dir=root,
        artifacts_dir=base / "artifacts",
        work_dir=base / "work",
        concepts=False,  # tests/captioning/test_predictor_concepts.py adds them to a copy
        **TINY_TRAINING,
    )
    logging.getLogger(__name__).info("training the tiny fixture model in %s", base)
    manifest = train(config)
    return config, manifest


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_training_run) -> Path:
    config, _ = tiny_training_run
    return config.artifacts_dir


@pytest.fixture(scope="session")
def tiny_predictor(tiny_artifacts):
    from captioning.predictor import CaptionPredictor

    # The service's runtimes: training extracts its features with the same LiteRT encoder.
    predictor = CaptionPredictor.from_artifacts(tiny_artifacts)
    predictor.warmup()
    return predictor
