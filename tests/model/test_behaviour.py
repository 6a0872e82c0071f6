"""Behavioural tests of the committed default model (kept apart from the code tests).

They check what a user would expect of any decent captioner on photos it never saw, using the
public-domain sample photos bundled with scikit-image: people are called people, small changes
of size, compression or orientation do not change the story, different photos get different
captions. Quality figures (BLEU, CIDEr) come from `python -m training evaluate`, not from here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from captioning.concepts import COUNTABLE
from captioning.images import decode_image
from captioning.predictor import CaptionPredictor

pytestmark = pytest.mark.model

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PERSON_WORDS = {"man", "woman", "person", "boy", "girl", "people", "men", "women", "lady", "guy"}


@pytest.fixture(scope="module")
def predictor() -> CaptionPredictor:
    assert (ARTIFACTS / "manifest.json").is_file(), "the default model must be committed"
    model = CaptionPredictor.from_artifacts(ARTIFACTS)
    model.warmup()
    return model


def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(samples, name)()).convert("RGB")


def _caption(predictor: CaptionPredictor, image: Image.Image, **options) -> str:
    return predictor.caption_images([image], predictor.search.with_options(**options))[0].best.text


def _uncounted_words(predictor: CaptionPredictor) -> set[str]:
    """The concept words written without an article: mass nouns and plural-only ones."""
    table = predictor.concepts
    if table is None:
        return set()
    return {
        word
        for index in range(len(table.words))
        if table.form(index) != COUNTABLE
        for word in (table.words[index], table.plurals[index])
    }


def _jpeg_round_trip(image: Image.Image, **save) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save)
    return decode_image(buffer.getvalue())


def test_people_are_called_people(predictor):
    for name in ("astronaut", "camera"):
        words = set(_caption(predictor, _photo(name)).split())
        assert words & PERSON_WORDS, f"{name}: {words}"


def test_size_and_compression_do_not_change_the_caption_much(predictor):
    photo = _photo("astronaut")
    reference = set(_caption(predictor, photo).split())
    for variant in (
        photo.resize((300, 300)),
        photo.resize((1600, 1600)),
        _jpeg_round_trip(photo, quality=60),
    ):
        words = set(_caption(predictor, variant).split())
        overlap = len(words & reference) / len(words | reference)
        assert overlap >= 0.5, (sorted(reference), sorted(words))


def test_exif_rotated_upload_is_seen_upright(predictor):
    """A phone photo stored sideways with an EXIF orientation tag is captioned upright."""
    photo = _photo("astronaut")
    stored = photo.transpose(Image.Transpose.ROTATE_90)  # what a phone writes, sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    upright_again = _jpeg_round_trip(stored, quality=95, exif=exif.tobytes())
    assert upright_again.size == photo.size
    difference = np.abs(np.asarray(upright_again, float) - np.asarray(photo, float)).mean()
    assert difference < 8, difference
    assert set(_caption(predictor, upright_again).split()) & PERSON_WORDS


def test_different_photos_get_different_captions(predictor):
    captions = {
        _caption(predictor, _photo(n)) for n in ("astronaut", "chelsea", "coffee", "rocket")
    }
    assert len(captions) >= 3, captions


def test_captions_are_well_formed(predictor):
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera"):
        for beam_size in (1, 3, 5):
            words = _caption(predictor, _photo(name), beam_size=beam_size).split()
            # At least a noun: a photo grounding leaves the decoder no fluent sentence for is
            # its concept named plainly ("an espresso"; a mass noun alone: "gear").
            assert 1 <= len(words) <= predictor.search.max_length, words
            assert len(words) > 1 or words[0] in _uncounted_words(predictor), words
            repeats = [a == b == c for a, b, c in zip(words, words[1:], words[2:], strict=False)]
            assert not any(repeats), words


def test_n_best_are_distinct_and_ranked(predictor):
    settings = predictor.search.with_options(beam_size=5, num_captions=5, min_word_probability=0)
    result = predictor.caption_images([_photo("chelsea")], settings)[0]
    texts = [c.text for c in result.captions]
    assert len(set(texts)) == len(texts) == 5
    scores = [c.score for c in result.captions]
    assert scores == sorted(scores, reverse=True)
    assert np.all(np.isfinite([c.log_prob for c in result.captions]))
