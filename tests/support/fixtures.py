"""Small datasets and a tiny trained model, generated on the fly so tests never need ../shared."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15)}


def shape_image(colour: str, shape: str, background: str, size: int = 224) -> Image.Image:
    """A coloured shape on a plain background: distinct enough for a tiny captioner to learn."""
    image = Image.new("RGB", (size, size), BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    box = (size * 0.2, size * 0.2, size * 0.8, size * 0.8)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon(
            [(size / 2, size * 0.15), (size * 0.85, size * 0.85), (size * 0.15, size * 0.85)],
            fill=fill,
        )
    return image


def tiny_examples() -> list[tuple[str, Image.Image, str]]:
    """(file name, image, caption): one caption per image, e.g. 'a red circle on white'."""
    examples = []
    for colour in COLOURS:
        for shape in SHAPES:
            for background in BACKGROUNDS:
                name = f"{colour}_{shape}_{background}.jpg"
                caption = f"A {colour} {shape} on {background}."
                examples.append((name, shape_image(colour, shape, background), caption))
    return examples


def write_flickr8k(root: Path, withheld_test: int = 2) -> list[tuple[str, str]]:
    """The original Flickr8k layout with the tiny examples as train and dev.

    `withheld_test` test images are listed with captions but absent, like the real copy.
    Returns (file name, caption) pairs.
    """
    images_dir = root / "Flicker8k_Dataset"
    text_dir = root / "Flickr8k_text"
    images_dir.mkdir(parents=True)
    text_dir.mkdir()
    examples = tiny_examples()
    token_lines, names = [], []
    for name, image, caption in examples:
        image.save(images_dir / name, quality=95)
        names.append(name)
        token_lines += [f"{name}#{i}\t{caption}" for i in range(5)]
    test_names = [f"withheld_{i}.jpg" for i in range(withheld_test)]
    token_lines += [f"{name}#0\ta picture that is not here" for name in test_names]
    (text_dir / "Flickr8k.token.txt").write_text("\n".join(token_lines) + "\n")
    (text_dir / "Flickr_8k.trainImages.txt").write_text("\n".join(names) + "\n")
    (text_dir / "Flickr_8k.devImages.txt").write_text("\n".join(names) + "\n")
    (text_dir / "Flickr_8k.testImages.txt").write_text("\n".join(test_names) + "\n")
    return [(name, caption) for name, _, caption in examples]


def jpeg_bytes(image: Image.Image, **save_options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save_options)
    return buffer.getvalue()


def random_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth random colours: a stand-in photo of any size."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
