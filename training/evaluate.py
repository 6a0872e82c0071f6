"""Evaluation of an artifacts bundle on a dataset split, and offline captioning of files.

Both go through `CaptionPredictor`, exactly as the service does: same decoding of the image
file, same preprocessing, same encoder runtime, same beam search.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from captioning.images import ImageError
from captioning.offline import BATCH_SIZE, caption_batch, caption_row, expand_paths, format_row
from captioning.predictor import CaptionPredictor
from captioning.search_settings import SearchSettings
from captioning.types import CaptionResult
from training.data import load_flickr8k
from training.metrics import score_captions

logger = logging.getLogger(__name__)

REPORT_IMAGES = 24


def caption_files(
    predictor: CaptionPredictor,
    paths: Sequence[Path],
    settings: SearchSettings,
    batch_size: int = BATCH_SIZE,
) -> Iterator[tuple[Path, CaptionResult | ImageError]]:
    """Caption image files in batches; an unreadable file yields its error, not an exception."""
    for start in tqdm(range(0, len(paths), batch_size), desc="captioning", unit="batch"):
        batch = paths[start : start + batch_size]
        yield from zip(batch, caption_batch(predictor, batch, settings), strict=True)


def write_caption_jsonl(
    predictor: CaptionPredictor, inputs: Sequence[Path], output: Path, settings: SearchSettings
) -> int:
    """One `captioning.offline.caption_row` per line, as `python -m bulk` writes."""
    paths = expand_paths(inputs)
    output.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    with output.open("w", encoding="utf-8") as handle:
        for path, result in caption_files(predictor, paths, settings):
            failures += isinstance(result, ImageError)
            handle.write(format_row(caption_row(str(path), result)) + "\n")
    logger.info("captioned %d files into %s (%d unreadable)", len(paths), output, failures)
    return failures


def evaluate_split(
    predictor: CaptionPredictor,
    data_dir: Path,
    split_name: str,
    settings: SearchSettings,
    output_dir: Path,
    limit: int | None = None,
) -> dict:
    """COCO metrics for one split, plus a JSON of captions and an HTML report with attention."""
    dataset = load_flickr8k(data_dir)
    split = dataset.splits[split_name]
    if not len(split):
        raise RuntimeError(f"the {split_name} split has no images in {data_dir}")
    paths, references = split.image_paths[:limit], split.raw_captions[:limit]
    started = time.perf_counter()
    results = [r for _, r in caption_files(predictor, paths, settings)]
    seconds = time.perf_counter() - started
    scored = [
        (ref, r.best.text)
        for ref, r in zip(references, results, strict=True)
        if not isinstance(r, ImageError)
    ]
    metrics = score_captions([s[0] for s in scored], [s[1] for s in scored], full=True)
    hypotheses = [s[1] for s in scored]
    summary = {
        "model": predictor.model_id,
        "split": split_name,
        "images": len(paths),
        "unreadable": len(paths) - len(scored),
        "beam_size": settings.beam_size,
        "length_penalty": settings.length_penalty,
        "no_repeat_ngram": settings.no_repeat_ngram,
        "min_word_probability": settings.min_word_probability,
        "encoder_runtime": predictor.encoder.name,
        "decoder_runtime": predictor.decoder_runtime,
        "metrics": metrics,
        "distinct_words": len({w for h in hypotheses for w in h.split()}),
        "distinct_captions": len(set(hypotheses)),
        "seconds": round(seconds, 1),
        "images_per_second": round(len(paths) / seconds, 1),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"metrics_{split_name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (output_dir / f"captions_{split_name}.jsonl").open("w") as handle:
        for path, refs, result in zip(paths, references, results, strict=True):
            caption = None if isinstance(result, ImageError) else result.best.text
            handle.write(
                json.dumps({"image": path.name, "caption": caption, "references": refs}) + "\n"
            )
    write_html_report(
        predictor,
        paths[:REPORT_IMAGES],
        references[:REPORT_IMAGES],
        output_dir / f"report_{split_name}.html",
        settings,
    )
    logger.info("%s: %s", split_name, json.dumps(summary))
    return summary


def _attention_overlay(image: Image.Image, weights: np.ndarray, size: int = 160) -> str:
    """A data-URI PNG of the photo with one word's attention grid blended over it in red."""
    photo = image.resize((size, size)).convert("RGB")
    heat = (weights / max(float(weights.max()), 1e-8) * 255).astype(np.uint8)
    mask = Image.fromarray(heat, "L").resize((size, size), Image.Resampling.BILINEAR)
    red = Image.new("RGB", (size, size), (255, 0, 0))
    blended = Image.composite(red, photo, mask.point(lambda v: int(v * 0.6)))
    buffer = io.BytesIO()
    blended.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_html_report(
    predictor: CaptionPredictor,
    paths: Sequence[Path],
    references: Sequence[Sequence[str]],
    output: Path,
    settings: SearchSettings,
) -> None:
    """Images with the caption the evaluation scored, the references, and per-word attention
    maps (none for a caption that names the subject plainly: no decoder wrote it)."""
    settings = settings.with_options(return_attention=True)
    rows = []
    for path, refs in zip(paths, references, strict=True):
        image = predictor.read_image(path)
        caption = predictor.caption_images([image], settings)[0].best
        maps = (
            "".join(
                f'<figure><img src="{_attention_overlay(image, weights)}"><figcaption>'
                f"{html.escape(word)}</figcaption></figure>"
                for word, weights in zip(caption.tokens, caption.attention, strict=True)
            )
            if caption.attention is not None
            else ""
        )
        refs_html = "".join(f"<li>{html.escape(r)}</li>" for r in refs)
        rows.append(
            f"<section><h2>{html.escape(path.name)}: {html.escape(caption.text)}</h2>"
            f"<ul>{refs_html}</ul><div class=maps>{maps}</div></section>"
        )
    output.write_text(
        "<!doctype html><meta charset=utf-8><title>Captioner report</title><style>"
        "body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:4px}"
        "figcaption{text-align:center}section{border-bottom:1px solid #ccc}</style>"
        f"<h1>Captioner: {html.escape(predictor.model_id)}</h1>{''.join(rows)}",
        encoding="utf-8",
    )
