"""Greedy, beam and constrained beam search over the decoder's step, batched over images.

Every caller - evaluation, the command line, bulk jobs and the service - goes through these
functions via `CaptionPredictor`, with one `SearchSettings`. A search may also take a word
penalty per image, (images, V) added to every step's log-probs: NEG_INF there means the word
may not be written for that image (grounding's words without evidence). A decoder conditioned
on concepts takes each image's concept as `entities` (its index + 1; 0 or None: none). Given
the vocabulary's `WordRoles`, a search does not write broken English ("a little is sitting",
"white and white").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from captioning.decoder_step import (
    NEG_INF,
    DecoderStepper,
    DecoderWeights,
    StepRuntime,
    top_k,
)
from captioning.phrases import WordRoles
from captioning.search_settings import SearchSettings
from captioning.text import END_ID, PAD_ID, START_ID


@dataclass(frozen=True)
class Hypothesis:
    token_ids: tuple[int, ...]  # generated words, without <start> and <end>
    log_prob: float
    score: float
    attention: np.ndarray | None  # (len(token_ids), regions)
    # Each word's own log-probability as the search chose it (grounding's penalty included),
    # <end> left out: how sure the decoder was of each word.
    word_log_probs: tuple[float, ...] = ()


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


def _block_broken_grammar(log_probs: np.ndarray, history: np.ndarray, roles: WordRoles) -> None:
    """Forbid, per row, the words that would break its sentence (`WordRoles.blocked_after`:
    "is is", "white and white", "a little is"), in `log_probs` or a penalty added to them."""
    for row, sequence in enumerate(history.tolist()):
        if sequence and sequence[-1] not in (END_ID, PAD_ID):
            blocked = roles.blocked_after(sequence)
            if blocked:
                log_probs[row, blocked] = NEG_INF


def _length_score(log_prob: float, length: int, length_penalty: float) -> float:
    return float(log_prob / max(length, 1) ** length_penalty)


def _rows_penalty(word_penalty: np.ndarray | None, images: np.ndarray, width: int, vocab: int):
    """The images' word penalties repeated for their `width` rows each, or zeros."""
    if word_penalty is None:
        return np.zeros((len(images) * width, vocab), np.float32)
    return np.repeat(word_penalty[images], width, axis=0)


def greedy_decode(
    weights: DecoderWeights,
    grid: np.ndarray,
    pooled: np.ndarray,
    *,
    settings: SearchSettings,
    runtime: StepRuntime | None = None,
    word_penalty: np.ndarray | None = None,
    entities: np.ndarray | None = None,
    roles: WordRoles | None = None,
) -> list[Hypothesis]:
    """The most probable word at every step, for a batch of images."""
    stepper = DecoderStepper(weights, grid, pooled, runtime, entities)
    batch, max_length, ngram = len(pooled), settings.max_length, settings.no_repeat_ngram
    rows = np.arange(batch)
    tokens = np.full(batch, START_ID, dtype=np.int64)
    h, c = stepper.h0, stepper.c0
    done = np.zeros(batch, bool)
    log_prob = np.zeros(batch, np.float64)
    generated: list[np.ndarray] = []
    chosen: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    for step in range(max_length + 1):  # the words, then <end>
        log_probs, h, c, attention = stepper.step(tokens, h, c, beams=1)
        if word_penalty is not None:
            log_probs = log_probs + word_penalty
        if step == max_length:
            log_probs = _only_end(log_probs)
        elif generated:
            history = np.stack(generated, 1)
            if ngram:
                _block_repeated_ngrams(log_probs, history, ngram)
            if roles is not None:
                _block_broken_grammar(log_probs, history, roles)
        tokens = log_probs.argmax(axis=1)
        chosen.append(log_probs[rows, tokens])
        log_prob += np.where(done, 0.0, chosen[-1])
        tokens = np.where(done, PAD_ID, tokens)
        generated.append(tokens)
        maps.append(attention)
        done |= tokens == END_ID
        if done.all():
            break
    history, attention_maps = np.stack(generated, 1), np.stack(maps, 1)
    word_log_probs = np.stack(chosen, 1)
    hypotheses = []
    for row in range(batch):
        words = _words_until_end(history[row])
        kept = attention_maps[row, : len(words)].copy() if settings.return_attention else None
        score = _length_score(log_prob[row], len(words) + 1, settings.length_penalty)
        each = tuple(float(p) for p in word_log_probs[row, : len(words)])
        hypotheses.append(Hypothesis(words, float(log_prob[row]), score, kept, each))
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
    *,
    settings: SearchSettings,
    runtime: StepRuntime | None = None,
    word_penalty: np.ndarray | None = None,
    entities: np.ndarray | None = None,
    roles: WordRoles | None = None,
) -> list[list[Hypothesis]]:
    """n-best captions per image, ranked by log_prob / length ** length_penalty.

    All images' beams advance together as one (images * beam_size) batch. A finished beam
    stays in the beam, extended only by padding at no cost, so that it competes with the live
    ones. An image whose beams have all finished leaves the batch (its results can no longer
    change), so a batch of captions of different lengths does not run every image to the
    longest; the search stops when no image is left.
    """
    beam_size, max_length, ngram = settings.beam_size, settings.max_length, settings.no_repeat_ngram
    stepper = DecoderStepper(weights, grid, pooled, runtime, entities)
    batch, vocab = len(pooled), weights.logits[1].shape[0]
    beams = _Beams.start(stepper, batch, beam_size, settings.return_attention)
    first_row = np.repeat(np.arange(batch) * beam_size, beam_size)
    active = np.arange(batch)  # the images still searching, by their index in `grid`
    # Added to the log-probs: NEG_INF where a word may not come next (a word without
    # evidence, a repeated n-gram, broken grammar, or anything but <end> at the length limit).
    base_penalty = _rows_penalty(word_penalty, active, beam_size, vocab)
    only_end = np.full((len(beams), vocab), NEG_INF, np.float32)
    only_end[:, END_ID] = 0.0
    results: list[_FinishedBeams | None] = [None] * batch

    for step in range(max_length + 1):
        penalty = base_penalty
        if step == max_length:
            penalty = only_end
        elif step > 0 and (ngram or roles is not None):
            penalty = base_penalty.copy()
            if ngram:
                _block_repeated_ngrams(penalty, beams.history, ngram)
            if roles is not None:
                _block_broken_grammar(penalty, beams.history, roles)
        top_scores, top, h, c, attention = stepper.beam_step(
            beams.tokens, beams.h, beams.c, beam_size, beams.log_prob, beams.finished, penalty
        )
        top = top.reshape(-1)
        parent = first_row + top // vocab
        beams.advance(
            parent, top % vocab, top_scores.reshape(-1).astype(np.float64), h, c, attention
        )
        done = beams.finished.reshape(-1, beam_size).all(axis=1) | (step == max_length)
        if not done.any():
            continue
        keep = beams.retire(done, active, results, beam_size)
        if not len(keep):
            break
        active = active[keep]
        stepper.keep_images(keep)
        first_row = first_row[: len(beams)]
        kept_rows = (keep[:, None] * beam_size + np.arange(beam_size)).reshape(-1)
        base_penalty, only_end = base_penalty[kept_rows], only_end[: len(beams)]
    # Every image is in `results` now: the step at `max_length` ends every search.
    return _collect_beams(cast(list[_FinishedBeams], results), settings)


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
    totals: np.ndarray  # (rows, steps) the log-prob after each step: each word's is a difference
    maps: np.ndarray  # (rows, steps, regions), or no steps without attention
    keep_attention: bool

    @classmethod
    def start(
        cls, stepper: DecoderStepper, images: int, width: int, keep_attention: bool
    ) -> _Beams:
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
            totals=np.zeros((rows, 0), np.float64),
            maps=np.zeros((rows, 0, stepper.keys.shape[1]), np.float32),
            keep_attention=keep_attention,
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
    ) -> None:
        """The new beams: each extends row `parent` (of the step's `h`, `c` and `attention`,
        which are not yet reordered) with `word`, now scoring `log_prob`."""
        was_finished = self.finished[parent]
        self.lengths = self.lengths[parent] + ~was_finished
        self.finished = was_finished | (word == END_ID)
        self.history = np.concatenate([self.history[parent], word[:, None]], axis=1)
        self.totals = np.concatenate([self.totals[parent], log_prob[:, None]], axis=1)
        if self.keep_attention:
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
                self.history[rows],
                self.totals[rows],
                self.maps[rows],
                self.log_prob[rows],
                self.lengths[rows],
            )
        keep = np.flatnonzero(~done)
        if len(keep):
            kept = (keep[:, None] * width + np.arange(width)).reshape(-1)
            for name in (
                "h",
                "c",
                "tokens",
                "log_prob",
                "lengths",
                "finished",
                "history",
                "totals",
                "maps",
            ):
                setattr(self, name, getattr(self, name)[kept])
        return keep


@dataclass(frozen=True)
class _FinishedBeams:
    """One image's beams when its search ended: words, log-probs after each step, attention
    maps, log-probs, lengths."""

    history: np.ndarray  # (beam_size, steps)
    totals: np.ndarray  # (beam_size, steps)
    maps: np.ndarray  # (beam_size, steps, regions), or no steps without attention
    log_prob: np.ndarray  # (beam_size,)
    lengths: np.ndarray  # (beam_size,)


def _collect_beams(
    images: list[_FinishedBeams], settings: SearchSettings
) -> list[list[Hypothesis]]:
    length_penalty, return_attention = settings.length_penalty, settings.return_attention
    results = []
    for image in images:
        hypotheses = []
        for beam in range(len(image.history)):
            log_prob = float(image.log_prob[beam])
            if not np.isfinite(log_prob) and hypotheses:
                continue  # a beam that never came alive (tiny vocabulary); keep at least one
            words = _words_until_end(image.history[beam])
            each = np.diff(image.totals[beam, : len(words)], prepend=0.0)
            hypotheses.append(
                Hypothesis(
                    token_ids=words,
                    log_prob=log_prob,
                    score=_length_score(log_prob, int(image.lengths[beam]), length_penalty),
                    attention=image.maps[beam, : len(words)].copy() if return_attention else None,
                    word_log_probs=tuple(float(p) for p in each),
                )
            )
        hypotheses.sort(key=lambda hyp: -hyp.score)
        results.append(hypotheses[: settings.num_captions])
    return results


def constrained_beam_search(
    weights: DecoderWeights,
    grid: np.ndarray,
    pooled: np.ndarray,
    *,
    required: Sequence[Sequence[int]],
    settings: SearchSettings,
    runtime: StepRuntime | None = None,
    word_penalty: np.ndarray | None = None,
    entities: np.ndarray | None = None,
    name_within: np.ndarray | None = None,
    roles: WordRoles | None = None,
) -> list[list[Hypothesis]]:
    """Beam search whose captions must contain one of the words `required[i]` for image i
    (a word and its plural, say), among their first `name_within[i]` words if that is above 0
    (so that it is the caption's subject, not a thing in the background).

    Constrained beam search (Anderson et al. 2017) with one such word: each image keeps two beams
    of `beam_size`, one of captions that do not have the word yet and one of captions that
    have it. A caption without it may not end; one that writes it moves to the second beam,
    where the search goes on as usual. The results come from the second beam only. The
    search ends when the second beam has finished and no caption still without the word can
    beat it (log-probabilities only fall), or at the length limit.
    """
    beam_size, max_length, ngram = settings.beam_size, settings.max_length, settings.no_repeat_ngram
    batch, vocab, width = len(pooled), weights.logits[1].shape[0], 2 * beam_size
    if len(required) != batch or not all(required):
        raise ValueError("every image needs at least one required word")
    stepper = DecoderStepper(weights, grid, pooled, runtime, entities)
    beams = _Beams.start(stepper, batch, width, settings.return_attention)
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
        if word_penalty is not None:
            log_probs += _rows_penalty(word_penalty, active, width, vocab)
        if step == max_length:
            log_probs = _only_end(log_probs)
        elif step > 0:
            if ngram:
                _block_repeated_ngrams(log_probs, beams.history, ngram)
            if roles is not None:
                _block_broken_grammar(log_probs, beams.history, roles)
        log_probs[beams.finished] = stepper.finished_row
        candidates = beams.log_prob[:, None] + log_probs
        last_chance = None
        if name_within is not None:  # a caption without the word may not go past its deadline
            deadline = name_within[active]
            last_chance = (deadline > 0) & (step >= deadline - 1)
        parent, word, log_prob = _constrained_top(
            candidates.reshape(len(active), width, vocab), word_of, allowed, last_chance
        )
        beams.advance(first_row + parent, word, log_prob, h, c, attention)
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
    return _collect_beams(cast(list[_FinishedBeams], results), settings)


def _constrained_top(
    candidates: np.ndarray,
    word_of: np.ndarray,
    allowed: np.ndarray,
    last_chance: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step's new beams from (images, 2K, V) candidate scores, the first K rows of each
    image without the required word, the last K with it: returns each new beam's parent
    (within its image's 2K rows), word and score, flat, without-the-word beams first.
    `last_chance[i]`: image i's captions must write the word now or stop."""
    images, width, vocab = candidates.shape
    beam_size, widest = width // 2, word_of.shape[1]
    without, with_word = candidates[:, :beam_size], candidates[:, beam_size:]
    # (images, K, S): a caption without the word writes one of them now.
    entering = np.take_along_axis(without, word_of[:, None, :].repeat(beam_size, 1), 2)
    entering = np.where(allowed[:, None, :], entering, -np.inf)
    staying = without.copy()
    staying[np.arange(images)[:, None], :, word_of] = -np.inf
    staying[:, :, END_ID] = -np.inf  # a caption may not end without the word
    if last_chance is not None:
        staying[last_chance] = -np.inf
    staying = staying.reshape(images, -1)
    pool = np.concatenate([with_word.reshape(images, -1), entering.reshape(images, -1)], 1)
    keep_without, keep_with = top_k(staying, beam_size), top_k(pool, beam_size)
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
