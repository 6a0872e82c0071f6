"""Session-wide fixtures: one tiny dataset and one tiny trained model, shared by every test."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the session trains a model: TensorFlow loads

from training.fixture import tiny_config, write_flickr8k


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    root = tmp_path_factory.mktemp("flickr8k")
    return root, write_flickr8k(root)


@pytest.fixture(scope="session")
def tiny_training_run(tiny_dataset, tmp_path_factory: pytest.TempPathFactory):
    """Train the tiny captioner once per session with the real pipeline (the default
    backbone's features, its LiteRT exports) and training/fixture.py's recipe."""
    from training.train import train

    root, _ = tiny_dataset
    base = tmp_path_factory.mktemp("tiny-run")
    config = tiny_config(root, base / "artifacts", base / "work")
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
