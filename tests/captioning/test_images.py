"""Decoding at a reduced JPEG scale: only when the model loses nothing by it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from captioning.images import decode_image, decode_upload, to_model_input


def _photo(size: tuple[int, int], image_format: str = "JPEG") -> bytes:
    # Smooth gradients: a JPEG of noise would differ in every pixel at any scale.
    x = np.linspace(0, 255, size[0])[None, :, None]
    y = np.linspace(0, 255, size[1])[:, None, None]
    pixels = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


def test_a_large_jpeg_decodes_at_the_smallest_scale_above_min_size():
    image, size = decode_upload(_photo((1600, 1200)), min_size=224)
    assert size == (1600, 1200)
    assert image.size == (400, 300)  # 1/4: 1/8 would leave 150 rows, under 224
    assert image.mode == "RGB"


def test_reduced_scale_changes_the_model_input_very_little():
    data = _photo((1600, 1200))
    full = to_model_input(decode_image(data), 224)
    reduced = to_model_input(decode_image(data, min_size=224), 224)
    assert np.abs(full - reduced).mean() < 2.0  # of 255


def test_photos_under_twice_min_size_decode_exactly_as_without_it():
    data = _photo((500, 375))  # Flickr8k's size: what the model was trained on
    with_min, size = decode_upload(data, min_size=224)
    assert size == (500, 375)
    assert np.array_equal(np.asarray(with_min), np.asarray(decode_image(data)))


def test_other_formats_decode_at_full_size():
    image, size = decode_upload(_photo((1600, 1200), "PNG"), min_size=224)
    assert image.size == size == (1600, 1200)
