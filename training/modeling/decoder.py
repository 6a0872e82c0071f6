"""The caption decoder: an LSTM conditioned on the image, attending over the encoder's grid.

Show, Attend and Tell style, with Luong ("global, general") attention so that training runs
the LSTM over whole captions at once (teacher forcing):

    h0, c0   = tanh(W_h pooled), tanh(W_c pooled)        image initialises the LSTM state
    keys     = W_k grid                                  (regions, hidden)
    h_t      = LSTM(embed(word_{t-1}), h_{t-1}, c_{t-1})
    alpha_t  = softmax(keys . h_t / sqrt(hidden))        one attention map per word
    out_t    = tanh(W_o [h_t ; sum(alpha_t keys)])
    logits_t = W_v dropout(out_t)

A decoder conditioned on concepts (`entities` > 0) also takes one concept per caption, an index
into a fixed table of GloVe vectors of the concept words (row 0: none). The vector goes into
the initial state and beside every word's embedding into the LSTM: the concept says what the
caption is about, as ViECap's entity prompt does. The table is frozen, so a concept that no
caption taught reads as its GloVe neighbours do. Text-only captions (no photo) train it with
zeros for the image.

A training batch holds several images with several captions each, so the region projection is
computed once per image rather than once per caption. Decoding (greedy and beam search) lives in
`captioning.decoder_step` and runs the same equations on these layers' weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np
from keras import layers, ops

# Layer names: `captioning.decoder_step` reads the weights by these names.
from captioning.decoder_layers import (
    COMBINE,
    EMBEDDING,
    ENTITY_INIT_C,
    ENTITY_INIT_H,
    ENTITY_VECTORS,
    INIT_C,
    INIT_H,
    LSTM,
    OUTPUT_VECTOR,
    REGION_KEYS,
    STYLE_VECTORS,
    VOCAB_LOGITS,
    WORD_VECTORS,
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
    entities: int = 0  # concepts the decoder is conditioned on (0: not conditioned)
    entity_dim: int = 0  # the size of a concept's vector
    # Caption styles besides the photos' own (one per text corpus; 0: none). A caption's
    # conditioning id is then its concept's (index + 1, 0 for none) plus
    # (entities + 1) x its style (0: the photos' captions), as `condition_ids` writes it.
    styles: int = 0

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


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class FlattenEntities(layers.Layer):
    """(images, captions_per_image) -> (images * captions_per_image,), as FlattenCaptions."""

    def call(self, entities):
        return ops.reshape(entities, (-1,))


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class SplitConditions(layers.Layer):
    """Conditioning ids -> (concept ids, style ids): id = concept + (entities + 1) x style."""

    def __init__(self, entities: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entities = entities

    def call(self, ids):
        return ids % (self.entities + 1), ids // (self.entities + 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "entities": self.entities}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class RepeatOverWords(layers.Layer):
    """(rows, D) -> (rows, T, D): one caption's concept vector beside each of its T words."""

    def call(self, vectors, tokens):  # tokens: (rows, T)
        return ops.repeat(ops.expand_dims(vectors, 1), ops.shape(tokens)[1], axis=1)


def build_decoder(config: DecoderConfig) -> keras.Model:
    """Training/scoring model: (grid, pooled, captions[B, N, T]) -> logits[B*N, T, vocab];
    a decoder conditioned on concepts also takes entities[B, N], each caption's concept."""
    grid = keras.Input((config.regions, config.feature_dim), name="grid")
    pooled = keras.Input((config.feature_dim,), name="pooled")
    captions = keras.Input((None, None), dtype="int32", name="captions")

    pooled_in = layers.Dropout(config.dropout, name="pooled_dropout")(pooled)
    # With concepts the tanh comes after each caption's concept is added (below).
    activation = None if config.entities else "tanh"
    init_h = layers.Dense(config.hidden_dim, activation=activation, name=INIT_H)(pooled_in)
    init_c = layers.Dense(config.hidden_dim, activation=activation, name=INIT_C)(pooled_in)
    # Dropping whole regions keeps the decoder from leaning on one spot of the grid.
    grid_in = layers.Dropout(config.region_dropout, noise_shape=(None, config.regions, 1))(grid)
    keys = layers.Dense(config.hidden_dim, name=REGION_KEYS)(grid_in)

    repeat = RepeatPerCaption(name="repeat_per_caption")
    tokens = FlattenCaptions(name="flatten_captions")(captions)
    embedded = layers.Embedding(config.vocab_size, config.embedding_dim, name=EMBEDDING)(tokens)
    embedded = layers.Dropout(config.dropout, name="embedding_dropout")(embedded)
    inputs = [grid, pooled, captions]
    state = [repeat(init_h, captions), repeat(init_c, captions)]
    if config.entities:
        entities = keras.Input((None,), dtype="int32", name="entities")
        inputs.append(entities)
        ids = FlattenEntities(name="flatten_entities")(entities)
        styles = None
        if config.styles:
            ids, styles = SplitConditions(config.entities, name="split_conditions")(ids)
        # Filled with the concepts' GloVe vectors by the trainer (`set_entity_vectors`).
        vectors = layers.Embedding(
            config.entities + 1, config.entity_dim, trainable=False, name=ENTITY_VECTORS
        )(ids)
        if styles is not None:
            # A learned vector per style, as long as a concept's GloVe vector (norm 5).
            style_vectors = layers.Embedding(
                config.styles + 1,
                config.entity_dim,
                embeddings_initializer=keras.initializers.RandomNormal(
                    stddev=5.0 / np.sqrt(config.entity_dim)
                ),
                name=STYLE_VECTORS,
            )(styles)
            vectors = layers.Add(name="entity_and_style")([vectors, style_vectors])
        embedded = layers.Concatenate(name="word_and_entity")(
            [embedded, RepeatOverWords(name="entity_per_word")(vectors, tokens)]
        )
        state = [
            layers.Activation("tanh", name=f"{name}_tanh")(
                layers.Add(name=f"{name}_with_entity")(
                    [part, layers.Dense(config.hidden_dim, use_bias=False, name=name)(vectors)]
                )
            )
            for part, name in zip(state, (ENTITY_INIT_H, ENTITY_INIT_C), strict=True)
        ]
    hidden = layers.LSTM(config.hidden_dim, return_sequences=True, name=LSTM)(
        embedded, initial_state=state
    )
    context, _ = RegionAttention(name="region_attention")(hidden, repeat(keys, captions))
    combined = layers.Dense(config.hidden_dim, activation="tanh", name=COMBINE)(
        layers.Concatenate(name="hidden_and_context")([hidden, context])
    )
    combined = layers.Dropout(config.dropout, name="output_dropout")(combined)
    logits = layers.Dense(config.vocab_size, name=VOCAB_LOGITS)(combined)
    if config.entities:
        # A second path to the words through the same fixed GloVe space as the concepts: to
        # write its concept the decoder only has to echo the concept's vector, one mapping
        # learned for every word at once. Linear in `combined`, so decoding folds it into
        # the vocabulary layer (`captioning.decoder_step`).
        echoed = layers.Dense(config.entity_dim, use_bias=False, name=OUTPUT_VECTOR)(combined)
        by_vector = layers.Dense(
            config.vocab_size, use_bias=False, trainable=False, name=WORD_VECTORS
        )(echoed)
        logits = layers.Add(name="logits_and_vectors")([logits, by_vector])
    return keras.Model(inputs, logits, name="caption_decoder")


def set_entity_vectors(
    model: keras.Model, concept_vectors: np.ndarray, word_vectors: np.ndarray
) -> None:
    """Fill a concept-conditioned decoder's fixed tables: the concepts' vectors, (concepts + 1,
    entity_dim) with row 0 zero, and the vocabulary's, (vocabulary, entity_dim)."""
    layer = model.get_layer(ENTITY_VECTORS)
    shape = tuple(layer.get_weights()[0].shape)
    if concept_vectors.shape != shape or np.any(concept_vectors[0]):
        raise ValueError(f"concept vectors must be {shape} with row 0 zero")
    layer.set_weights([np.asarray(concept_vectors, np.float32)])
    layer = model.get_layer(WORD_VECTORS)
    shape = tuple(layer.get_weights()[0].shape)
    if word_vectors.T.shape != shape:
        raise ValueError(f"word vectors must be {shape[::-1]}")
    layer.set_weights([np.ascontiguousarray(word_vectors.T, np.float32)])


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
