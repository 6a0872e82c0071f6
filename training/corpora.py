"""Text-only caption corpora: sentences about photos Flickr8k never shows, without the photos.

`python -m training train --text-corpora DIR` reads any of these from DIR (the layout of
`../shared/caption-text/`):

- "coco": `coco_captions_val2017.json.gz`, the COCO annotations JSON (5 captions per photo);
- "conceptual": `conceptual_captions_validation.tsv.gz`, `caption<TAB>url` (web alt text);
- "flickr30k": `flickr30k_train.{1..5}.en.gz`, line i of each file about the same photo.

The decoder learns their sentences with the photo absent (zero features) and the caption's own
concept as its input (`ConceptReader`): the concept says what the sentence is about, the corpus
how people say it (ViECap, Fei et al. 2023). At inference the concept comes from the encoder.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from captioning.concepts import ConceptTable
from captioning.text import SPECIAL_TOKENS, Vocabulary, normalize_caption

logger = logging.getLogger(__name__)

CAPTIONS_PER_GROUP = 5  # Flickr8k's references per photo; a group plays one photo's part


@dataclass(frozen=True)
class CorpusFormat:
    files: tuple[str, ...]
    source: str  # what it is, and its terms


CORPORA: dict[str, CorpusFormat] = {
    "coco": CorpusFormat(
        ("coco_captions_val2017.json.gz",),
        "COCO 2017 validation captions (Lin et al. 2014), CC BY 4.0",
    ),
    "conceptual": CorpusFormat(
        ("conceptual_captions_validation.tsv.gz",),
        "Conceptual Captions validation (Sharma et al. 2018), Google LLC, free with attribution",
    ),
    "flickr30k": CorpusFormat(
        tuple(f"flickr30k_train.{n}.en.gz" for n in range(1, 6)),
        "Flickr30k training captions (Young et al. 2014; Multi30k), research use",
    ),
}
DEFAULT_CORPORA = tuple(CORPORA)


@dataclass(frozen=True)
class TextCorpus:
    name: str
    groups: list[list[list[str]]]  # captions (as tokens) grouped per photo not shipped

    @property
    def captions(self) -> int:
        return sum(len(group) for group in self.groups)


def parse_corpus_names(text: str) -> tuple[str, ...]:
    """ "coco,flickr30k" -> ("coco", "flickr30k"); raises ValueError naming an unknown one."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in CORPORA]
    if unknown or not names:
        raise ValueError(f"unknown corpus {unknown or text!r}: choose from {', '.join(CORPORA)}")
    return names


def read_corpora(folder: Path, names: Sequence[str] = DEFAULT_CORPORA) -> list[TextCorpus]:
    """The named corpora from `folder`; raises FileNotFoundError naming a missing file."""
    readers = {"coco": _read_coco, "conceptual": _read_conceptual, "flickr30k": _read_flickr30k}
    corpora = []
    for name in names:
        paths = [folder / file for file in CORPORA[name].files]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"text corpus {name!r}: missing {', '.join(missing)}")
        groups = [
            [tokens for caption in group if (tokens := normalize_caption(caption))]
            for group in readers[name](paths)
        ]
        corpus = TextCorpus(name, [group for group in groups if group])
        logger.info("text corpus %s: %d captions", name, corpus.captions)
        corpora.append(corpus)
    return corpora


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as file:
        return [line.rstrip("\n") for line in file]


def _read_coco(paths: Sequence[Path]) -> Iterable[list[str]]:
    with gzip.open(paths[0], "rt", encoding="utf-8") as file:
        annotations = json.load(file)["annotations"]
    by_photo: dict[int, list[str]] = {}
    for annotation in annotations:
        by_photo.setdefault(int(annotation["image_id"]), []).append(str(annotation["caption"]))
    return by_photo.values()


def _read_conceptual(paths: Sequence[Path]) -> Iterable[list[str]]:
    # One caption per photo: consecutive captions share a group (and nothing else).
    captions = [line.split("\t")[0] for line in _lines(paths[0])]
    return [
        captions[start : start + CAPTIONS_PER_GROUP]
        for start in range(0, len(captions), CAPTIONS_PER_GROUP)
    ]


def _read_flickr30k(paths: Sequence[Path]) -> Iterable[list[str]]:
    files = [_lines(path) for path in paths]
    if len({len(lines) for lines in files}) != 1:
        raise ValueError("flickr30k: the five caption files differ in length")
    return [list(group) for group in zip(*files, strict=True)]


def corpora_manifest(corpora: Sequence[TextCorpus], groups_per_epoch: int) -> dict:
    """What the manifest records of the text that trained the decoder."""
    return {
        "corpora": [
            {
                "name": corpus.name,
                "captions": corpus.captions,
                "files": list(CORPORA[corpus.name].files),
                "source": CORPORA[corpus.name].source,
            }
            for corpus in corpora
        ],
        "captions": sum(corpus.captions for corpus in corpora),
        "groups_per_epoch": groups_per_epoch,
    }


def build_vocabulary(
    captions: Sequence[Sequence[str]],
    corpora: Sequence[TextCorpus],
    min_count: int,
    corpus_min_count: int,
) -> Vocabulary:
    """Flickr8k's words seen `min_count` times, and the words of the corpora and Flickr8k
    together seen `corpus_min_count` times; most frequent first (ties alphabetical). Without
    corpora this is `Vocabulary.build(captions, min_count)`."""
    counts = Counter(token for caption in captions for token in caption)
    text = Counter(
        token
        for corpus in corpora
        for group in corpus.groups
        for caption in group
        for token in caption
    )
    total = counts + text
    kept = [
        word
        for word in total
        if (counts[word] >= min_count or (text and total[word] >= corpus_min_count))
        and word not in SPECIAL_TOKENS
    ]
    return Vocabulary(SPECIAL_TOKENS + tuple(sorted(kept, key=lambda w: (-total[w], w))))


class ConceptReader:
    """The concept a caption is about: the first concept word it says ("a black honda
    motorcycle parked in front of a garage" -> motorcycle), as the concept's index + 1, or 0.

    A concept is said by its word, its plural or a synonym's ("bike"), one or more tokens;
    `reads_as_noun` drops words mostly used otherwise ("stands" is rarely a rack, "orange"
    mostly a colour), judged on the lemma's last word (WordNet's sense counts).
    """

    def __init__(
        self, table: ConceptTable, reads_as_noun: Callable[[str], bool] = lambda word: True
    ) -> None:
        self.forms: dict[tuple[str, ...], int] = {}
        for index, (word, plural, synonyms) in enumerate(
            zip(table.words, table.plurals, table.synonyms, strict=True)
        ):
            # `synonyms` holds each lemma and then its plural.
            lemmas = [(word, plural), *zip(synonyms[::2], synonyms[1::2], strict=True)]
            forms = [
                form
                for lemma, lemma_plural in lemmas
                if reads_as_noun(lemma.replace("-", " ").split()[-1])
                for form in (lemma, lemma_plural)
            ]
            for form in forms:
                # The first concept to claim a form keeps it (WordNet's order, nearest first).
                self.forms.setdefault(tuple(form.replace("-", " ").split()), index + 1)
        self.longest = max((len(form) for form in self.forms), default=1)

    def __call__(self, tokens: Sequence[str]) -> int:
        for start in range(len(tokens)):
            for size in range(min(self.longest, len(tokens) - start), 0, -1):
                found = self.forms.get(tuple(tokens[start : start + size]))
                if found:
                    return found
        return 0
