"""Small datasets and a tiny trained model, generated on the fly so tests never need ../shared.

The shapes dataset and the tiny recipe are training/fixture.py's (benchmarks/ uses them too);
here are the tests' own helpers, and those names for the tests that import them from here.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from training.fixture import shape_image, tiny_examples, write_flickr8k

__all__ = ["jpeg_bytes", "random_photo", "shape_image", "tiny_examples", "write_flickr8k"]


def jpeg_bytes(image: Image.Image, **save_options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save_options)
    return buffer.getvalue()


def random_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth random colours: a stand-in photo of any size."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
