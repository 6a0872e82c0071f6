"""Caption metrics with the standard COCO scorers (pycocoevalcap).

BLEU, ROUGE-L and CIDEr are pure Python. METEOR and the PTB tokenizer run Java: where `java` is
missing they are skipped, said so in the result, and captions are tokenised with the core's own
normaliser instead.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence

from captioning.text import normalize_caption

logger = logging.getLogger(__name__)


def java_available() -> bool:
    return shutil.which("java") is not None


def _tokenize(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], use_ptb: bool
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    if use_ptb:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenizer = PTBTokenizer()
        refs = tokenizer.tokenize(
            {i: [{"caption": r} for r in refs] for i, refs in enumerate(references)}
        )
        hyps = tokenizer.tokenize({i: [{"caption": h}] for i, h in enumerate(hypotheses)})
        return refs, hyps
    refs = {i: [" ".join(normalize_caption(r)) for r in rs] for i, rs in enumerate(references)}
    hyps = {i: [" ".join(normalize_caption(h))] for i, h in enumerate(hypotheses)}
    return refs, hyps


def score_captions(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[str],
    full: bool = True,
    per_image: bool = False,
    ptb: bool | None = None,
) -> dict:
    """COCO metrics of one hypothesis per image against its references.

    `full=False` computes only BLEU-1..4 and CIDEr on already-normalised text: the quick score
    used to select checkpoints during training. `per_image` adds each image's CIDEr
    ("CIDEr_per_image", a list) for paired comparisons (`training.compare`). `ptb` says
    whether to tokenise with the PTB tokenizer (default: when `full` and Java is there).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    if len(references) != len(hypotheses):
        raise ValueError("one hypothesis per image is needed")
    use_java = full and java_available()
    use_ptb = use_java if ptb is None else ptb
    refs, hyps = _tokenize(references, hypotheses, use_ptb=use_ptb)
    results: dict[str, float | str] = {}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    for n, value in enumerate(bleu, start=1):
        results[f"BLEU-{n}"] = float(value)
    cider, cider_per_image = Cider().compute_score(refs, hyps)
    results["CIDEr"] = float(cider)
    if per_image:
        results["CIDEr_per_image"] = [float(value) for value in cider_per_image]
    if full:
        from pycocoevalcap.rouge.rouge import Rouge

        results["ROUGE-L"] = float(Rouge().compute_score(refs, hyps)[0])
        if use_java:
            from pycocoevalcap.meteor.meteor import Meteor

            meteor = Meteor()
            try:
                results["METEOR"] = float(meteor.compute_score(refs, hyps)[0])
            finally:
                meteor.close() if hasattr(meteor, "close") else None
        else:
            logger.warning("java is not installed: METEOR skipped, PTB tokenizer replaced")
    if full or ptb is not None:
        results["tokenizer"] = "ptb" if use_ptb else "captioner-normalize"
    return results
