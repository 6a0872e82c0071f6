"""Test images made in code with Pillow (no photos in the repository), good and hostile."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

RED = (230, 20, 20)
GREEN = (20, 200, 20)
BLUE = (20, 20, 230)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg(color: tuple[int, int, int] = RED, size: tuple[int, int] = (64, 48)) -> bytes:
    return encode(Image.new("RGB", size, color), "JPEG", quality=90)


def png(color: tuple[int, ...] = RED, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    return encode(Image.new(mode, size, color), "PNG")


def noisy_png(size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    """Incompressible pixels: the compressed data is long enough to damage or cut."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "PNG")


def noisy_jpeg(size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "JPEG", quality=95)


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG")  # red ink


def png_16bit() -> bytes:
    image = Image.fromarray(np.full((48, 64), 40000, dtype=np.uint16))
    assert image.mode.startswith("I;16")
    return encode(image, "PNG")


def palette_png(color: tuple[int, int, int] = BLUE) -> bytes:
    return encode(Image.new("RGB", (64, 48), color).convert("P"), "PNG")


def grayscale_png() -> bytes:
    return encode(Image.new("L", (64, 48), 128), "PNG")


def rgba_png() -> bytes:
    return encode(Image.new("RGBA", (64, 48), (0, 200, 0, 200)), "PNG")


def animated_gif() -> bytes:
    """Red first frame, blue second: the service must caption the first."""
    frames = [Image.new("RGB", (64, 48), RED), Image.new("RGB", (64, 48), BLUE)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg(stored: tuple[int, int] = (60, 30)) -> bytes:
    """Stored landscape with EXIF orientation 6 (rotate 90°): upright it is portrait."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.new("RGB", stored, RED), "JPEG", exif=exif.tobytes())


def ppm() -> bytes:
    """A real image in a format Pillow reads but the service does not accept."""
    return encode(Image.new("RGB", (8, 8), RED), "PPM")


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A few hundred bytes whose header claims width x height RGB pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + chunk(b"IEND", b"")
    )


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: int(len(data) * keep)]


def corrupt_png() -> bytes:
    """A PNG whose compressed pixel data was overwritten (the chunk CRC no longer matches)."""
    data = bytearray(noisy_png())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 60] = b"\xa5" * 50
    return bytes(data)


BOUNDARY = "captioner-test-boundary"


def multipart_head(field: str, filename: str | None = "photo.jpg") -> bytes:
    disposition = f'form-data; name="{field}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def multipart_tail() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def multipart_body(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """(field, filename or None for a plain field, content) parts as one multipart body."""
    body = b""
    for index, (field, filename, content) in enumerate(parts):
        separator = b"" if index == 0 else b"\r\n"
        body += separator + multipart_head(field, filename) + content
    return body + multipart_tail()


MULTIPART_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
