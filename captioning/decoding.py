"""Greedy and beam-search decoding, batched over images and beams.

The decoder's equations (see `captioning.decoder`) run here in NumPy on the trained weights.
On a CPU one decoding step is a handful of small matrix products: NumPy does them in
microseconds, where a TensorFlow call per step costs milliseconds in dispatch alone. Every
caller - evaluation, the command line and the service - goes through these functions, and
nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from captioning import decoder_layers as names
from captioning.text import END_ID, PAD_ID, START_ID, UNKNOWN_ID

# The decoding defaults, written once: the recipe's beam width and length penalty (a bundle's
# manifest records the penalty its model was tuned with, and the predictor uses that).
DEFAULT_BEAM_SIZE = 3
DEFAULT_LENGTH_PENALTY = 1.0

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

    @classmethod
    def from_layers(cls, layers: Mapping[str, Sequence[np.ndarray]]) -> DecoderWeights:
        """From {layer name: weights}, as `captioning.keras_file.read_layer_weights` returns."""

        def dense(name: str) -> tuple[np.ndarray, np.ndarray]:
            kernel, bias = layers[name]
            return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)

        kernel, recurrent, bias = layers[names.LSTM]
        embedding = np.asarray(layers[names.EMBEDDING][0], np.float64)
        logit_kernel, logit_bias = dense(names.VOCAB_LOGITS)
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
        )

    @classmethod
    def from_model(cls, model: Any) -> DecoderWeights:
        """From a Keras decoder built by `captioning.decoder.build_decoder`."""
        return cls.from_layers(
            {name: model.get_layer(name).get_weights() for name in names.WEIGHTED_LAYERS}
        )

    @property
    def hidden_dim(self) -> int:
        return self.recurrent_kernel.shape[0]


@dataclass(frozen=True)
class Hypothesis:
    token_ids: tuple[int, ...]  # generated words, without <start> and <end>
    log_prob: float
    score: float
    attention: np.ndarray | None  # (len(token_ids), regions)


def _sigmoid(x: np.ndarray) -> np.ndarray:
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
    """Another engine for `_Stepper`'s equations (see `captioning.runtime`), on arrays
    grouped per image: input gates (B, K, 4H), h and c (B, K, H), keys (B, R, H) ->
    log_probs (B, K, V), h, c, attention (B, K, R). `init` and `beam_step` are optional
    (`has_init`, `has_beam_step`): `_Stepper` does their part in NumPy when they are absent."""

    name: str
    has_init: bool
    has_beam_step: bool

    def __call__(
        self, input_gates: np.ndarray, h: np.ndarray, c: np.ndarray, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...

    def init(
        self, grid: np.ndarray, pooled: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def beam_step(
        self,
        input_gates: np.ndarray,
        h: np.ndarray,
        c: np.ndarray,
        keys: np.ndarray,
        beam_scores: np.ndarray,
        finished: np.ndarray,
        penalty: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


class _Stepper:
    """The decoder's recurrence for a batch of rows, each row tied to one image's regions."""

    def __init__(
        self,
        weights: DecoderWeights,
        grid: np.ndarray,
        pooled: np.ndarray,
        runtime: StepRuntime | None = None,
    ) -> None:
        self.w = weights
        self.runtime = runtime
        self.scale = np.float32(1.0 / np.sqrt(weights.hidden_dim))
        self.finished_row = finished_row(len(weights.logits[1])).astype(np.float64)
        if runtime is not None and runtime.has_init:
            # Projecting every region is the largest product of a short caption; int8 in
            # LiteRT it costs a fraction of float32 NumPy, which also fights the encoder
            # for the cores under load.
            self.keys, self.h0, self.c0 = runtime.init(grid, pooled)
            return
        kernel, bias = weights.region_keys
        self.keys = (grid.astype(np.float32) @ kernel + bias).astype(np.float32)  # (B, R, H)
        pooled = pooled.astype(np.float32)
        self.h0 = np.tanh(pooled @ weights.init_h[0] + weights.init_h[1])
        self.c0 = np.tanh(pooled @ weights.init_c[0] + weights.init_c[1])

    def keep_images(self, images: np.ndarray) -> None:
        """Go on with only these images (indices into the current batch)."""
        self.keys = self.keys[images]

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
        gates = w.word_gates[tokens] + _matmul(h, w.recurrent_kernel)
        i = _sigmoid(gates[:, :hidden])
        f = _sigmoid(gates[:, hidden : 2 * hidden])
        g = np.tanh(gates[:, 2 * hidden : 3 * hidden])
        o = _sigmoid(gates[:, 3 * hidden :])
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
        if self.runtime is not None and self.runtime.has_beam_step:
            hidden = h.shape[1]
            scores, index, h, c, attention = self.runtime.beam_step(
                self.w.word_gates[tokens].reshape(images, beams, -1),
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
        top = np.argpartition(-candidates, beams - 1, axis=1)[:, :beams]
        # Plain fancy indexing: np.take_along_axis costs more in building its index than in
        # the lookup itself.
        image_rows = np.arange(images)[:, None]
        top_scores = candidates[image_rows, top]
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return top_scores[image_rows, order], top[image_rows, order], h, c, attention

    def _runtime_step(
        self, tokens: np.ndarray, h: np.ndarray, c: np.ndarray, beams: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        images, rows, hidden = len(self.keys), len(tokens), h.shape[1]
        log_probs, h, c, attention = self.runtime(
            self.w.word_gates[tokens].reshape(images, beams, -1),
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


def _only_end(log_probs: np.ndarray) -> np.ndarray:
    """At the length limit a caption must end: <end> keeps its probability, all else is out."""
    forced = np.full_like(log_probs, NEG_INF)
    forced[:, END_ID] = log_probs[:, END_ID]
    return forced


def _block_repeated_ngrams(log_probs: np.ndarray, history: np.ndarray, n: int) -> None:
    """Forbid, per row, any word that would repeat an n-gram already in that row's caption
    (sets it to NEG_INF in `log_probs`, or in a penalty added to them).

    Small captioners loop ("a man in a yellow shirt and a yellow shirt and ..."); banning a
    repeated trigram is the standard cure, and it costs a short scan per row and step.
    """
    if n < 2 or history.shape[1] < n - 1:
        return
    for row, sequence in enumerate(history.tolist()):
        prefix = sequence[len(sequence) - n + 1 :]
        for start in range(len(sequence) - n + 1):
            if sequence[start : start + n - 1] == prefix:
                log_probs[row, sequence[start + n - 1]] = NEG_INF


def _length_score(log_prob: float, length: int, length_penalty: float) -> float:
    return float(log_prob / max(length, 1) ** length_penalty)


def greedy_decode(
    weights: DecoderWeights,
    grid: np.ndarray,
    pooled: np.ndarray,
    max_length: int,
    return_attention: bool = False,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
    no_repeat_ngram: int = 0,
    runtime: StepRuntime | None = None,
) -> list[Hypothesis]:
    """The most probable word at every step, for a batch of images."""
    stepper = _Stepper(weights, grid, pooled, runtime)
    batch = len(pooled)
    rows = np.arange(batch)
    tokens = np.full(batch, START_ID, dtype=np.int64)
    h, c = stepper.h0, stepper.c0
    done = np.zeros(batch, bool)
    log_prob = np.zeros(batch, np.float64)
    generated: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    for step in range(max_length + 1):  # the words, then <end>
        log_probs, h, c, attention = stepper.step(tokens, h, c, beams=1)
        if step == max_length:
            log_probs = _only_end(log_probs)
        elif no_repeat_ngram and generated:
            _block_repeated_ngrams(log_probs, np.stack(generated, 1), no_repeat_ngram)
        tokens = log_probs.argmax(axis=1)
        log_prob += np.where(done, 0.0, log_probs[rows, tokens])
        tokens = np.where(done, PAD_ID, tokens)
        generated.append(tokens)
        maps.append(attention)
        done |= tokens == END_ID
        if done.all():
            break
    return _collect_greedy(
        np.stack(generated, 1),
        np.stack(maps, 1),
        log_prob,
        max_length,
        return_attention,
        length_penalty,
    )


def _collect_greedy(
    generated: np.ndarray,
    maps: np.ndarray,
    log_prob: np.ndarray,
    max_length: int,
    return_attention: bool,
    length_penalty: float,
) -> list[Hypothesis]:
    hypotheses = []
    for row in range(len(generated)):
        words = _words_until_end(generated[row])
        hypotheses.append(
            Hypothesis(
                token_ids=words,
                log_prob=float(log_prob[row]),
                score=_length_score(log_prob[row], len(words) + 1, length_penalty),
                attention=maps[row, : len(words)].copy() if return_attention else None,
            )
        )
    return hypotheses


def _words_until_end(ids: np.ndarray) -> tuple[int, ...]:
    words = []
    for token in ids.tolist():
        if token in (END_ID, PAD_ID):
            break
        words.append(token)
    return tuple(words)


def beam_search(
    weights: DecoderWeights,
    grid: np.ndarray,
    pooled: np.ndarray,
    beam_size: int,
    max_length: int,
    num_results: int = 1,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
    return_attention: bool = False,
    no_repeat_ngram: int = 0,
    runtime: StepRuntime | None = None,
) -> list[list[Hypothesis]]:
    """n-best captions per image, ranked by log_prob / length ** length_penalty.

    All images' beams advance together as one (images * beam_size) batch. A finished beam
    stays in the beam, extended only by padding at no cost, so that it competes with the live
    ones. An image whose beams have all finished leaves the batch (its results can no longer
    change), so a batch of captions of different lengths does not run every image to the
    longest; the search stops when no image is left.
    """
    if beam_size < 1 or not 1 <= num_results <= beam_size:
        raise ValueError("need beam_size >= 1 and 1 <= num_results <= beam_size")
    stepper = _Stepper(weights, grid, pooled, runtime)
    batch, vocab = len(pooled), weights.logits[1].shape[0]
    beams = _Beams.start(stepper, batch, beam_size)
    first_row = np.repeat(np.arange(batch) * beam_size, beam_size)
    # Added to the log-probs: NEG_INF where a word may not come next (a repeated n-gram, or
    # anything but <end> at the length limit).
    no_penalty = np.zeros((len(beams), vocab), np.float32)
    only_end = np.full((len(beams), vocab), NEG_INF, np.float32)
    only_end[:, END_ID] = 0.0
    active = np.arange(batch)  # the images still searching, by their index in `grid`
    results: list[_FinishedBeams | None] = [None] * batch

    for step in range(max_length + 1):
        penalty = no_penalty
        if step == max_length:
            penalty = only_end
        elif no_repeat_ngram and step >= no_repeat_ngram - 1:
            penalty = no_penalty.copy()
            _block_repeated_ngrams(penalty, beams.history, no_repeat_ngram)
        top_scores, top, h, c, attention = stepper.beam_step(
            beams.tokens, beams.h, beams.c, beam_size, beams.log_prob, beams.finished, penalty
        )
        top = top.reshape(-1)
        parent = first_row + top // vocab
        beams.advance(
            parent, top % vocab, top_scores.reshape(-1).astype(np.float64), h, c, attention,
            return_attention,
        )  # fmt: skip
        done = beams.finished.reshape(-1, beam_size).all(axis=1) | (step == max_length)
        if not done.any():
            continue
        keep = beams.retire(done, active, results, beam_size)
        if not len(keep):
            break
        active = active[keep]
        stepper.keep_images(keep)
        first_row = first_row[: len(beams)]
        no_penalty, only_end = no_penalty[: len(beams)], only_end[: len(beams)]
    # Every image is in `results` now: the step at `max_length` ends every search.
    return _collect_beams(
        cast(list[_FinishedBeams], results),
        num_results,
        length_penalty,
        return_attention,
    )


@dataclass
class _Beams:
    """Every image's beams as flat per-row arrays, (images * width, ...), `width` rows per
    image: reordering the beams after a step is then one fancy index per array."""

    h: np.ndarray
    c: np.ndarray
    tokens: np.ndarray  # the last word of each beam
    log_prob: np.ndarray
    lengths: np.ndarray  # words so far, <end> included
    finished: np.ndarray
    history: np.ndarray  # (rows, steps) words
    maps: np.ndarray  # (rows, steps, regions), or no steps without attention

    @classmethod
    def start(cls, stepper: _Stepper, images: int, width: int) -> _Beams:
        rows = images * width
        log_prob = np.full(rows, -np.inf)
        # Only the first beam of each image is alive at the start, so the beams do not duplicate.
        log_prob[::width] = 0.0
        return cls(
            h=np.repeat(stepper.h0, width, axis=0),
            c=np.repeat(stepper.c0, width, axis=0),
            tokens=np.full(rows, START_ID, dtype=np.int64),
            log_prob=log_prob,
            lengths=np.zeros(rows, np.int64),
            finished=np.zeros(rows, bool),
            history=np.zeros((rows, 0), np.int64),
            maps=np.zeros((rows, 0, stepper.keys.shape[1]), np.float32),
        )

    def __len__(self) -> int:
        return len(self.tokens)

    def advance(
        self,
        parent: np.ndarray,
        word: np.ndarray,
        log_prob: np.ndarray,
        h: np.ndarray,
        c: np.ndarray,
        attention: np.ndarray,
        return_attention: bool,
    ) -> None:
        """The new beams: each extends row `parent` (of the step's `h`, `c` and `attention`,
        which are not yet reordered) with `word`, now scoring `log_prob`."""
        was_finished = self.finished[parent]
        self.lengths = self.lengths[parent] + ~was_finished
        self.finished = was_finished | (word == END_ID)
        self.history = np.concatenate([self.history[parent], word[:, None]], axis=1)
        if return_attention:
            self.maps = np.concatenate([self.maps[parent], attention[parent, None]], axis=1)
        self.h, self.c, self.tokens, self.log_prob = h[parent], c[parent], word, log_prob

    def retire(
        self,
        done: np.ndarray,
        active: np.ndarray,
        results: list[_FinishedBeams | None],
        width: int,
        first: int = 0,
    ) -> np.ndarray:
        """Record the `done` images' beams (rows `first`.. of each image's `width`) in
        `results`, by their index in `active`, and go on with the others' rows only;
        returns the kept images' positions."""
        for index in np.flatnonzero(done):
            rows = slice(index * width + first, (index + 1) * width)
            results[active[index]] = _FinishedBeams(
                self.history[rows], self.maps[rows], self.log_prob[rows], self.lengths[rows]
            )
        keep = np.flatnonzero(~done)
        if len(keep):
            kept = (keep[:, None] * width + np.arange(width)).reshape(-1)
            for name in ("h", "c", "tokens", "log_prob", "lengths", "finished", "history", "maps"):
                setattr(self, name, getattr(self, name)[kept])
        return keep


@dataclass(frozen=True)
class _FinishedBeams:
    """One image's beams when its search ended: words, attention maps, log-probs, lengths."""

    history: np.ndarray  # (beam_size, steps)
    maps: np.ndarray  # (beam_size, steps, regions), or no steps without attention
    log_prob: np.ndarray  # (beam_size,)
    lengths: np.ndarray  # (beam_size,)


def _collect_beams(
    images: list[_FinishedBeams],
    num_results: int,
    length_penalty: float,
    return_attention: bool,
) -> list[list[Hypothesis]]:
    results = []
    for image in images:
        hypotheses = []
        for beam in range(len(image.history)):
            log_prob = float(image.log_prob[beam])
            if not np.isfinite(log_prob) and hypotheses:
                continue  # a beam that never came alive (tiny vocabulary); keep at least one
            words = _words_until_end(image.history[beam])
            hypotheses.append(
                Hypothesis(
                    token_ids=words,
                    log_prob=log_prob,
                    score=_length_score(log_prob, int(image.lengths[beam]), length_penalty),
                    attention=image.maps[beam, : len(words)].copy() if return_attention else None,
                )
            )
        hypotheses.sort(key=lambda hyp: -hyp.score)
        results.append(hypotheses[:num_results])
    return results


def constrained_beam_search(
    weights: DecoderWeights,
    grid: np.ndarray,
    pooled: np.ndarray,
    required: Sequence[Sequence[int]],
    beam_size: int,
    max_length: int,
    num_results: int = 1,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
    return_attention: bool = False,
    no_repeat_ngram: int = 0,
    runtime: StepRuntime | None = None,
) -> list[list[Hypothesis]]:
    """Beam search whose captions must contain one of the words `required[i]` for image i
    (a word and its plural, say).

    Constrained beam search (Anderson et al. 2017) with one such word: each image keeps two beams
    of `beam_size`, one of captions that do not have the word yet and one of captions that
    have it. A caption without it may not end; one that writes it moves to the second beam,
    where the search goes on as usual. The results come from the second beam only. The
    search ends when the second beam has finished and no caption still without the word can
    beat it (log-probabilities only fall), or at the length limit.
    """
    if beam_size < 1 or not 1 <= num_results <= beam_size:
        raise ValueError("need beam_size >= 1 and 1 <= num_results <= beam_size")
    batch, vocab, width = len(pooled), weights.logits[1].shape[0], 2 * beam_size
    if len(required) != batch or not all(required):
        raise ValueError("every image needs at least one required word")
    stepper = _Stepper(weights, grid, pooled, runtime)
    beams = _Beams.start(stepper, batch, width)
    first_row = np.repeat(np.arange(batch) * width, width)
    # The required words as an (images, S) array, padded with the first word but masked out.
    widest = max(len(words) for words in required)
    word_of = np.array([[*w, *[w[0]] * (widest - len(w))] for w in required], np.int64)
    allowed = np.array([[True] * len(w) + [False] * (widest - len(w)) for w in required])
    active = np.arange(batch)
    results: list[_FinishedBeams | None] = [None] * batch

    for step in range(max_length + 1):
        log_probs, h, c, attention = stepper.step(beams.tokens, beams.h, beams.c, width)
        log_probs = log_probs.astype(np.float64)
        if step == max_length:
            log_probs = _only_end(log_probs)
        elif no_repeat_ngram and step >= no_repeat_ngram - 1:
            _block_repeated_ngrams(log_probs, beams.history, no_repeat_ngram)
        log_probs[beams.finished] = stepper.finished_row
        candidates = beams.log_prob[:, None] + log_probs
        parent, word, log_prob = _constrained_top(
            candidates.reshape(len(active), width, vocab), word_of, allowed
        )
        beams.advance(first_row + parent, word, log_prob, h, c, attention, return_attention)
        scores = beams.log_prob.reshape(-1, width)
        with_word = beams.finished.reshape(-1, width)[:, beam_size:]
        cannot_improve = scores[:, :beam_size].max(axis=1) < scores[:, beam_size:].min(axis=1)
        done = (with_word.all(axis=1) & cannot_improve) | (step == max_length)
        if not done.any():
            continue
        keep = beams.retire(done, active, results, width, first=beam_size)
        if not len(keep):
            break
        active, word_of, allowed = active[keep], word_of[keep], allowed[keep]
        stepper.keep_images(keep)
        first_row = first_row[: len(beams)]
    return _collect_beams(
        cast(list[_FinishedBeams], results), num_results, length_penalty, return_attention
    )


def _constrained_top(
    candidates: np.ndarray, word_of: np.ndarray, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step's new beams from (images, 2K, V) candidate scores, the first K rows of each
    image without the required word, the last K with it: returns each new beam's parent
    (within its image's 2K rows), word and score, flat, without-the-word beams first."""
    images, width, vocab = candidates.shape
    beam_size, widest = width // 2, word_of.shape[1]
    without, with_word = candidates[:, :beam_size], candidates[:, beam_size:]
    # (images, K, S): a caption without the word writes one of them now.
    entering = np.take_along_axis(without, word_of[:, None, :].repeat(beam_size, 1), 2)
    entering = np.where(allowed[:, None, :], entering, -np.inf)
    staying = without.copy()
    staying[np.arange(images)[:, None], :, word_of] = -np.inf
    staying[:, :, END_ID] = -np.inf  # a caption may not end without the word
    staying = staying.reshape(images, -1)
    pool = np.concatenate([with_word.reshape(images, -1), entering.reshape(images, -1)], 1)
    keep_without, keep_with = _top(staying, beam_size), _top(pool, beam_size)
    from_pool = keep_with < beam_size * vocab
    entered = np.maximum(keep_with - beam_size * vocab, 0)  # index into (K, S)
    parent_with = np.where(from_pool, beam_size + keep_with // vocab, entered // widest)
    word_with = np.where(
        from_pool, keep_with % vocab, np.take_along_axis(word_of, entered % widest, 1)
    )
    parent = np.concatenate([keep_without // vocab, parent_with], axis=1).reshape(-1)
    word = np.concatenate([keep_without % vocab, word_with], axis=1).reshape(-1)
    scores = np.concatenate(
        [np.take_along_axis(staying, keep_without, 1), np.take_along_axis(pool, keep_with, 1)],
        axis=1,
    ).reshape(-1)
    return parent, word, scores


def _top(candidates: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of each row, largest first."""
    top = np.argpartition(-candidates, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(candidates, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)
