"""The decoding step exported for LiteRT (int8 weights) against the NumPy reference."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from captioning.bundle import DECODER_STEP_TFLITE, ArtifactError, load_bundle
from captioning.decoder_step import DecoderStepper
from captioning.predictor import CaptionPredictor
from captioning.runtime import (
    DECODER_STEP_SIGNATURES,
    STEP_SIGNATURE,
    LiteRTDecoderStep,
    RuntimeOptions,
    make_decoder_step,
)
from captioning.search import beam_search, greedy_decode
from captioning.search_settings import SearchSettings
from captioning.text import END_ID, PAD_ID
from tests.support.fixtures import tiny_examples
from training.export import DECODER_STEP_LOG_PROB_TOLERANCE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tiny_artifacts):
    return load_bundle(tiny_artifacts)


@pytest.fixture(scope="module")
def numpy_predictor(tiny_artifacts):
    return CaptionPredictor.from_artifacts(
        tiny_artifacts, runtime=RuntimeOptions(decoder_runtime="numpy")
    )


@pytest.fixture(scope="module")
def encoded(numpy_predictor):
    images = [image for _, image, _ in tiny_examples()]
    return numpy_predictor.encode(numpy_predictor.preprocess(images))


def test_training_exports_the_step_with_its_hash(bundle, tiny_artifacts):
    assert DECODER_STEP_TFLITE in bundle.manifest["files"]
    assert bundle.tflite_decoder_step == (tiny_artifacts / DECODER_STEP_TFLITE).read_bytes()


def test_one_step_matches_numpy(bundle, numpy_predictor, encoded):
    weights = numpy_predictor.weights
    exact = DecoderStepper(weights, encoded.grid, encoded.pooled)
    fast = DecoderStepper(
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


def test_export_carries_step_init_and_beam_step(bundle):
    interpreter = Interpreter(model_content=bundle.tflite_decoder_step)
    assert set(interpreter.get_signature_list()) == set(DECODER_STEP_SIGNATURES)


def test_an_export_without_init_and_beam_step_is_refused():
    import tensorflow as tf

    step = tf.function(lambda h: {"h": h + 1.0})
    module = tf.Module()
    setattr(module, STEP_SIGNATURE, step)
    concrete = step.get_concrete_function(tf.TensorSpec([None, 4], tf.float32, name="h"))
    flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module).convert()
    with pytest.raises(ArtifactError, match="re-export"):
        LiteRTDecoderStep(flatbuffer)


def test_init_matches_numpy(bundle, numpy_predictor, encoded):
    weights = numpy_predictor.weights
    exact = DecoderStepper(weights, encoded.grid, encoded.pooled)
    fast = DecoderStepper(
        weights, encoded.grid, encoded.pooled, LiteRTDecoderStep(bundle.tflite_decoder_step)
    )
    for name in ("keys", "h0", "c0"):
        reference, result = getattr(exact, name), getattr(fast, name)
        assert result.shape == reference.shape
        # int8 weights with activations quantised per row: about 0.6% RMS error on the real
        # model's region keys; a wrong weight or layout would be off by ~100%.
        relative_rms = np.sqrt(np.mean((result - reference) ** 2) / np.mean(reference**2))
        assert relative_rms < 0.03, name


def test_beam_step_matches_numpy(bundle, numpy_predictor, encoded):
    """The scoring and top-k in the graph pick what NumPy picks from the same log-probs."""
    weights = numpy_predictor.weights
    exact = DecoderStepper(weights, encoded.grid, encoded.pooled)
    fast = DecoderStepper(
        weights, encoded.grid, encoded.pooled, LiteRTDecoderStep(bundle.tflite_decoder_step)
    )
    beams, vocab = 3, len(weights.word_gates)
    rows = len(encoded) * beams
    tokens = np.arange(rows) % vocab
    h, c = np.repeat(exact.h0, beams, axis=0), np.repeat(exact.c0, beams, axis=0)
    scores = -np.arange(rows, dtype=np.float64)
    scores[1::beams] = -np.inf  # a beam that never came alive
    finished = np.arange(rows) % beams == beams - 1
    penalty = np.zeros((rows, vocab), np.float32)
    penalty[0, :] = -1e9  # the first image's best beam may only end
    penalty[0, END_ID] = 0.0
    expected, ours = (
        stepper.beam_step(tokens, h, c, beams, scores, finished, penalty)
        for stepper in (exact, fast)
    )
    assert ours[0].shape == ours[1].shape == (len(encoded), beams)
    real = expected[0] > -1e8  # not candidates ruled out by a -1e9 penalty (float32 there)
    assert (ours[0] > -1e8).tolist() == real.tolist()
    np.testing.assert_allclose(
        ours[0][real], expected[0][real], atol=DECODER_STEP_LOG_PROB_TOLERANCE
    )
    assert np.all(np.diff(ours[0], axis=1) <= 0)  # best first
    # A finished beam extends by padding at its own score: both runtimes pick that candidate.
    pad_candidate = (beams - 1) * vocab + PAD_ID
    assert pad_candidate in ours[1][0] and pad_candidate in expected[1][0]
    for reference, result in zip(expected[2:], ours[2:], strict=True):
        np.testing.assert_allclose(result, reference, atol=0.05)


def test_captions_agree_with_numpy(bundle, numpy_predictor, encoded):
    """int8 weights move log-probs a little; on these images the captions stay the same."""
    runtime = LiteRTDecoderStep(bundle.tflite_decoder_step)
    weights, grid, pooled = numpy_predictor.weights, encoded.grid, encoded.pooled
    greedy_settings = numpy_predictor.search.with_options(beam_size=1)
    greedy = [
        greedy_decode(weights, grid, pooled, settings=greedy_settings, runtime=r)
        for r in (None, runtime)
    ]
    assert [h.token_ids for h in greedy[0]] == [h.token_ids for h in greedy[1]]
    beam_settings = numpy_predictor.search.with_options(beam_size=3)
    beams = [
        beam_search(weights, grid, pooled, settings=beam_settings, runtime=r)
        for r in (None, runtime)
    ]
    assert [b[0].token_ids for b in beams[0]] == [b[0].token_ids for b in beams[1]]


def test_the_service_default_decodes_with_litert(tiny_artifacts, numpy_predictor, encoded):
    predictor = CaptionPredictor.from_artifacts(tiny_artifacts)
    assert predictor.decoder_runtime == "litert-int8"
    assert numpy_predictor.decoder_runtime == "numpy"
    settings = predictor.search.with_options(beam_size=3)
    ours = [r.best.text for r in predictor.generate(encoded, settings)]
    reference = [r.best.text for r in numpy_predictor.generate(encoded, settings)]
    assert ours == reference


def test_runtime_choice_is_validated(bundle):
    numpy = RuntimeOptions(decoder_runtime="numpy")
    assert make_decoder_step(bundle.tflite_decoder_step, options=numpy) is None
    assert make_decoder_step(None, options=RuntimeOptions()) is None  # no export: NumPy
    with pytest.raises(ArtifactError, match="no decoder_step"):
        make_decoder_step(None, options=RuntimeOptions(decoder_runtime="litert"))
    with pytest.raises(ValueError, match="unknown decoder runtime"):
        RuntimeOptions(decoder_runtime="onnx")


def test_one_runtime_serves_captions_of_different_images_and_batch_sizes(
    bundle, numpy_predictor, encoded
):
    """The runtime copies an image's regions in once per caption, not per word: a caption
    decoded after others, of other sizes, must come out as with a runtime of its own."""
    shared = LiteRTDecoderStep(bundle.tflite_decoder_step)
    weights, settings = numpy_predictor.weights, numpy_predictor.search.with_options(beam_size=3)

    def caption(runtime, rows):
        grid, pooled = encoded.grid[rows], encoded.pooled[rows]
        found = beam_search(weights, grid, pooled, settings=settings, runtime=runtime)
        return [b[0].token_ids for b in found]

    orders = [[0], [1], [1, 2], [0, 2], list(range(len(encoded))), [0]]
    for rows in orders:
        fresh = LiteRTDecoderStep(bundle.tflite_decoder_step)
        assert caption(shared, rows) == caption(fresh, rows)


def test_a_lone_image_and_a_batch_get_the_same_captions(bundle, numpy_predictor, encoded):
    """A lone image's rows run on a multi-threaded interpreter, a batch's on a single-threaded
    one: the thread count must not change what the decoder says."""
    runtime = LiteRTDecoderStep(bundle.tflite_decoder_step, num_threads=2, batch_threads=1)
    assert runtime._single is not runtime._batched
    weights, settings = numpy_predictor.weights, SearchSettings(beam_size=3, max_length=8)
    together = beam_search(
        weights, encoded.grid, encoded.pooled, settings=settings, runtime=runtime
    )
    for index, hypotheses in enumerate(together):
        one = slice(index, index + 1)
        alone = beam_search(
            weights, encoded.grid[one], encoded.pooled[one], settings=settings, runtime=runtime
        )[0]
        assert [h.token_ids for h in alone] == [h.token_ids for h in hypotheses]
        np.testing.assert_allclose(
            [h.log_prob for h in alone], [h.log_prob for h in hypotheses], atol=1e-4
        )
