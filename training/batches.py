"""Training data as arrays: caption ids, mirrored photos, and the shuffled length-sorted batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from captioning.text import PAD_ID, UNKNOWN_ID, Vocabulary
from training.data import LENGTH_BUCKET, Split
from training.features import Features


def encode_captions(
    split: Split, vocabulary: Vocabulary, per_image: int, max_words: int
) -> np.ndarray:
    """(images, per_image, max_words + 2) ids, <start> ... <end> then padding.

    Images with fewer references than `per_image` repeat theirs (cyclically).
    """
    return encode_groups(split.captions, vocabulary, per_image, max_words)


def encode_groups(
    groups: Sequence[Sequence[Sequence[str]]],
    vocabulary: Vocabulary,
    per_image: int,
    max_words: int,
) -> np.ndarray:
    """`encode_captions` for captions grouped per photo (lists of tokens)."""
    array = np.full((len(groups), per_image, max_words + 2), PAD_ID, np.int32)
    for i, references in enumerate(groups):
        for j in range(per_image):
            ids = vocabulary.encode(references[j % len(references)][:max_words])
            array[i, j, : len(ids)] = ids
    return array


MIRRORED_WORDS = {"left": "right", "right": "left"}


def mirror_captions(captions: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """`encode_captions` ids for the mirrored photo: "left" and "right" trade places."""
    mirrored = captions.copy()
    for word, other in MIRRORED_WORDS.items():
        word_id, other_id = vocabulary.id_of(word), vocabulary.id_of(other)
        if UNKNOWN_ID not in (word_id, other_id):
            mirrored[captions == word_id] = other_id
    return mirrored


@dataclass
class TextCaptions:
    """Text-only caption groups (no photo): ids as `encode_captions`, each caption's concept
    (index + 1, 0 for none), (groups, per_image), and how likely each group is drawn (None:
    alike)."""

    captions: np.ndarray
    entities: np.ndarray
    chances: np.ndarray | None = None


@dataclass
class MirroredImages:
    """The features and caption ids of the mirrored photos, row for row as the originals."""

    features: Features
    captions: np.ndarray


class CaptionBatches(keras.utils.PyDataset):
    """Shuffled batches of images with all their captions: ((grid, pooled, inputs), targets).

    For a decoder conditioned on concepts, `entities` (images, per_image) gives each image
    caption's concept and the inputs end with them; `text` adds `text_per_epoch` groups of
    text-only captions, drawn anew every epoch, which stand for photos with zero features.

    Images are shuffled, then sorted by caption length within pools of `POOL_BATCHES` batches,
    so that a batch pads its captions to a similar length: on a CPU the padded steps cost as
    much as real ones, and this cuts an epoch by about a third. With `mirrored`, each image of
    a batch is the mirrored photo with probability one half, drawn anew every epoch.
    """

    POOL_BATCHES = 16

    def __init__(
        self,
        features: Features,
        captions: np.ndarray,
        batch_images: int,
        seed: int,
        mirrored: MirroredImages | None = None,
        entities: np.ndarray | None = None,
        text: TextCaptions | None = None,
        text_per_epoch: int = 0,
        photo_dropout: float = 0.0,
    ):
        super().__init__()
        self.features, self.batch_images = features, batch_images
        self.mirrored = mirrored
        self.images = len(captions)  # rows from here on are text groups
        self.entities = entities
        self.text_per_epoch = 0
        self.captions = captions
        if text is not None and len(text.captions) and text_per_epoch:
            if entities is None:
                raise ValueError("text-only captions need a decoder conditioned on concepts")
            self.captions = np.concatenate([captions, text.captions])
            self.entities = np.concatenate([entities, text.entities])
            self.text_per_epoch = min(text_per_epoch, len(text.captions))
            self.text_chances = text.chances
        self.lengths = (self.captions != PAD_ID).sum(axis=2).max(axis=1)
        self.photo_dropout = photo_dropout
        self.rng = np.random.default_rng(seed)
        self.batches = self._plan()
        self.mirror_masks = self._plan_mirroring()
        self.dropped = self._plan_photo_dropout()

    def _plan(self) -> list[np.ndarray]:
        order = np.arange(self.images)
        if self.text_per_epoch:
            texts = len(self.captions) - self.images
            drawn = self.rng.choice(texts, self.text_per_epoch, replace=False, p=self.text_chances)
            drawn += self.images
            order = np.concatenate([order, drawn])
        order = self.rng.permutation(order)
        pool = self.batch_images * self.POOL_BATCHES
        batches = []
        for start in range(0, len(order), pool):
            part = order[start : start + pool]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [
                part[i : i + self.batch_images] for i in range(0, len(part), self.batch_images)
            ]
        self.rng.shuffle(batches)
        return [np.sort(batch) for batch in batches]

    def _plan_mirroring(self) -> list[np.ndarray]:
        """Which rows of each batch are mirrored (drawn here so a batch is the same however
        often it is asked for)."""
        if self.mirrored is None:
            return [np.zeros(len(batch), bool) for batch in self.batches]
        return [
            (self.rng.random(len(batch)) < 0.5) & (batch < self.images) for batch in self.batches
        ]

    def _plan_photo_dropout(self) -> list[np.ndarray]:
        """Which photos of each batch are shown without their features (their concept only)."""
        if not self.photo_dropout:  # no draws: the batch order stays that of older versions
            return [np.zeros(len(batch), bool) for batch in self.batches]
        return [self.rng.random(len(batch)) < self.photo_dropout for batch in self.batches]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        rows, mirror = self.batches[index], self.mirror_masks[index]
        captions = self.captions[rows]
        used = int(self.lengths[rows].max())
        length = min(captions.shape[2], math.ceil((used - 1) / LENGTH_BUCKET) * LENGTH_BUCKET + 1)
        captions = captions[:, :, :length]
        grid, pooled = self._features(rows)
        if self.mirrored is not None and mirror.any():
            flipped = rows[mirror]
            grid[mirror] = self.mirrored.features.grid[flipped]
            # `grid`, `pooled` and `captions` are fresh arrays (fancy indexing copies), so
            # writing into them leaves the originals alone.
            pooled[mirror] = self.mirrored.features.pooled[flipped]
            captions[mirror] = self.mirrored.captions[flipped, :, : captions.shape[2]]
        if self.photo_dropout:
            dropped = self.dropped[index]
            grid[dropped], pooled[dropped] = 0.0, 0.0
        inputs, targets = captions[:, :, :-1], captions[:, :, 1:]
        targets = targets.reshape(-1, targets.shape[-1])
        if self.entities is None:
            return (grid, pooled, inputs), targets
        return (grid, pooled, inputs, self.entities[rows]), targets

    def _features(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows' grid and pooled features; zeros for text-only groups (no photo)."""
        images = rows[rows < self.images]
        if len(images) == len(rows):
            return np.asarray(self.features.grid[rows], np.float32), self.features.pooled[rows]
        grid = np.zeros((len(rows), *self.features.grid.shape[1:]), np.float32)
        pooled = np.zeros((len(rows), self.features.pooled.shape[1]), np.float32)
        # `rows` is sorted, so the photos come first.
        grid[: len(images)] = self.features.grid[images]
        pooled[: len(images)] = self.features.pooled[images]
        return grid, pooled

    def on_epoch_end(self) -> None:
        self.batches = self._plan()
        self.mirror_masks = self._plan_mirroring()
        self.dropped = self._plan_photo_dropout()

    def as_dataset(self) -> tf.data.Dataset:
        """A tf.data pipeline with the caption length left open in its signature.

        Handing the PyDataset to Keras directly would make it guess the signature from the
        first few batches; when those happen to share a length, a longer batch later crashes.
        """
        regions, channels = self.features.grid.shape[1:]
        per_image = self.captions.shape[1]
        inputs = (
            tf.TensorSpec((None, regions, channels), tf.float32),
            tf.TensorSpec((None, channels), tf.float32),
            tf.TensorSpec((None, per_image, None), tf.int32),
        )
        if self.entities is not None:
            inputs += (tf.TensorSpec((None, per_image), tf.int32),)
        signature = (inputs, tf.TensorSpec((None, None), tf.int32))

        def generate():
            for index in range(len(self)):
                yield self[index]
            self.on_epoch_end()

        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
        # The batch count is fixed; saying so lets Keras size its epochs without a warning.
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(2)


def keep_readable(split: Split, features: Features) -> tuple[Split, Features]:
    """Drop (after reporting, in extract_features) images whose file could not be decoded."""
    if not features.failed:
        return split, features
    failed = set(features.failed)
    keep = np.array([i for i, name in enumerate(split.image_ids) if name not in failed])
    kept_split = Split(
        split.name,
        [split.image_paths[i] for i in keep],
        [split.captions[i] for i in keep],
        [split.raw_captions[i] for i in keep],
    )
    kept = Features(
        np.asarray(features.grid[keep]),
        features.pooled[keep],
        [features.image_ids[i] for i in keep],
        [],
    )
    return kept_split, kept
