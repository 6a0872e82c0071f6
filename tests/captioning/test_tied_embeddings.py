"""A decoder whose vocabulary layer reuses the word embedding (`--tie-embeddings`): saved,
read back without Keras, exported to LiteRT and decoded like any other."""

import keras
import numpy as np
import pytest

from captioning.decoder import DecoderConfig, build_decoder
from captioning.decoder_layers import EMBEDDING, VOCAB_LOGITS
from captioning.decoding import BANNED_IDS, DecoderWeights, beam_search
from captioning.keras_file import read_layer_weights
from captioning.runtime import LiteRTDecoderStep, export_decoder_step

pytestmark = pytest.mark.slow

CONFIG = DecoderConfig(
    vocab_size=30, feature_dim=16, regions=9, embedding_dim=8, hidden_dim=12, tie_embeddings=True
)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(11)
    decoder = build_decoder(CONFIG)
    decoder.set_weights([w * 4 for w in decoder.get_weights()])  # sharper distributions
    return decoder


def test_the_vocabulary_layer_is_the_embedding_transposed(model):
    names = {layer.name for layer in model.layers}
    assert VOCAB_LOGITS not in names
    embeddings, bias = model.get_layer(EMBEDDING).get_weights()
    weights = DecoderWeights.from_model(model)
    np.testing.assert_array_equal(weights.logits[0], embeddings.T)
    allowed = np.setdiff1d(np.arange(CONFIG.vocab_size), BANNED_IDS)
    np.testing.assert_array_equal(weights.logits[1][allowed], bias[allowed])
    assert weights.combine[0].shape == (2 * CONFIG.hidden_dim, CONFIG.embedding_dim)


def test_a_saved_tied_decoder_reads_the_same_with_or_without_keras(model, tmp_path):
    path = tmp_path / "decoder.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    expected = DecoderWeights.from_model(model)
    for weights in (
        DecoderWeights.from_model(loaded),
        DecoderWeights.from_layers(read_layer_weights(path)),
    ):
        for name in ("word_gates", "recurrent_kernel"):
            np.testing.assert_array_equal(getattr(weights, name), getattr(expected, name))
        for name in ("combine", "logits"):
            for ours, theirs in zip(getattr(weights, name), getattr(expected, name), strict=True):
                np.testing.assert_array_equal(ours, theirs)


def test_the_litert_export_decodes_a_tied_decoder_like_numpy(model):
    weights = DecoderWeights.from_model(model)
    runtime = LiteRTDecoderStep(export_decoder_step(weights))  # checks itself against NumPy
    rng = np.random.default_rng(2)
    grid = rng.normal(size=(4, 9, 16)).astype(np.float32)
    pooled = grid.mean(axis=1)
    exact = beam_search(weights, grid, pooled, beam_size=3, max_length=8)
    fast = beam_search(weights, grid, pooled, beam_size=3, max_length=8, runtime=runtime)
    for ours, theirs in zip(fast, exact, strict=True):
        assert ours[0].log_prob == pytest.approx(theirs[0].log_prob, abs=0.5)
