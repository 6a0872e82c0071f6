"""Flickr8k loading in its two common layouts, with every problem counted and reported.

Original layout::

    ROOT/Flicker8k_Dataset/*.jpg
    ROOT/Flickr8k_text/Flickr8k.token.txt          IMAGE.jpg#N<TAB>caption
    ROOT/Flickr8k_text/Flickr_8k.{train,dev,test}Images.txt

Kaggle layout::

    ROOT/Images/*.jpg
    ROOT/captions.txt                               CSV with header "image,caption"

The Kaggle copy has no official split files; its images are split deterministically by name
hash in the official proportions (6000 train / 1000 dev / 1091 test of 8091).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from captioning.text import normalize_caption

logger = logging.getLogger(__name__)

ORIGINAL_IMAGES_DIR = "Flicker8k_Dataset"
ORIGINAL_TEXT_DIR = "Flickr8k_text"
ORIGINAL_TOKEN_FILE = "Flickr8k.token.txt"
ORIGINAL_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
KAGGLE_IMAGES_DIR = "Images"
KAGGLE_CAPTIONS_FILE = "captions.txt"
SPLITS = ("train", "dev", "test")
MAX_EXAMPLES_REPORTED = 5
# Training batches pad their captions to a multiple of this many steps, so that the compiled
# steps see few distinct shapes and trace few graphs.
LENGTH_BUCKET = 4


class DatasetError(RuntimeError):
    """The dataset folder cannot be used at all (wrong layout, missing caption file)."""


@dataclass
class DataReport:
    """Everything that was skipped while loading, with counts and a few examples each."""

    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, example: str) -> None:
        self.problems[kind].append(example)

    def count(self, kind: str) -> int:
        return len(self.problems.get(kind, []))

    def summary(self) -> list[str]:
        lines = []
        for kind, examples in sorted(self.problems.items()):
            shown = ", ".join(examples[:MAX_EXAMPLES_REPORTED])
            more = f" (+{len(examples) - MAX_EXAMPLES_REPORTED} more)" if len(examples) > 5 else ""
            lines.append(f"{kind}: {len(examples)} e.g. {shown}{more}")
        return lines

    def log(self) -> None:
        for line in self.summary():
            logger.warning("dataset: %s", line)


@dataclass
class Split:
    """Images of one split with their tokenised reference captions."""

    name: str
    image_paths: list[Path]
    captions: list[list[list[str]]]  # per image, per reference, tokens
    raw_captions: list[list[str]]  # per image, the original reference strings

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def image_ids(self) -> list[str]:
        return [p.name for p in self.image_paths]


@dataclass
class Flickr8k:
    root: Path
    layout: str
    splits: dict[str, Split]
    report: DataReport

    def split_sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}


def detect_layout(root: Path) -> str:
    if (root / ORIGINAL_TEXT_DIR / ORIGINAL_TOKEN_FILE).is_file():
        return "original"
    if (root / KAGGLE_CAPTIONS_FILE).is_file():
        return "kaggle"
    raise DatasetError(
        f"{root} is not a Flickr8k folder: expected {ORIGINAL_TEXT_DIR}/{ORIGINAL_TOKEN_FILE} "
        f"(original layout) or {KAGGLE_CAPTIONS_FILE} (Kaggle layout)"
    )


def load_flickr8k(root: Path | str, check_images: bool = True) -> Flickr8k:
    """Read captions and splits; report (never silently drop) anything unusable."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    layout = detect_layout(root)
    report = DataReport()
    if layout == "original":
        captions = _read_token_file(root / ORIGINAL_TEXT_DIR / ORIGINAL_TOKEN_FILE, report)
        split_names = _read_original_splits(root / ORIGINAL_TEXT_DIR, captions, report)
        image_dir = root / ORIGINAL_IMAGES_DIR
    else:
        captions = _read_kaggle_captions(root / KAGGLE_CAPTIONS_FILE, report)
        split_names = _hash_splits(captions)
        image_dir = root / KAGGLE_IMAGES_DIR
    splits = {
        name: _build_split(name, names, captions, image_dir, report, check_images)
        for name, names in split_names.items()
    }
    dataset = Flickr8k(root=root, layout=layout, splits=splits, report=report)
    logger.info("Flickr8k (%s layout) at %s: %s", layout, root, dataset.split_sizes())
    report.log()
    return dataset


def _read_token_file(path: Path, report: DataReport) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = defaultdict(list)
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        name, hash_sep, _ = key.partition("#")
        if not sep or not hash_sep or not name.lower().endswith(".jpg") or not caption.strip():
            report.add("malformed caption lines", f"line {line_no}: {line[:60]!r}")
            continue
        captions[name].append(caption.strip())
    return captions


def _read_kaggle_captions(path: Path, report: DataReport) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
            raise DatasetError(f"{path} must be a CSV whose header is 'image,caption'")
        for row_no, row in enumerate(reader, start=2):
            if len(row) < 2 or not row[0].strip() or not ",".join(row[1:]).strip():
                report.add("malformed caption lines", f"line {row_no}: {row!r:.60}")
                continue
            captions[row[0].strip()].append(",".join(row[1:]).strip())
    return captions


def _read_original_splits(
    text_dir: Path, captions: dict[str, list[str]], report: DataReport
) -> dict[str, list[str]]:
    splits = {}
    for name, file_name in ORIGINAL_SPLIT_FILES.items():
        path = text_dir / file_name
        if not path.is_file():
            report.add("missing split files", file_name)
            splits[name] = []
            continue
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        splits[name] = [n for n in names if n]
        for image_name in splits[name]:
            if image_name not in captions:
                report.add(f"{name} images without captions", image_name)
    return splits


def _hash_splits(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """Official proportions (6000 / 1000 / 1091 of 8091 images), by a stable hash of the name."""
    ordered = sorted(captions, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    train_end = round(len(ordered) * 6000 / 8091)
    dev_end = train_end + round(len(ordered) * 1000 / 8091)
    return {
        "train": ordered[:train_end],
        "dev": ordered[train_end:dev_end],
        "test": ordered[dev_end:],
    }


def _build_split(
    name: str,
    image_names: Iterable[str],
    captions: dict[str, list[str]],
    image_dir: Path,
    report: DataReport,
    check_images: bool,
) -> Split:
    paths, tokens, raw = [], [], []
    missing = []
    for image_name in image_names:
        references = captions.get(image_name)
        if not references:
            continue  # already reported while reading the split file
        path = image_dir / image_name
        if check_images and not path.is_file():
            missing.append(image_name)
            continue
        paths.append(path)
        raw.append(references)
        tokens.append([normalize_caption(c) for c in references])
    if missing:
        for image_name in missing:
            report.add(f"{name} images missing from {image_dir.name}/", image_name)
        if len(missing) == len(missing) + len(paths):
            logger.warning(
                "the %s split's %d images are all missing from %s: that split is withheld "
                "(Flickr8k's test images are held back on purpose); it cannot be used here",
                name,
                len(missing),
                image_dir,
            )
    return Split(name=name, image_paths=paths, captions=tokens, raw_captions=raw)
