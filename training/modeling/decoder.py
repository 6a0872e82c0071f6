"""The caption decoder: an LSTM conditioned on the image, attending over the encoder's grid.

Show, Attend and Tell style, with Luong ("global, general") attention so that training runs
the LSTM over whole captions at once (teacher forcing):

    h0, c0   = tanh(W_h pooled), tanh(W_c pooled)        image initialises the LSTM state
    keys     = W_k grid                                  (regions, hidden)
    h_t      = LSTM(embed(word_{t-1}), h_{t-1}, c_{t-1})
    alpha_t  = softmax(keys . h_t / sqrt(hidden))        one attention map per word
    out_t    = tanh(W_o [h_t ; sum(alpha_t keys)])
    logits_t = W_v dropout(out_t)

A training batch holds several images with several captions each, so the region projection is
computed once per image rather than once per caption. Decoding (greedy and beam search) lives in
`captioning.decoder_step` and runs the same equations on these layers' weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers, ops

# Layer names: `captioning.decoder_step` reads the weights by these names.
from captioning.decoder_layers import (
    COMBINE,
    EMBEDDING,
    INIT_C,
    INIT_H,
    LSTM,
    REGION_KEYS,
    VOCAB_LOGITS,
)

# The registered names ("captioning>RegionAttention", ...) are stored in every saved decoder.keras.
SERIALIZATION_PACKAGE = "captioning"


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    feature_dim: int
    regions: int
    embedding_dim: int = 256
    hidden_dim: int = 512
    dropout: float = 0.2
    region_dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class RegionAttention(layers.Layer):
    """Scaled dot-product attention of each word's LSTM output over the image regions."""

    def call(self, queries, keys):  # (B, T, H), (B, R, H)
        scale = ops.sqrt(ops.cast(ops.shape(keys)[-1], queries.dtype))
        scores = ops.einsum("bth,brh->btr", queries, keys) / scale
        weights = ops.softmax(scores, axis=-1)
        context = ops.einsum("btr,brh->bth", weights, keys)
        return context, weights


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class RepeatPerCaption(layers.Layer):
    """(images, ...) -> (images * captions_per_image, ...), each image repeated for its captions."""

    def call(self, tensor, captions):  # captions: (B, N, T) token ids
        per_image = ops.shape(captions)[1]
        return ops.repeat(tensor, per_image, axis=0)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class FlattenCaptions(layers.Layer):
    """(images, captions_per_image, T) -> (images * captions_per_image, T)."""

    def call(self, captions):
        return ops.reshape(captions, (-1, ops.shape(captions)[-1]))


def build_decoder(config: DecoderConfig) -> keras.Model:
    """Training/scoring model: (grid, pooled, captions[B, N, T]) -> logits[B*N, T, vocab]."""
    grid = keras.Input((config.regions, config.feature_dim), name="grid")
    pooled = keras.Input((config.feature_dim,), name="pooled")
    captions = keras.Input((None, None), dtype="int32", name="captions")

    pooled_in = layers.Dropout(config.dropout, name="pooled_dropout")(pooled)
    init_h = layers.Dense(config.hidden_dim, activation="tanh", name=INIT_H)(pooled_in)
    init_c = layers.Dense(config.hidden_dim, activation="tanh", name=INIT_C)(pooled_in)
    # Dropping whole regions keeps the decoder from leaning on one spot of the grid.
    grid_in = layers.Dropout(config.region_dropout, noise_shape=(None, config.regions, 1))(grid)
    keys = layers.Dense(config.hidden_dim, name=REGION_KEYS)(grid_in)

    repeat = RepeatPerCaption(name="repeat_per_caption")
    tokens = FlattenCaptions(name="flatten_captions")(captions)
    embedded = layers.Embedding(config.vocab_size, config.embedding_dim, name=EMBEDDING)(tokens)
    embedded = layers.Dropout(config.dropout, name="embedding_dropout")(embedded)
    hidden = layers.LSTM(config.hidden_dim, return_sequences=True, name=LSTM)(
        embedded, initial_state=[repeat(init_h, captions), repeat(init_c, captions)]
    )
    context, _ = RegionAttention(name="region_attention")(hidden, repeat(keys, captions))
    combined = layers.Dense(config.hidden_dim, activation="tanh", name=COMBINE)(
        layers.Concatenate(name="hidden_and_context")([hidden, context])
    )
    combined = layers.Dropout(config.dropout, name="output_dropout")(combined)
    logits = layers.Dense(config.vocab_size, name=VOCAB_LOGITS)(combined)
    return keras.Model([grid, pooled, captions], logits, name="caption_decoder")


def masked_caption_loss(label_smoothing: float = 0.0):
    """Cross-entropy over real words only (pad id 0 is masked), with optional label smoothing."""

    def loss(targets, logits):
        targets = ops.cast(targets, "int32")
        log_probs = ops.log_softmax(logits, axis=-1)
        nll = -ops.take_along_axis(log_probs, ops.expand_dims(targets, -1), axis=-1)[..., 0]
        if label_smoothing:
            nll = (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(log_probs, axis=-1)
        mask = ops.cast(ops.not_equal(targets, 0), logits.dtype)
        return ops.sum(nll * mask) / ops.maximum(ops.sum(mask), 1.0)

    loss.__name__ = "masked_caption_loss"
    return loss
