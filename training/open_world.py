"""Open-world evaluation: does the caption name what the photo shows?

For photos named `nXXXXXXXX_label.ext` (an ImageNet class's WordNet 3.0 noun synset, as in
`../shared/openworld/imagenet-sample/`), a caption names the subject when it contains a
lemma of the class's synset or of one of its hypernyms, in the singular or the plural;
the words of generic synsets ("animal", "object", "device": `GENERIC_SYNSETS`) do not count.
Scores are reported overall and by group: dogs, birds, other animals, everything else.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from captioning.images import ImageError
from captioning.predictor import CaptionPredictor
from captioning.search_settings import SearchSettings
from captioning.text import normalize_caption
from training.concepts import GENERIC_SYNSETS
from training.evaluate import caption_files, expand_paths
from training.wordnet import WordNet

logger = logging.getLogger(__name__)

GROUPS = (("dogs", "n02084071"), ("birds", "n01503061"), ("other animals", "n00015388"))
OTHER_GROUP = "everything else"
_CLASS_FILE = re.compile(r"^(n\d{8})_(.+)$")


@dataclass(frozen=True)
class Judge:
    """Which words name a class, and which group it belongs to."""

    wordnet: WordNet

    def subject_words(self, wnid: str) -> set[str]:
        return {
            lemma
            for _, synset in self.wordnet.ancestors(wnid)
            if synset.wnid not in GENERIC_SYNSETS
            for lemma in synset.lemmas
        }

    def group(self, wnid: str) -> str:
        return next((name for name, root in GROUPS if self.wordnet.is_a(wnid, root)), OTHER_GROUP)

    def names_subject(self, caption: str, wnid: str) -> bool:
        words = normalize_caption(caption)
        return any(_contains(words, lemma) for lemma in self.subject_words(wnid))


def _contains(words: Sequence[str], lemma: str) -> bool:
    """Whether the lemma, as words, occurs in the caption, its last word maybe plural."""
    phrase = normalize_caption(lemma)
    if not phrase:
        return False
    *head, last = phrase
    endings = {last, last + "s", last + "es"}
    if last.endswith("y"):
        endings.add(last[:-1] + "ies")
    size = len(phrase)
    return any(
        list(words[i : i + size - 1]) == head and words[i + size - 1] in endings
        for i in range(len(words) - size + 1)
    )


def class_of(path: Path) -> str | None:
    match = _CLASS_FILE.match(path.stem)
    return match.group(1) if match else None


def evaluate_open_world(
    predictor: CaptionPredictor,
    folder: Path,
    settings: SearchSettings,
    output_dir: Path,
    wordnet: WordNet,
) -> dict:
    """Caption every class-named photo in `folder`, score it, write rows, summary and report."""
    judge = Judge(wordnet)
    paths = [p for p in expand_paths([folder]) if class_of(p) is not None]
    if not paths:
        raise FileNotFoundError(f"{folder} has no photos named nXXXXXXXX_label.ext")
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, result in caption_files(predictor, paths, settings):
        wnid = class_of(path)
        assert wnid is not None
        row = {"image": path.name, "class": wnid, "group": judge.group(wnid)}
        if isinstance(result, ImageError):
            row.update(caption=None, tags=[], named=False, error=str(result))
        else:
            row.update(
                caption=result.best.text,
                tags=[{"word": t.word, "probability": t.probability} for t in result.tags],
                named=judge.names_subject(result.best.text, wnid),
            )
        rows.append(row)
    summary = _summary(rows, predictor, settings)
    with (output_dir / "open_world.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    (output_dir / "open_world_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_report(rows, summary, {p.name: p for p in paths}, output_dir / "open_world.html")
    logger.info("open world: %s", json.dumps(summary))
    return summary


def _summary(rows: list[dict], predictor: CaptionPredictor, settings: SearchSettings) -> dict:
    totals, named = (
        Counter(r["group"] for r in rows),
        Counter(r["group"] for r in rows if r["named"]),
    )
    return {
        "photos": len(rows),
        "subject_named": round(sum(named.values()) / len(rows), 4),
        "by_group": {
            group: {
                "photos": totals[group],
                "subject_named": round(named[group] / totals[group], 4),
            }
            for group in [name for name, _ in GROUPS] + [OTHER_GROUP]
            if totals[group]
        },
        "with_tags": round(sum(1 for r in rows if r["tags"]) / len(rows), 4),
        "concepts": settings.concepts and predictor.namer is not None,
        "concept_threshold": predictor.concept_threshold,
        "beam_size": settings.beam_size,
        "model": predictor.model_id,
    }


def _thumbnail(path: Path, size: int = 160) -> str:
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _write_report(rows: list[dict], summary: dict, paths: dict[str, Path], output: Path) -> None:
    """Every photo with its caption and tags, misses first, grouped; thumbnails inline."""
    groups = "".join(
        f"<li>{html.escape(g)}: {s['subject_named']:.1%} of {s['photos']}</li>"
        for g, s in summary["by_group"].items()
    )
    cards = []
    for row in sorted(rows, key=lambda r: (r["named"], r["group"], r["image"])):
        tags = ", ".join(f"{t['word']} {t['probability']:.2f}" for t in row["tags"])
        mark = "named" if row["named"] else "missed"
        cards.append(
            f'<figure class={mark}><img src="{_thumbnail(paths[row["image"]])}">'
            f"<figcaption><b>{html.escape(row['image'])}</b><br>"
            f"{html.escape(row['caption'] or row.get('error', ''))}<br>"
            f"<i>{html.escape(tags)}</i></figcaption></figure>"
        )
    output.write_text(
        "<!doctype html><meta charset=utf-8><title>Captioner open-world report</title><style>"
        "body{font-family:sans-serif;margin:2em}figure{display:inline-block;width:200px;"
        "vertical-align:top;margin:6px;padding:4px}.missed{background:#fde2e2}"
        ".named{background:#e2f5e2}img{max-width:190px}</style>"
        f"<h1>Open world: {summary['subject_named']:.1%} of {summary['photos']} photos "
        f"name their subject</h1><ul>{groups}</ul>{''.join(cards)}",
        encoding="utf-8",
    )
