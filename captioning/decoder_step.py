"""The decoder's step: its weights and equations, in NumPy or on a LiteRT runtime.

One decoding step is a handful of small matrix products: NumPy does them in microseconds on a
CPU, where a TensorFlow call per step costs milliseconds in dispatch alone, and the int8 LiteRT
export (`captioning.runtime.LiteRTDecoderStep`) reads a quarter of the bytes. The searches
(`captioning.search`) drive a `DecoderStepper`; nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from captioning import decoder_layers as names
from captioning.text import PAD_ID, START_ID, UNKNOWN_ID

# Words the decoder may never emit: padding, a second <start>, and the unknown-word token.
BANNED_IDS = (PAD_ID, START_ID, UNKNOWN_ID)
NEG_INF = np.float32(-1e9)

# OpenBLAS multiplies a matrix by 2 or 3 rows as a GEMM several times slower than by each row
# as a GEMV (measured here: 3 rows x (384, 2533) take 0.50 ms as one product, 0.22 ms row by
# row); from 4 rows on the GEMM wins. A beam of 3 for one image is exactly this case.
ROW_BY_ROW_MAX = 3


def _matmul(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """rows @ matrix, row by row when there are only a few rows (see ROW_BY_ROW_MAX)."""
    if len(rows) > ROW_BY_ROW_MAX:
        return rows @ matrix
    out = np.empty((len(rows), matrix.shape[1]), np.result_type(rows, matrix))
    for index, row in enumerate(rows):
        np.matmul(row, matrix, out=out[index])
    return out


@dataclass(frozen=True)
class DecoderWeights:
    """The decoder's parameters as float32 NumPy arrays."""

    # Every word's LSTM input contribution, embedding @ W_input + bias, computed once:
    # a row lookup per step instead of a matrix product.
    word_gates: np.ndarray  # (V, 4H)
    init_h: tuple[np.ndarray, np.ndarray]  # (C, H), (H,)
    init_c: tuple[np.ndarray, np.ndarray]
    region_keys: tuple[np.ndarray, np.ndarray]  # (C, H), (H,)
    recurrent_kernel: np.ndarray  # (H, 4H)
    combine: tuple[np.ndarray, np.ndarray]  # (2H, H), (H,)
    logits: tuple[np.ndarray, np.ndarray]  # (H, V), (V,)
    # A concept-conditioned decoder's LSTM input from each concept, entity_vectors @ W_entity:
    # (concepts + 1, 4H), row 0 ("no concept") zero. None for a decoder without concepts.
    entity_gates: np.ndarray | None = None
    # ... and each concept's share of the initial h and c, before the tanh: (concepts + 1, H).
    entity_init: tuple[np.ndarray, np.ndarray] | None = None
    # A decoder that also takes caption styles: each style's share of the LSTM input gates
    # (styles + 1, 4H) and of the initial h and c (styles + 1, H); row 0 is the photos' own.
    style_gates: np.ndarray | None = None
    style_init: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_layers(cls, layers: Mapping[str, Sequence[np.ndarray]]) -> DecoderWeights:
        """From {layer name: weights}, as `captioning.keras_file.read_layer_weights` returns."""

        def dense(name: str) -> tuple[np.ndarray, np.ndarray]:
            kernel, bias = layers[name]
            return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)

        kernel, recurrent, bias = layers[names.LSTM]
        embedding = np.asarray(layers[names.EMBEDDING][0], np.float64)
        entity_gates = entity_init = style_gates = style_init = None
        if names.ENTITY_VECTORS in layers:
            # The LSTM's input is [word embedding ; concept vector (+ style vector)], and the
            # initial state takes the same vector: linear, so each part is folded on its own.
            entity_kernel = kernel[embedding.shape[1] :]
            kernel = kernel[: embedding.shape[1]]

            def fold(vectors: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
                vectors = np.asarray(vectors, np.float64)
                init = tuple(
                    (vectors @ np.asarray(layers[name][0], np.float64)).astype(np.float32)
                    for name in (names.ENTITY_INIT_H, names.ENTITY_INIT_C)
                )
                return (vectors @ entity_kernel).astype(np.float32), init  # type: ignore[return-value]

            entity_gates, entity_init = fold(layers[names.ENTITY_VECTORS][0])
            if names.STYLE_VECTORS in layers:
                style_gates, style_init = fold(layers[names.STYLE_VECTORS][0])
        logit_kernel, logit_bias = dense(names.VOCAB_LOGITS)
        if names.WORD_VECTORS in layers:  # the path through GloVe: linear, so folded in
            echoed = np.asarray(layers[names.OUTPUT_VECTOR][0], np.float64)
            by_vector = echoed @ np.asarray(layers[names.WORD_VECTORS][0], np.float64)
            logit_kernel = (logit_kernel + by_vector).astype(np.float32)
        logit_bias = logit_bias.copy()
        logit_bias[list(BANNED_IDS)] = NEG_INF
        return cls(
            word_gates=(embedding @ kernel + bias).astype(np.float32),
            init_h=dense(names.INIT_H),
            init_c=dense(names.INIT_C),
            region_keys=dense(names.REGION_KEYS),
            recurrent_kernel=np.ascontiguousarray(recurrent, np.float32),
            combine=dense(names.COMBINE),
            logits=(logit_kernel, logit_bias),
            entity_gates=entity_gates,
            entity_init=entity_init,
            style_gates=style_gates,
            style_init=style_init,
        )

    @classmethod
    def from_model(cls, model: Any) -> DecoderWeights:
        """From a Keras decoder built by `training.modeling.decoder.build_decoder`."""
        found = {layer.name for layer in model.layers}
        wanted = [*names.WEIGHTED_LAYERS, *names.ENTITY_LAYERS]
        return cls.from_layers(
            {name: model.get_layer(name).get_weights() for name in wanted if name in found}
        )

    @property
    def hidden_dim(self) -> int:
        return self.recurrent_kernel.shape[0]

    @property
    def entities(self) -> int:
        """How many concepts the decoder is conditioned on (0: none)."""
        return 0 if self.entity_gates is None else len(self.entity_gates) - 1

    @property
    def styles(self) -> int:
        """How many caption styles the decoder takes besides the photos' own (0: none)."""
        return 0 if self.style_gates is None else len(self.style_gates) - 1

    def split_conditions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conditioning ids (`condition_ids`) -> (concept ids, style ids)."""
        ids = np.asarray(ids, np.int64)
        return ids % (self.entities + 1), ids // (self.entities + 1)


def condition_ids(concepts: np.ndarray, styles: np.ndarray | int, entities: int) -> np.ndarray:
    """A decoder's conditioning ids from each caption's concept (index + 1, 0: none) and style
    (0: the photos' own captions), for a decoder conditioned on `entities` concepts."""
    return np.asarray(concepts, np.int64) + (entities + 1) * np.asarray(styles, np.int64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free and exact


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def finished_row(vocab: int) -> np.ndarray:
    """The log-probs a finished beam continues with: only padding, at no cost."""
    row = np.full(vocab, NEG_INF, np.float32)
    row[PAD_ID] = 0.0
    return row


class StepRuntime(Protocol):
    """Another engine for `DecoderStepper`'s equations (`captioning.runtime.LiteRTDecoderStep`),
    on arrays grouped per image: input gates (B, K, 4H), h and c (B, K, H), keys (B, R, H)."""

    name: str

    def __call__(
        self, input_gates: np.ndarray, h: np.ndarray, c: np.ndarray, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One word: log_probs (B, K, V), h, c, attention (B, K, R)."""
        ...

    def init(
        self, grid: np.ndarray, pooled: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Regions (B, R, C) and pooled (B, C) -> region keys (B, R, H), h0 and c0 (B, H)."""
        ...

    def beam_step(
        self,
        input_gates: np.ndarray,
        h: np.ndarray,
        c: np.ndarray,
        keys: np.ndarray,
        beam_scores: np.ndarray,
        finished: np.ndarray,
        penalty: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One word of beam search: the K best (score, index into K x V) per image, then h, c
        and attention (see `DecoderStepper.beam_step`)."""
        ...


class DecoderStepper:
    """The decoder's recurrence for a batch of rows, each row tied to one image's regions."""

    def __init__(
        self,
        weights: DecoderWeights,
        grid: np.ndarray,
        pooled: np.ndarray,
        runtime: StepRuntime | None = None,
        entities: np.ndarray | None = None,
    ) -> None:
        """`entities`: each image's concept (its index + 1, 0 for none), for a decoder
        conditioned on concepts, or its conditioning id (`condition_ids`) for one that also
        takes styles; None gives every image none, in the photos' style."""
        self.w = weights
        self.runtime = runtime
        # Each image's constant part of the LSTM input gates (its concept), or None.
        self.entity_rows: np.ndarray | None = None
        ids = styles = None
        if weights.entity_gates is not None:
            ids = np.zeros(len(pooled), np.int64) if entities is None else np.asarray(entities)
            if weights.style_gates is not None:
                ids, styles = weights.split_conditions(ids)
            self.entity_rows = weights.entity_gates[ids]
            if styles is not None and weights.style_gates is not None:
                self.entity_rows = self.entity_rows + weights.style_gates[styles]
        self.scale = np.float32(1.0 / np.sqrt(weights.hidden_dim))
        self.finished_row = finished_row(len(weights.logits[1])).astype(np.float64)
        if runtime is not None:
            # Projecting every region is the largest product of a short caption; int8 in
            # LiteRT it costs a fraction of float32 NumPy, which also fights the encoder
            # for the cores under load.
            self.keys, self.h0, self.c0 = runtime.init(grid, pooled)
        else:
            kernel, bias = weights.region_keys
            self.keys = (grid.astype(np.float32) @ kernel + bias).astype(np.float32)  # (B, R, H)
        if runtime is None or ids is not None:
            # The concept adds to the initial state before its tanh: two small products,
            # in NumPy whatever the runtime.
            pooled = pooled.astype(np.float32)
            h0 = pooled @ weights.init_h[0] + weights.init_h[1]
            c0 = pooled @ weights.init_c[0] + weights.init_c[1]
            if ids is not None and weights.entity_init is not None:
                h0 += weights.entity_init[0][ids]
                c0 += weights.entity_init[1][ids]
            if styles is not None and weights.style_init is not None:
                h0 += weights.style_init[0][styles]
                c0 += weights.style_init[1][styles]
            self.h0, self.c0 = np.tanh(h0), np.tanh(c0)

    def keep_images(self, images: np.ndarray) -> None:
        """Go on with only these images (indices into the current batch)."""
        self.keys = self.keys[images]
        if self.entity_rows is not None:
            self.entity_rows = self.entity_rows[images]

    def input_gates(self, tokens: np.ndarray, beams: int) -> np.ndarray:
        """The LSTM input gates of every row, grouped per image: (B, K, 4H)."""
        gates = self.w.word_gates[tokens].reshape(len(self.keys), beams, -1)
        if self.entity_rows is not None:
            gates = gates + self.entity_rows[:, None, :]
        return gates

    def step(
        self, tokens: np.ndarray, h: np.ndarray, c: np.ndarray, beams: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One word for every row: returns (log_probs (N, V), h, c, attention (N, R)).

        Rows come in groups of `beams` consecutive rows per image, so the regions are used
        in place, never copied per row.
        """
        if self.runtime is not None:
            return self._runtime_step(tokens, h, c, beams)
        w = self.w
        hidden = h.shape[1]
        gates = self.input_gates(tokens, beams).reshape(len(h), -1)
        gates += _matmul(h, w.recurrent_kernel)
        i = sigmoid(gates[:, :hidden])
        f = sigmoid(gates[:, hidden : 2 * hidden])
        g = np.tanh(gates[:, 2 * hidden : 3 * hidden])
        o = sigmoid(gates[:, 3 * hidden :])
        c = f * c + i * g
        h = o * np.tanh(c)
        queries = h.reshape(len(self.keys), beams, hidden)
        scores = np.matmul(queries, self.keys.transpose(0, 2, 1)) * self.scale  # (B, K, R)
        attention = np.exp(scores - scores.max(axis=2, keepdims=True))
        attention /= attention.sum(axis=2, keepdims=True)
        context = np.matmul(attention, self.keys).reshape(len(h), hidden)
        attention = attention.reshape(len(h), -1)
        joined = np.concatenate([h, context], axis=1)
        combined = np.tanh(_matmul(joined, w.combine[0]) + w.combine[1])
        logits = _matmul(combined, w.logits[0]) + w.logits[1]
        return _log_softmax(logits), h, c, attention

    def beam_step(
        self,
        tokens: np.ndarray,
        h: np.ndarray,
        c: np.ndarray,
        beams: int,
        beam_scores: np.ndarray,
        finished: np.ndarray,
        penalty: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One word of beam search for every image's `beams` rows.

        Each row's log-probs plus `penalty` (N, V) extend its beam's score (`beam_scores`,
        (N,)); a finished row only grows padding at no cost. Returns the `beams` best
        candidates per image, best first - scores (B, K) and indices into that image's
        K x V candidates - then every row's new h, c and attention (not yet reordered).
        """
        images = len(self.keys)
        if self.runtime is not None:
            hidden = h.shape[1]
            scores, index, h, c, attention = self.runtime.beam_step(
                self.input_gates(tokens, beams),
                h.reshape(images, beams, hidden),
                c.reshape(images, beams, hidden),
                self.keys,
                beam_scores.reshape(images, beams),
                finished.reshape(images, beams),
                penalty.reshape(images, beams, -1),
            )
            rows = len(tokens)
            return (
                scores,
                index,
                h.reshape(rows, hidden),
                c.reshape(rows, hidden),
                attention.reshape(rows, -1),
            )
        log_probs, h, c, attention = self.step(tokens, h, c, beams)
        log_probs = log_probs.astype(np.float64) + penalty
        log_probs[finished] = self.finished_row
        candidates = (beam_scores[:, None] + log_probs).reshape(images, -1)
        top = top_k(candidates, beams)
        return candidates[np.arange(images)[:, None], top], top, h, c, attention

    def _runtime_step(
        self, tokens: np.ndarray, h: np.ndarray, c: np.ndarray, beams: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        images, rows, hidden = len(self.keys), len(tokens), h.shape[1]
        log_probs, h, c, attention = self.runtime(
            self.input_gates(tokens, beams),
            h.reshape(images, beams, hidden),
            c.reshape(images, beams, hidden),
            self.keys,
        )
        return (
            log_probs.reshape(rows, -1),
            h.reshape(rows, hidden),
            c.reshape(rows, hidden),
            attention.reshape(rows, -1),
        )


def top_k(candidates: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of each row of (rows, n), largest first (ties in
    index order). Plain fancy indexing: np.take_along_axis costs more in building its index
    than in the lookup itself, at these sizes."""
    top = np.argpartition(-candidates, k - 1, axis=1)[:, :k]
    rows = np.arange(len(candidates))[:, None]
    order = np.argsort(-candidates[rows, top], axis=1, kind="stable")
    return top[rows, order]
