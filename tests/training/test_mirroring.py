"""Mirrored photos as augmentation: their features, their captions' words, and their batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from captioning.runtime import EncoderOutput
from captioning.text import PAD_ID, Vocabulary, normalize_caption
from training.batches import CaptionBatches, MirroredImages, encode_captions, mirror_captions
from training.data import Split
from training.features import Features, extract_features

SIZE = 8


class ColumnEncoder:
    """A stand-in encoder whose "features" are the pixels' columns, so a flip shows."""

    name = "columns"

    def __call__(self, pixels: np.ndarray) -> EncoderOutput:
        columns = pixels[:, 0, :, 0]  # (batch, width): the red channel of the top row
        return EncoderOutput(columns[:, None, :, None], columns, None)


def test_mirrored_features_are_those_of_the_flipped_photo(tmp_path) -> None:
    ramp = np.tile(np.arange(SIZE, dtype=np.uint8) * 30, (SIZE, 1))
    path = tmp_path / "ramp.png"
    Image.fromarray(np.dstack([ramp, ramp, ramp])).save(path)

    plain = extract_features(ColumnEncoder(), [path], SIZE, tmp_path / "cache", "train")
    mirrored = extract_features(
        ColumnEncoder(), [path], SIZE, tmp_path / "cache", "train_mirrored", mirror=True
    )

    np.testing.assert_array_equal(plain.pooled[0], np.arange(SIZE) * 30)
    np.testing.assert_array_equal(mirrored.pooled[0], plain.pooled[0][::-1])
    # Cached apart: asking again for either gives it back unchanged.
    again = extract_features(ColumnEncoder(), [path], SIZE, tmp_path / "cache", "train")
    np.testing.assert_array_equal(again.pooled, plain.pooled)


def _vocabulary_and_captions() -> tuple[Vocabulary, np.ndarray]:
    texts = [
        ["a dog turns left on the grass", "a man raises his right hand"],
        ["the left and the right shoe", "a girl on a swing"],
    ]
    references = [[normalize_caption(t) for t in image] for image in texts]
    vocabulary = Vocabulary.build([c for image in references for c in image], min_count=1)
    split = Split("train", [Path("a.jpg"), Path("b.jpg")], references, texts)
    return vocabulary, encode_captions(split, vocabulary, per_image=2, max_words=10)


def test_mirrored_captions_swap_left_and_right_and_nothing_else() -> None:
    vocabulary, captions = _vocabulary_and_captions()

    mirrored = mirror_captions(captions, vocabulary)

    words = [[vocabulary.decode(ids) for ids in image] for image in mirrored]
    assert words[0] == [
        ["a", "dog", "turns", "right", "on", "the", "grass"],
        ["a", "man", "raises", "his", "left", "hand"],
    ]
    assert words[1][0] == ["the", "right", "and", "the", "left", "shoe"]
    assert words[1][1] == ["a", "girl", "on", "a", "swing"]
    assert (mirrored == PAD_ID).sum() == (captions == PAD_ID).sum()


def test_mirror_captions_leaves_a_vocabulary_without_those_words_alone() -> None:
    vocabulary = Vocabulary.build([["a", "dog", "turns", "left"]], min_count=1)  # no "right"
    captions = np.array([[vocabulary.encode(["a", "dog", "turns", "left"])]], np.int32)

    np.testing.assert_array_equal(mirror_captions(captions, vocabulary), captions)


def _batches(images: int, seed: int = 0) -> tuple[CaptionBatches, np.ndarray, np.ndarray]:
    """Batches whose original rows hold +i and mirrored rows -i, to tell them apart."""
    values = np.arange(1, images + 1, dtype=np.float32)
    plain = Features(
        np.tile(values[:, None, None], (1, 4, 3)), values[:, None] * np.ones(3), [], []
    )
    flipped = Features(-plain.grid, -plain.pooled, [], [])
    captions = np.zeros((images, 2, 6), np.int32)
    captions[:, :, :3] = [1, 10, 2]  # <start> word <end>
    captions[:, :, 1] += np.arange(images)[:, None]
    mirrored_captions = captions.copy()
    mirrored_captions[:, :, 1] += 1000
    batches = CaptionBatches(
        plain,
        captions,
        batch_images=4,
        seed=seed,
        mirrored=MirroredImages(flipped, mirrored_captions),
    )
    return batches, captions, mirrored_captions


def test_each_image_of_a_batch_is_mirrored_or_not_with_its_own_captions() -> None:
    batches, captions, mirrored_captions = _batches(images=40)
    mirrored_count = 0
    seen = []
    for index in range(len(batches)):
        (grid, pooled, inputs), _ = batches[index]
        image = np.abs(pooled[:, 0]).astype(int) - 1
        seen += image.tolist()
        flipped = pooled[:, 0] < 0
        mirrored_count += int(flipped.sum())
        np.testing.assert_array_equal(grid[:, 0, 0], pooled[:, 0])  # grid and pooled agree
        expected = np.where(flipped[:, None, None], mirrored_captions[image], captions[image])
        np.testing.assert_array_equal(inputs, expected[:, :, : inputs.shape[2]])
        # The same batch, asked for again, is the same.
        np.testing.assert_array_equal(batches[index][0][1], pooled)
    assert sorted(seen) == list(range(40))  # every image once per epoch
    assert 8 <= mirrored_count <= 32  # about half (binomial, 40 draws)


def test_the_mirrored_images_are_drawn_anew_every_epoch() -> None:
    batches, _, _ = _batches(images=40)

    def mirrored_images() -> set[int]:
        rows = [batches[i][0][1][:, 0] for i in range(len(batches))]
        pooled = np.concatenate(rows)
        return set((-pooled[pooled < 0]).astype(int).tolist())

    first = mirrored_images()
    batches.on_epoch_end()
    assert mirrored_images() != first


def test_without_mirrored_images_no_row_is_mirrored() -> None:
    batches, _, _ = _batches(images=12)
    plain = CaptionBatches(batches.features, batches.captions, batch_images=4, seed=0)

    pooled = np.concatenate([plain[i][0][1][:, 0] for i in range(len(plain))])

    assert (pooled > 0).all()
