"""A tiny generated dataset in Flickr8k's layout, and the one recipe that trains a captioner on
it in about a minute: what the tests train once per session, and what `make reliability` serves
when no model is at hand.

It lives in `training/` (no TensorFlow at import) because both `tests/` and `benchmarks/` need
it, and `benchmarks/` imports nothing from `tests/`.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from training.config import TrainConfig

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15)}

# A model that learns the shapes' 18 captions fast: small, no regularisation, a constant high
# learning rate, the raw weights (no moving average), cross-entropy alone.
TINY_RECIPE: dict[str, Any] = {
    "min_word_count": 1,
    "embedding_dim": 32,
    "hidden_dim": 64,
    "dropout": 0.0,
    "region_dropout": 0.0,
    "label_smoothing": 0.0,
    "learning_rate": 1e-2,
    "lr_decay": 1.0,
    "epoch_lr_decay": 1.0,
    "batch_images": 6,
    "epochs": 24,
    "patience": 1000,
    "eval_beam_size": 3,
    "weight_average": 0.0,
    "photo_dropout": 0.0,
    "self_critical_minutes": 0.0,  # tests/training/test_self_critical.py covers that phase
    # Shapes are no ImageNet classes; tests/captioning/test_predictor_concepts.py adds concepts.
    "concepts": False,
}


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


# Text-only captions about a thing no tiny photo shows; the test WordNet
# (tests/support/wordnet.py) knows the zebra, an ImageNet class.
TINY_TEXT_CAPTIONS = (
    "A zebra on white.",
    "A zebra on black.",
    "A striped zebra on white.",
    "A zebra standing on black.",
    "A small zebra on white.",
)


def write_text_corpora(root: Path, captions: tuple[str, ...] = TINY_TEXT_CAPTIONS) -> Path:
    """`captions` in every corpus format of `training.corpora` (the layout of
    ../shared/caption-text), each corpus holding them all; returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    annotations = [
        {"image_id": index // 5, "id": index, "caption": caption}
        for index, caption in enumerate(captions)
    ]
    with gzip.open(root / "coco_captions_val2017.json.gz", "wt", encoding="utf-8") as file:
        json.dump({"images": [], "annotations": annotations}, file)
    with gzip.open(root / "conceptual_captions_validation.tsv.gz", "wt", encoding="utf-8") as file:
        file.writelines(
            f"{caption}\thttp://example.invalid/{i}\n" for i, caption in enumerate(captions)
        )
    for number in range(1, 6):  # line i of each file: the same photo
        with gzip.open(root / f"flickr30k_train.{number}.en.gz", "wt", encoding="utf-8") as file:
            file.writelines(f"{caption}\n" for caption in captions)
    return root


def tiny_config(data_dir: Path, artifacts_dir: Path, work_dir: Path, **changes: Any) -> TrainConfig:
    """The tiny recipe as a `train()` configuration; `changes` override its fields."""
    return TrainConfig(
        data_dir=data_dir,
        artifacts_dir=artifacts_dir,
        work_dir=work_dir,
        **(TINY_RECIPE | changes),
    )


def tiny_train_arguments(**changes: Any) -> list[str]:
    """The tiny recipe (with `changes`) as `python -m training train` flags, named as
    training/cli.py names them: `--field-name`, or the field's own `flag`."""
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    arguments: list[str] = []
    for name, value in (TINY_RECIPE | changes).items():
        flag = fields[name].metadata.get("flag", "--" + name.replace("_", "-"))
        if isinstance(value, bool):  # argparse.BooleanOptionalAction: --x / --no-x
            arguments.append(flag if value else "--no-" + flag.removeprefix("--"))
        else:
            arguments += [flag, "none" if value is None else str(value)]
    return arguments
