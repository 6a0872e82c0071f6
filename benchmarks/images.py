"""Photo-like test images made in code: no photos ship with the repository.

Each image has a sky and ground gradient, a few soft-edged shapes and sensor-like noise, so a
JPEG of it is about as large (tens of kB at 640x480) and as costly to decode as a real photo.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PHOTO_SIZE = (640, 480)  # width, height: a typical phone or web photo
JPEG_QUALITY = 90
SHAPES_PER_IMAGE = 6
NOISE_STD = 6.0
BLUR_RADIUS = 1.5


def photo_like(seed: int, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    """A deterministic RGB image that compresses and decodes like a photograph."""
    rng = np.random.default_rng(seed)
    width, height = size
    horizon = int(height * rng.uniform(0.35, 0.65))
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky_top, sky_bottom, ground_top, ground_bottom = rng.uniform(0, 255, (4, 3)).astype(np.float32)
    canvas = np.where(
        np.arange(height)[:, None, None] < horizon,
        sky_top + (sky_bottom - sky_top) * rows,
        ground_top + (ground_bottom - ground_top) * rows,
    )
    image = Image.fromarray(np.broadcast_to(canvas, (height, width, 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(SHAPES_PER_IMAGE):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.05, 0.4) * width, rng.uniform(0.05, 0.4) * height
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (x0, y0, x0 + w, y0 + h)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=color)
        else:
            draw.rectangle(box, fill=color)
    image = image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    noisy = np.asarray(image, np.float32) + rng.normal(0.0, NOISE_STD, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def to_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def photo_set(count: int, size: tuple[int, int] = PHOTO_SIZE) -> list[Image.Image]:
    return [photo_like(seed, size) for seed in range(count)]


def jpeg_set(count: int, size: tuple[int, int] = PHOTO_SIZE) -> list[bytes]:
    return [to_jpeg(image) for image in photo_set(count, size)]
