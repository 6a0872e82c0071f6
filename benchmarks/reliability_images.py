"""Mutated image files for fuzzing `decode_image` and the upload route (tests and `reliability`).

Seeds are small valid files in every format the service documents (JPEG, PNG, GIF, WebP, BMP);
Hypothesis mutates them (bit flips, overwritten, inserted, deleted and repeated ranges,
truncation) and can rewrite the declared dimensions (CRC fixed for PNG), so the pixel-limit and
decompression-bomb paths are exercised as well as the decoders' error handling.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from benchmarks.procfs import reset_peak_rss, status_kib
from captioning.images import ImageError, decode_image

# The codes `decode_image` documents (see captioning.images and the API's error table).
IMAGE_ERROR_CODES = frozenset(
    {"empty_file", "unsupported_image", "corrupt_image", "image_too_large"}
)
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
# Declared sizes for the dimension rewrite: ordinary, over a 2 MP limit, absurd, and empty.
DIMENSIONS = ((640, 480), (2000, 1200), (30000, 30000), (65535, 65535), (0, 7), (1, 1))
FUZZ_MAX_PIXELS = 2_000_000  # the limit the fuzzer decodes with: memory must scale with it


@cache
def seed_images() -> dict[str, bytes]:
    """One small valid file per format, in a mode that format is often used with."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    rgb = Image.fromarray(pixels, "RGB")
    seeds: dict[str, bytes] = {}
    for name, image, options in (
        ("JPEG", rgb, {"quality": 85, "progressive": True}),
        ("PNG", rgb.convert("RGBA"), {}),
        ("GIF", rgb.convert("P"), {"save_all": True, "append_images": [rgb.convert("P")]}),
        ("WEBP", rgb, {"quality": 80}),
        ("BMP", rgb, {}),
    ):
        buffer = io.BytesIO()
        image.save(buffer, name, **options)
        seeds[name] = buffer.getvalue()
    return seeds


def set_dimensions(data: bytearray, image_format: str, width: int, height: int) -> None:
    """Rewrite the size a header declares (in place); WebP is left to the byte mutations."""
    if image_format == "PNG" and len(data) >= 33:
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR stays valid
    elif image_format == "GIF" and len(data) >= 10:
        data[6:10] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    elif image_format == "BMP" and len(data) >= 26:
        data[18:26] = struct.pack("<ii", width, height)
    elif image_format == "JPEG":
        # The frame header: FFC0..FFC2 (baseline, extended, progressive), length, precision,
        # then height and width; JPEG cannot declare more than 65535 either way.
        for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
            at = data.find(marker)
            if at >= 0 and len(data) >= at + 9:
                data[at + 5 : at + 9] = struct.pack(">HH", min(height, 0xFFFF), min(width, 0xFFFF))
                break


@st.composite
def mutated_images(draw: st.DrawFn) -> tuple[str, bytes]:
    """(format of the seed, mutated bytes)."""
    image_format = draw(st.sampled_from(FORMATS))
    data = bytearray(seed_images()[image_format])
    if draw(st.booleans()):
        width, height = draw(st.sampled_from(DIMENSIONS))
        set_dimensions(data, image_format, width, height)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        size = len(data)
        start = draw(st.integers(0, size - 1))
        length = draw(st.integers(1, min(64, size - start)))
        operation = draw(
            st.sampled_from(("flip", "overwrite", "insert", "delete", "repeat", "truncate"))
        )
        if operation == "flip":
            data[start] ^= 1 << draw(st.integers(0, 7))
        elif operation == "overwrite":
            data[start : start + length] = draw(st.binary(min_size=length, max_size=length))
        elif operation == "insert":
            data[start:start] = draw(st.binary(min_size=1, max_size=64))
        elif operation == "delete":
            del data[start : start + length]
        elif operation == "repeat":
            data[start:start] = data[start : start + length] * draw(st.integers(1, 16))
        else:
            del data[start:]
    return image_format, bytes(data)


# --- measuring ------------------------------------------------------------------------------------


def own_rss_mib() -> float:
    return status_kib("self", "VmRSS") / 1024


def own_peak_rss_mib() -> float:
    return status_kib("self", "VmHWM") / 1024


@dataclass
class DecodeStats:
    """What the fuzzer saw: outcomes by format, the slowest decode, and memory."""

    outcomes: Counter[str] = field(default_factory=Counter)  # "JPEG ok", "PNG corrupt_image"...
    max_seconds: float = 0.0
    slowest: str = ""
    rss_start_mb: float = field(default_factory=own_rss_mib)
    peak_growth_mb: float = 0.0  # VmHWM above the RSS at the start
    peak_measured: bool = field(default_factory=reset_peak_rss)

    @property
    def examples(self) -> int:
        return sum(self.outcomes.values())

    def summary(self) -> dict[str, Any]:
        codes: Counter[str] = Counter()
        for key, count in self.outcomes.items():
            codes[key.split(" ", 1)[1]] += count
        return {
            "examples": self.examples,
            "outcomes": dict(sorted(codes.items())),
            "by_format": dict(sorted(self.outcomes.items())),
            "max_decode_ms": round(self.max_seconds * 1000, 1),
            "slowest": self.slowest,
            "rss_start_mb": round(self.rss_start_mb, 1),
            "rss_end_mb": round(own_rss_mib(), 1),
            "peak_growth_mb": round(self.peak_growth_mb, 1) if self.peak_measured else None,
            "max_pixels": FUZZ_MAX_PIXELS,
        }


def decode_and_record(stats: DecodeStats, image_format: str, data: bytes) -> str:
    """Decode like the service does; return "ok" or the ImageError code.

    Any other exception propagates: that is the failure the fuzzer looks for."""
    started = time.perf_counter()
    try:
        image = decode_image(data, max_pixels=FUZZ_MAX_PIXELS)
        outcome = "ok"
        assert image.mode == "RGB" and image.width * image.height <= FUZZ_MAX_PIXELS
    except ImageError as exc:
        outcome = exc.code
    seconds = time.perf_counter() - started
    if seconds > stats.max_seconds:
        stats.max_seconds, stats.slowest = seconds, f"{image_format}, {len(data)} bytes"
    stats.outcomes[f"{image_format} {outcome}"] += 1
    if stats.peak_measured:
        stats.peak_growth_mb = max(stats.peak_growth_mb, own_peak_rss_mib() - stats.rss_start_mb)
    return outcome
