"""Open-world evaluation: does the caption name what the photo shows, and only that?

For photos named `nXXXXXXXX_label.ext` (an ImageNet class's WordNet 3.0 noun synset, as in
`../shared/openworld/imagenet-sample/`), a caption names the subject when it contains a
lemma of the class's synset or of one of its hypernyms, in the singular or the plural;
the words of generic synsets ("animal", "object", "device": `GENERIC_SYNSETS`) do not count.
Scores are reported overall and by group: dogs, birds, other animals, everything else.

With labels (`read_labels`: for each photo, whether a person, a dog, a cat is visible, and one
reference caption) it also measures grounding: a caption that mentions a person, a dog or a
cat (`training.mentions`) on a photo without one names a phantom; the phantom rate of a group
is the share of the photos without it whose caption mentions it. A caption is grounded when
it names the subject and no phantom. On photos of things (the last group) without a person, a
dog or a cat, a caption that says what only a living thing does or has (`LIVING_WORDS`: "a
violin is playing", "with a ball in its mouth") gives them a life they lack. CIDEr-D is
against the single reference (pycocoevalcap's CIDEr, which is CIDEr-D, document frequencies
from these references; PTB-tokenised where Java is, as `evaluate` scores): rough, with one
reference.
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

from PIL import Image, ImageOps

from captioning.images import ImageError
from captioning.predictor import CaptionPredictor
from captioning.search_settings import SearchSettings
from captioning.text import normalize_caption
from captioning.types import CaptionResult
from training.concepts import GENERIC_SYNSETS
from training.evaluate import caption_files, expand_paths
from training.mentions import CHECKED, LIVING_WORDS, Lexicon
from training.metrics import java_available, score_captions
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


@dataclass(frozen=True)
class Label:
    """What a person saw in one photo: whether a person, a dog, a cat is visible, and a
    one-sentence reference caption."""

    person: bool
    dog: bool
    cat: bool
    caption: str

    def shows(self, group: str) -> bool:
        return bool(getattr(self, group))


def read_labels(path: Path) -> dict[str, Label]:
    """`file<TAB>person<TAB>dog<TAB>cat[<TAB>caption]` lines (0 or 1 flags), by file name; an
    optional header line starting with `file` is skipped. Without a caption a photo can still
    train grounding's heads (`training.grounding`), but gives no reference to score against."""
    labels = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and line.split("\t", 1)[0] == "file"):
            continue
        fields = line.split("\t")
        if len(fields) not in (4, 5) or any(flag not in ("0", "1") for flag in fields[1:4]):
            raise ValueError(
                f"{path}:{number}: expected file, person, dog, cat (0 or 1) and a caption, "
                "separated by TABs"
            )
        name, person, dog, cat = fields[:4]
        caption = fields[4].strip() if len(fields) == 5 else ""
        labels[name] = Label(person == "1", dog == "1", cat == "1", caption)
    if not labels:
        raise ValueError(f"{path} has no labels")
    return labels


def evaluate_open_world(
    predictor: CaptionPredictor,
    folder: Path,
    settings: SearchSettings,
    output_dir: Path,
    wordnet: WordNet,
    labels: dict[str, Label] | None = None,
) -> dict:
    """Caption every class-named photo in `folder`, score it, write rows, summary and report;
    with `labels`, also the phantom rates, the grounded share and CIDEr-D."""
    paths = class_named_photos(folder)
    if labels is not None:
        _check_labels(labels, paths)
    rows = open_world_rows(predictor, paths, settings, wordnet, labels)
    return write_open_world(rows, predictor, settings, paths, output_dir)


def class_named_photos(folder: Path) -> list[Path]:
    paths = [p for p in expand_paths([folder]) if class_of(p) is not None]
    if not paths:
        raise FileNotFoundError(f"{folder} has no photos named nXXXXXXXX_label.ext")
    return paths


def open_world_rows(
    predictor: CaptionPredictor,
    paths: Sequence[Path],
    settings: SearchSettings,
    wordnet: WordNet,
    labels: dict[str, Label] | None = None,
) -> list[dict]:
    """One row per photo: its caption, tags, evidence, whether it names the subject, and
    with `labels` its mentions and phantoms."""
    judge, lexicon = Judge(wordnet), Lexicon(wordnet)
    return [
        _row(path, result, judge, lexicon, labels)
        for path, result in caption_files(predictor, paths, settings)
    ]


def write_open_world(
    rows: list[dict],
    predictor: CaptionPredictor,
    settings: SearchSettings,
    paths: Sequence[Path],
    output_dir: Path,
) -> dict:
    """Score the rows against their references, write rows, summary and report; returns the
    summary."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _score_references(rows)
    summary = _summary(rows, predictor, settings)
    if tokenizer is not None:
        summary["CIDEr-D_tokenizer"] = tokenizer
    with (output_dir / "open_world.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    (output_dir / "open_world_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_report(rows, summary, {p.name: p for p in paths}, output_dir / "open_world.html")
    logger.info("open world: %s", json.dumps(summary))
    return summary


def _check_labels(labels: dict[str, Label], paths: Sequence[Path]) -> None:
    names = {p.name for p in paths}
    uncaptioned = sorted(name for name in names & labels.keys() if not labels[name].caption)
    if uncaptioned:
        raise ValueError(f"no reference caption in the labels for {uncaptioned[:3]}: add one")
    unlabelled = sorted(names - labels.keys())
    if unlabelled:
        logger.warning(
            "%d photos have no label and are left out of the grounding scores, e.g. %s",
            len(unlabelled),
            unlabelled[:3],
        )
    if not names & labels.keys():
        raise ValueError("no photo in the folder has a label: are these the labels' photos?")
    missing = len(labels.keys() - names)
    if missing:
        logger.warning("%d labelled photos are not in the folder", missing)


def _row(
    path: Path,
    result: CaptionResult | ImageError,
    judge: Judge,
    lexicon: Lexicon,
    labels: dict[str, Label] | None,
) -> dict:
    """One photo's caption, tags, evidence, what it claims and, with a label, its flags."""
    wnid = class_of(path)
    assert wnid is not None
    row: dict = {"image": path.name, "class": wnid, "group": judge.group(wnid)}
    if isinstance(result, ImageError):
        row.update(caption=None, tags=[], named=False, error=str(result), evidence=[])
    else:
        row.update(
            caption=result.best.text,
            tags=[{"word": t.word, "probability": t.probability} for t in result.tags],
            named=judge.names_subject(result.best.text, wnid),
            evidence=[
                {"label": e.label, "score": e.score, "count": e.count, "box": e.box}
                for e in result.evidence
            ],
        )
    mentions = lexicon.mentions(row["caption"] or "")
    row["mentions"] = [m.to_json() for m in mentions]
    label = labels.get(path.name) if labels is not None else None
    if label is not None:
        mentioned = {m.group for m in mentions}
        phantoms = [g for g in CHECKED if g in mentioned and not label.shows(g)]
        row.update(
            labels={g: int(label.shows(g)) for g in CHECKED},
            reference=label.caption,
            phantoms=phantoms,
            grounded=row["named"] and not phantoms,
        )
        if row["group"] == OTHER_GROUP and not any(label.shows(g) for g in CHECKED):
            said = normalize_caption(row["caption"] or "")
            row["living_words"] = sorted(LIVING_WORDS.intersection(said))
    return row


def _score_references(rows: list[dict]) -> str | None:
    """Each labelled row's CIDEr-D against its one reference, the references of all of them
    giving the document frequencies, tokenised as `evaluate` does (PTB where Java is);
    returns the tokenizer's name (None: no labelled row)."""
    labelled = [r for r in rows if "reference" in r]
    if not labelled:
        return None
    scores = score_captions(
        [[r["reference"]] for r in labelled],
        [r["caption"] or "" for r in labelled],
        full=False,
        per_image=True,
        ptb=java_available(),
    )
    for row, score in zip(labelled, scores["CIDEr_per_image"], strict=True):
        row["cider"] = round(score, 4)
    return str(scores["tokenizer"])


def _grounding(rows: list[dict]) -> dict:
    """Phantom rates, grounded share and mean CIDEr-D of the labelled rows."""
    labelled = [r for r in rows if "reference" in r]
    if not labelled:
        return {}
    phantom = {}
    for group in CHECKED:
        without = [r for r in labelled if not r["labels"][group]]
        mentioned = sum(group in r["phantoms"] for r in without)
        phantom[group] = {
            "photos_without": len(without),
            "mentioned": mentioned,
            "rate": round(mentioned / len(without), 4) if without else None,
        }
    lifeless = [r for r in labelled if "living_words" in r]
    given_life = sum(bool(r["living_words"]) for r in lifeless)
    return {
        "labelled": len(labelled),
        "phantom": phantom,
        # photos of things with no person, dog or cat whose caption gives them life
        "living_words": {
            "photos_without": len(lifeless),
            "mentioned": given_life,
            "rate": round(given_life / len(lifeless), 4) if lifeless else None,
        },
        "grounded": round(sum(r["grounded"] for r in labelled) / len(labelled), 4),
        "CIDEr-D": round(sum(r["cider"] for r in labelled) / len(labelled), 4),
    }


def _summary(rows: list[dict], predictor: CaptionPredictor, settings: SearchSettings) -> dict:
    totals, named = (
        Counter(r["group"] for r in rows),
        Counter(r["group"] for r in rows if r["named"]),
    )
    return {
        "photos": len(rows),
        "subject_named": round(sum(named.values()) / len(rows), 4),
        **_grounding(rows),
        "by_group": {
            group: {
                "photos": totals[group],
                "subject_named": round(named[group] / totals[group], 4),
                **_grounding([r for r in rows if r["group"] == group]),
            }
            for group in [name for name, _ in GROUPS] + [OTHER_GROUP]
            if totals[group]
        },
        "with_tags": round(sum(1 for r in rows if r["tags"]) / len(rows), 4),
        "concepts": settings.concepts and predictor.concepts is not None,
        "concept_threshold": predictor.concept_threshold,
        "beam_size": settings.beam_size,
        "min_word_probability": settings.min_word_probability,
        "mean_words": round(sum(len((r["caption"] or "").split()) for r in rows) / len(rows), 2),
        "model": predictor.model_id,
    }


def _thumbnail(path: Path, size: int = 200) -> tuple[str, tuple[int, int]]:
    """A data-URI JPEG of the photo, and the photo's size (EXIF-oriented, as decoded)."""
    with Image.open(path) as image:
        image = (ImageOps.exif_transpose(image) or image).convert("RGB")
        photo_size = image.size
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(), photo_size


def _photo_html(path: Path, evidence: list[dict]) -> str:
    """The thumbnail, with the evidence's boxes drawn over it in photo coordinates."""
    uri, (width, height) = _thumbnail(path)
    boxes = "".join(
        f'<rect x="{x1}" y="{y1}" width="{x2 - x1}" height="{y2 - y1}"/>'
        f'<text x="{x1}" y="{y1}" dy="1em">{html.escape(e["label"])} {e["score"]:.2f}</text>'
        for e in evidence
        if e["box"]
        for x1, y1, x2, y2 in [e["box"]]
    )
    side = max(width, height)  # text and lines scale with the photo, not the thumbnail
    svg = (
        f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'style="font-size:{side / 16:.0f}px;stroke-width:{side / 150:.1f}">'
        f"{boxes}</svg>"
        if boxes
        else ""
    )
    return f'<div class=photo><img src="{uri}">{svg}</div>'


def _flags(row: dict) -> list[tuple[str, str]]:
    """(css class, text) badges: what is wrong with the caption first."""
    flags = [("bad", f"phantom {group}") for group in row.get("phantoms", [])]
    if row.get("living_words"):
        flags.append(("bad", "given life: " + " ".join(row["living_words"])))
    flags.append(("good", "subject named") if row["named"] else ("bad", "subject missed"))
    if "grounded" in row:
        flags.append(("good", "grounded") if row["grounded"] else ("bad", "not grounded"))
    return flags


def _card(row: dict, path: Path) -> str:
    tags = ", ".join(f"{t['word']} {t['probability']:.2f}" for t in row["tags"]) or "no tags"
    evidence = ", ".join(
        f"{e['label']} {e['score']:.2f}" + (f" x{e['count']}" if e["count"] is not None else "")
        for e in row["evidence"]
    )
    flags = _flags(row)
    failed = any(kind == "bad" for kind, _ in flags)
    keys = " ".join(["fail" if failed else "pass", *(text.replace(" ", "-") for _, text in flags)])
    lines = [
        f"<b>{html.escape(row['image'])}</b> <small>{html.escape(row['group'])}</small>",
        f"<q>{html.escape(row['caption'] or row.get('error', ''))}</q>",
    ]
    if "reference" in row:
        reference = html.escape(row["reference"])
        lines.append(f"<small>reference: {reference} (CIDEr-D {row['cider']:.2f})</small>")
    lines.append("".join(f"<span class={kind}>{html.escape(text)}</span>" for kind, text in flags))
    if row["mentions"]:
        said = ", ".join(
            m["text"] + ("" if m["via"] == "noun" else f" ({m['via']})") for m in row["mentions"]
        )
        lines.append(f"<small>mentions: {html.escape(said)}</small>")
    lines.append(f"<small>tags: {html.escape(tags)}</small>")
    if evidence:
        lines.append(f"<small>evidence: {html.escape(evidence)}</small>")
    return (
        f'<figure class="{"fail" if failed else "pass"}" data-keys="{keys}" '
        f'data-group="{html.escape(row["group"])}">{_photo_html(path, row["evidence"])}'
        f"<figcaption>{'<br>'.join(lines)}</figcaption></figure>"
    )


def _metrics_table(summary: dict) -> str:
    """Overall and per group: subject named and, with labels, grounding and CIDEr-D."""
    labelled = "grounded" in summary
    head = "<tr><th>photos<th>n<th>subject named"
    if labelled:
        head += "<th>grounded" + "".join(f"<th>phantom {g}" for g in CHECKED) + "<th>CIDEr-D"

    def cells(name: str, scores: dict) -> str:
        row = f"<tr><td>{html.escape(name)}<td>{scores['photos']}<td>{scores['subject_named']:.1%}"
        if labelled and "grounded" in scores:
            row += f"<td>{scores['grounded']:.1%}"
            for group in CHECKED:
                phantom = scores["phantom"][group]
                rate = "-" if phantom["rate"] is None else f"{phantom['rate']:.1%}"
                counts = f"{phantom['mentioned']}/{phantom['photos_without']}"
                row += f"<td>{rate} <small>({counts})</small>"
            row += f"<td>{scores['CIDEr-D']:.3f}"
        return row

    rows = [cells("all", summary)] + [cells(g, s) for g, s in summary["by_group"].items()]
    return f"<table>{head}{''.join(rows)}</table>"


_FILTER_SCRIPT = """<script>
function show() {
  const key = document.getElementById('key').value, group = document.getElementById('group').value;
  for (const figure of document.querySelectorAll('figure')) {
    const keep = (!key || figure.dataset.keys.split(' ').includes(key)) &&
      (!group || figure.dataset.group === group);
    figure.style.display = keep ? '' : 'none';
  }
}
</script>"""


def _filters(summary: dict) -> str:
    keys = ["fail", "subject-missed"]
    if "grounded" in summary:
        keys += ["not-grounded", *(f"phantom-{g}" for g in CHECKED)]
    options = "".join(f"<option value={k}>{k.replace('-', ' ')}</option>" for k in keys)
    groups = "".join(f"<option>{html.escape(g)}</option>" for g in summary["by_group"])
    return (
        f'<p>Show <select id=key onchange=show()><option value="">all</option>{options}</select> '
        f'in <select id=group onchange=show()><option value="">every group</option>{groups}'
        "</select> (failures first)</p>"
    )


def _write_report(rows: list[dict], summary: dict, paths: dict[str, Path], output: Path) -> None:
    """Every photo with its caption, tags, evidence and flags, failures first, grouped;
    thumbnails inline, boxes drawn over them; a filter by flag and group."""
    failed = [any(kind == "bad" for kind, _ in _flags(r)) for r in rows]
    order = sorted(
        range(len(rows)), key=lambda i: (not failed[i], rows[i]["group"], rows[i]["image"])
    )
    cards = "".join(_card(rows[i], paths[rows[i]["image"]]) for i in order)
    grounded = (
        f", {summary['grounded']:.1%} grounded (subject named, no phantom person, dog or cat)"
        if "grounded" in summary
        else ""
    )
    output.write_text(
        "<!doctype html><meta charset=utf-8><title>Captioner open-world report</title><style>"
        "body{font-family:sans-serif;margin:2em}figure{display:inline-block;width:220px;"
        "vertical-align:top;margin:6px;padding:4px;overflow-wrap:anywhere}.fail{background:#fde2e2}"
        ".pass{background:#e2f5e2}.photo{position:relative;line-height:0}"
        ".photo img{max-width:210px;max-height:210px}"
        ".photo svg{position:absolute;left:0;top:0;width:100%;height:100%;fill:none;stroke:#f0f}"
        ".photo text{fill:#f0f;stroke:none}span{border-radius:3px;padding:0 3px;margin-right:3px;"
        "font-size:small}span.bad{background:#c33;color:#fff}span.good{background:#393;"
        "color:#fff}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        f"</style>{_FILTER_SCRIPT}"
        f"<h1>Open world: {summary['subject_named']:.1%} of {summary['photos']} photos "
        f"name their subject{grounded}</h1>"
        f"<p>{html.escape(summary['model'])}</p>{_metrics_table(summary)}{_filters(summary)}"
        f"{cards}",
        encoding="utf-8",
    )
