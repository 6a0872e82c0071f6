"""The seed-style baseline: the classic Keras captioning tutorial's way to caption one photo.

Xception pooled features (`model.predict` on one 299x299 image), then a "merge" model
(Embedding -> Dropout -> LSTM; features -> Dropout -> Dense; add -> Dense -> softmax) called
with `model.predict` once per word over the padded prefix, the tokenizer round trip included.
Random weights (no download is possible, and timing does not depend on them). An untrained
model never emits `endseq`, so the loop runs a fixed number of words; the time after each word
is recorded, which gives both the tutorial's worst case (the full maximum length) and the time
for a caption as long as ours (our mean length + 1 for `endseq`) from the same runs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from benchmarks.images import photo_like
from benchmarks.stats import summarize

logger = logging.getLogger(__name__)

BASELINE_MAX_LENGTH = 34  # the tutorial's Flickr8k max caption length
XCEPTION_SIZE = 299
XCEPTION_FEATURES = 2048
UNITS = 256
DROPOUT = 0.5


def build_xception() -> Any:
    import keras

    return keras.applications.Xception(weights=None, include_top=False, pooling="avg")


def build_merge_model(vocab_size: int, max_length: int = BASELINE_MAX_LENGTH) -> Any:
    import keras
    from keras import layers

    image = keras.Input(shape=(XCEPTION_FEATURES,))
    image_features = layers.Dense(UNITS, activation="relu")(layers.Dropout(DROPOUT)(image))
    words = keras.Input(shape=(max_length,))
    embedded = layers.Embedding(vocab_size, UNITS, mask_zero=True)(words)
    sequence = layers.LSTM(UNITS)(layers.Dropout(DROPOUT)(embedded))
    merged = layers.Dense(UNITS, activation="relu")(layers.add([image_features, sequence]))
    outputs = layers.Dense(vocab_size, activation="softmax")(merged)
    return keras.Model(inputs=[image, words], outputs=outputs)


class TutorialCaptioner:
    """The tutorial's `generate_desc` loop, timed word by word."""

    def __init__(self, vocab_size: int, max_length: int = BASELINE_MAX_LENGTH) -> None:
        self.max_length = max_length
        self.xception = build_xception()
        self.model = build_merge_model(vocab_size, max_length)
        # A Keras-Tokenizer-like word index: ids 1..V-1 (0 is padding).
        words = ["startseq", "endseq", *(f"word{i}" for i in range(3, vocab_size))]
        self.word_index = {word: i for i, word in enumerate(words, start=1)}

    def features(self, pixels: np.ndarray) -> np.ndarray:
        from keras.applications.xception import preprocess_input

        return self.xception.predict(preprocess_input(pixels.copy()), verbose=0)

    def word_for_id(self, index: int) -> str | None:
        for word, i in self.word_index.items():  # the tutorial's linear search
            if i == index:
                return word
        return None

    def caption(self, pixels: np.ndarray) -> tuple[float, list[float]]:
        """(feature ms, cumulative ms after each word), all `max_length` words."""
        from keras.utils import pad_sequences

        started = time.perf_counter()
        photo = self.features(pixels)
        feature_ms = (time.perf_counter() - started) * 1000.0
        text = "startseq"
        cumulative = []
        for _ in range(self.max_length):
            sequence = [self.word_index[w] for w in text.split() if w in self.word_index]
            padded = pad_sequences([sequence], maxlen=self.max_length)
            probabilities = self.model.predict([photo, padded], verbose=0)
            word = self.word_for_id(int(np.argmax(probabilities)))
            text += " " + (word or "word3")  # never stop early: see the module docstring
            cumulative.append((time.perf_counter() - started) * 1000.0)
        return feature_ms, cumulative


def tutorial_pixels(seed: int = 0) -> np.ndarray:
    """One generated photo as the tutorial loads it: resized to 299x299, float pixels."""
    image = photo_like(seed).resize((XCEPTION_SIZE, XCEPTION_SIZE))
    return np.asarray(image, np.float32)[None]


def bench_baseline(
    vocab_size: int, matched_words: int, repeats: int, matched_from: str
) -> dict[str, Any]:
    """ms per caption, full length and `matched_words` long (`matched_from` says why)."""
    logger.info("baseline: building Xception and the merge model (vocabulary %d)", vocab_size)
    captioner = TutorialCaptioner(vocab_size)
    matched_words = max(1, min(matched_words, captioner.max_length))
    captioner.caption(tutorial_pixels(0))  # warm-up: tracing and first allocations
    features, full, matched, per_word = [], [], [], []
    for repeat in range(repeats):
        feature_ms, cumulative = captioner.caption(tutorial_pixels(repeat + 1))
        features.append(feature_ms)
        full.append(cumulative[-1])
        matched.append(cumulative[matched_words - 1])
        per_word.append((cumulative[-1] - feature_ms) / len(cumulative))
        logger.info(
            "baseline caption %d: %.0f ms (%d words), %.0f ms (%d words)",
            repeat + 1,
            cumulative[-1],
            len(cumulative),
            cumulative[matched_words - 1],
            matched_words,
        )
    return {
        "vocab_size": vocab_size,
        "max_length": captioner.max_length,
        "matched_words": matched_words,
        "matched_from": matched_from,
        "xception_ms": summarize(features),
        "word_ms": summarize(per_word),
        "caption_full_ms": summarize(full),
        "caption_matched_ms": summarize(matched),
    }
