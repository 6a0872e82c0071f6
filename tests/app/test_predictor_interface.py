"""The fake predictor the service tests run on has the real predictor's interface."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from captioning.predictor import CaptionPredictor
from captioning.types import Predictor
from tests.support.predictors import FakePredictor

COMMITTED_ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
METHODS = ("warmup", "preprocess", "encode", "generate", "caption_images")


@pytest.fixture(scope="module")
def real_predictor() -> CaptionPredictor:
    return CaptionPredictor.from_artifacts(COMMITTED_ARTIFACTS)


def test_both_predictors_satisfy_the_protocol(real_predictor) -> None:
    assert isinstance(real_predictor, Predictor)
    assert isinstance(FakePredictor(), Predictor)


@pytest.mark.parametrize("method", METHODS)
def test_the_fake_takes_the_real_methods_parameters(method: str) -> None:
    def parameters(cls: type) -> list[str]:
        return list(inspect.signature(getattr(cls, method)).parameters)

    assert parameters(FakePredictor) == parameters(CaptionPredictor) == parameters(Predictor)
