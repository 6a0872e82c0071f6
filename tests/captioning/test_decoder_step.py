"""The decoding step exported for LiteRT (int8 weights) against the NumPy reference."""

import numpy as np
import pytest

from captioning.bundle import DECODER_STEP_TFLITE, load_bundle
from captioning.decoding import _Stepper, beam_search, greedy_decode
from captioning.predictor import CaptionPredictor, DecodeOptions
from captioning.runtime import (
    DECODER_STEP_LOG_PROB_TOLERANCE,
    LiteRTDecoderStep,
    make_decoder_step,
)
from tests.support.fixtures import tiny_examples

pytestmark = pytest.mark.slow
pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def bundle(tiny_artifacts):
    return load_bundle(tiny_artifacts, keras_encoder=True, keras_decoder=False)


@pytest.fixture(scope="module")
def numpy_predictor(tiny_artifacts):
    return CaptionPredictor.from_artifacts(tiny_artifacts, decoder_runtime="numpy")


@pytest.fixture(scope="module")
def encoded(numpy_predictor):
    images = [image for _, image, _ in tiny_examples()]
    return numpy_predictor.encode(numpy_predictor.preprocess(images))


def test_training_exports_the_step_with_its_hash(bundle, tiny_artifacts):
    assert DECODER_STEP_TFLITE in bundle.manifest["files"]
    assert bundle.tflite_decoder_step == (tiny_artifacts / DECODER_STEP_TFLITE).read_bytes()


def test_one_step_matches_numpy(bundle, numpy_predictor, encoded):
    weights = numpy_predictor.weights
    exact = _Stepper(weights, encoded.grid, encoded.pooled)
    fast = _Stepper(
        weights, encoded.grid, encoded.pooled, LiteRTDecoderStep(bundle.tflite_decoder_step)
    )
    beams = 2
    tokens = np.arange(len(encoded) * beams) % len(weights.word_gates)
    h = np.repeat(exact.h0, beams, axis=0)
    c = np.repeat(exact.c0, beams, axis=0)
    expected, ours = exact.step(tokens, h, c, beams), fast.step(tokens, h, c, beams)
    allowed = weights.logits[1] > -1e8
    assert (
        np.abs(expected[0][:, allowed] - ours[0][:, allowed]).max()
        < DECODER_STEP_LOG_PROB_TOLERANCE
    )
    for reference, result in zip(expected[1:], ours[1:], strict=True):
        assert result.shape == reference.shape
        np.testing.assert_allclose(result, reference, atol=0.05)


def test_captions_agree_with_numpy(bundle, numpy_predictor, encoded):
    """int8 weights move log-probs a little; on these images the captions stay the same."""
    runtime = LiteRTDecoderStep(bundle.tflite_decoder_step)
    weights, max_length = numpy_predictor.weights, numpy_predictor.max_length
    grid, pooled = encoded.grid, encoded.pooled
    greedy = [greedy_decode(weights, grid, pooled, max_length, runtime=r) for r in (None, runtime)]
    assert [h.token_ids for h in greedy[0]] == [h.token_ids for h in greedy[1]]
    beams = [beam_search(weights, grid, pooled, 3, max_length, runtime=r) for r in (None, runtime)]
    assert [b[0].token_ids for b in beams[0]] == [b[0].token_ids for b in beams[1]]


def test_the_service_default_decodes_with_litert(tiny_artifacts, numpy_predictor, encoded):
    predictor = CaptionPredictor.from_artifacts(tiny_artifacts)
    assert predictor.decoder_runtime == "litert-int8"
    assert numpy_predictor.decoder_runtime == "numpy"
    options = DecodeOptions(beam_size=3)
    ours = [c[0].text for c in predictor.generate(encoded, options)]
    reference = [c[0].text for c in numpy_predictor.generate(encoded, options)]
    assert ours == reference


def test_runtime_choice_is_validated(bundle):
    assert make_decoder_step(bundle.tflite_decoder_step, "numpy") is None
    assert make_decoder_step(None, "auto") is None  # an older bundle: NumPy
    with pytest.raises(ValueError, match="no decoder_step"):
        make_decoder_step(None, "litert")
    with pytest.raises(ValueError, match="unknown decoder runtime"):
        make_decoder_step(bundle.tflite_decoder_step, "onnx")


def test_one_runtime_serves_captions_of_different_images_and_batch_sizes(
    bundle, numpy_predictor, encoded
):
    """The runtime copies an image's regions in once per caption, not per word: a caption
    decoded after others, of other sizes, must come out as with a runtime of its own."""
    shared = LiteRTDecoderStep(bundle.tflite_decoder_step)
    weights, max_length = numpy_predictor.weights, numpy_predictor.max_length

    def caption(runtime, rows):
        grid, pooled = encoded.grid[rows], encoded.pooled[rows]
        return [
            b[0].token_ids
            for b in beam_search(weights, grid, pooled, 3, max_length, runtime=runtime)
        ]

    orders = [[0], [1], [1, 2], [0, 2], list(range(len(encoded))), [0]]
    for rows in orders:
        fresh = LiteRTDecoderStep(bundle.tflite_decoder_step)
        assert caption(shared, rows) == caption(fresh, rows)
