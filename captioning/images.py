"""Image decoding and preprocessing shared by training, evaluation, the CLI and the service.

Every photo, whatever its size, aspect ratio or mode, becomes the same thing: an upright RGB
image resized (without cropping, as the Flickr8k copy the model was trained on) to the encoder's
square input, as float32 pixel values in [0, 255]. The encoder model does its own normalisation.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow refuses images above this many pixels itself; we check our own, lower, limit first.
DEFAULT_MAX_PIXELS = 40_000_000
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"})
RESAMPLE = Image.Resampling.BILINEAR
EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """An upload or file that cannot be used as a photo. `code` is stable and machine-readable."""

    code = "invalid_image"
    status_code = 422


class EmptyImageError(ImageError):
    code = "empty_file"


class UnsupportedImageError(ImageError):
    code = "unsupported_image"
    status_code = 415


class CorruptImageError(ImageError):
    code = "corrupt_image"


class ImageTooLargeError(ImageError):
    code = "image_too_large"
    status_code = 413


def decode_image(
    data: bytes | bytearray, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int | None = None
) -> Image.Image:
    """Decode untrusted bytes into an upright RGB image, or raise an `ImageError`.

    The pixel count is checked from the header before any pixel is decoded, so a
    decompression bomb is refused cheaply. Animated images give their first frame. See
    `decode_upload` for `min_size`.
    """
    return decode_upload(data, max_pixels, min_size)[0]


def decode_upload(
    data: bytes | bytearray, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """`decode_image`, plus the photo's full upright (width, height).

    With `min_size`, a JPEG is decoded at the smallest of the scales 1/2, 1/4 and 1/8 (done by
    libjpeg while decoding, `Image.draft`) that keeps both sides at least `min_size` pixels:
    the model only ever sees `min_size`-pixel inputs, and a 12-megapixel phone photo then
    decodes in about 17 ms instead of 175 (measured here). Photos under twice `min_size` on
    either side, such as all of Flickr8k, decode exactly as without it.
    """
    if not data:
        raise EmptyImageError("the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError(
            "the file is not an image in a supported format "
            f"({', '.join(sorted(SUPPORTED_FORMATS - {'MPO'}))})"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"the image has too many pixels (limit {max_pixels:,})") from exc
    except Exception as exc:  # Pillow raises many types for broken headers
        raise CorruptImageError("the image header is damaged and cannot be read") from exc

    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedImageError(f"image format {image.format} is not supported")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,}"
        )
    if width < 1 or height < 1:
        raise CorruptImageError("the image has no pixels")
    try:
        image.seek(0)  # first frame of an animation
        if _rotated_a_quarter(image):
            width, height = height, width
        if min_size and image.format in ("JPEG", "MPO"):
            image.draft(None, (min_size, min_size))  # keeps the mode; _to_rgb converts
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return _to_rgb(image), (width, height)
    except ImageError:
        raise
    except Exception as exc:  # truncated data, bad Huffman tables, broken chunks ...
        raise CorruptImageError("the image data is truncated or corrupt") from exc


def _rotated_a_quarter(image: Image.Image) -> bool:
    """Whether the EXIF orientation (5 to 8) turns the stored image by 90 degrees."""
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    return orientation in (5, 6, 7, 8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode (palette, grayscale, 16-bit, CMYK, with alpha) to 8-bit RGB on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping everything to white.
        array = np.asarray(image, dtype=np.float64)
        peak = float(array.max()) or 1.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def load_image_file(
    path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int | None = None
) -> Image.Image:
    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels, min_size=min_size)


def to_model_input(image: Image.Image, size: int) -> np.ndarray:
    """One RGB image as a (size, size, 3) float32 array in [0, 255], squashed like Flickr8k."""
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    return np.asarray(image, dtype=np.float32)


def to_model_batch(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """Several images as one (batch, size, size, 3) float32 array."""
    if not images:
        return np.zeros((0, size, size, 3), np.float32)
    return np.stack([to_model_input(image, size) for image in images])
