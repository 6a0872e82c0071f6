"""Caption text: normalisation, the vocabulary, and its safe on-disk form (`tokenizer.p`)."""

from __future__ import annotations

import io
import pickle
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PAD_TOKEN = "<pad>"
START_TOKEN = "<start>"
END_TOKEN = "<end>"
UNKNOWN_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, START_TOKEN, END_TOKEN, UNKNOWN_TOKEN)
PAD_ID, START_ID, END_ID, UNKNOWN_ID = range(4)

TOKENIZER_FORMAT = "captioner-vocabulary/1"

_NON_LETTERS = re.compile(r"[^a-z0-9\s]+")
_HAS_DIGIT = re.compile(r"\d")


def normalize_caption(text: str) -> list[str]:
    """Lowercase, strip punctuation and drop tokens containing digits.

    One-letter words ("a") are kept on purpose: the classic tutorials drop them and then
    never produce the most frequent word of English captions.
    """
    # Hyphens and apostrophes join words ("t-shirt", "dog's"); removing them keeps one token.
    cleaned = _NON_LETTERS.sub("", text.lower().replace("-", " "))
    return [token for token in cleaned.split() if not _HAS_DIGIT.search(token)]


@dataclass(frozen=True)
class Vocabulary:
    """Bidirectional word <-> id mapping; ids 0-3 are the special tokens."""

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with the special tokens {SPECIAL_TOKENS}")
        if len(set(self.words)) != len(self.words):
            raise ValueError("vocabulary has duplicate words")
        object.__setattr__(self, "_index", {word: i for i, word in enumerate(self.words)})

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]], min_count: int = 5) -> Vocabulary:
        """Words seen at least `min_count` times, most frequent first (ties alphabetical)."""
        counts = Counter(token for caption in captions for token in caption)
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(SPECIAL_TOKENS + tuple(w for w in kept if w not in SPECIAL_TOKENS))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index  # type: ignore[attr-defined]

    def id_of(self, word: str) -> int:
        return self._index.get(word, UNKNOWN_ID)  # type: ignore[attr-defined]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids framed by <start> and <end>."""
        return [START_ID, *(self.id_of(t) for t in tokens), END_ID]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first <end>, skipping <start> and <pad>."""
        words = []
        for i in ids:
            i = int(i)
            if i == END_ID:
                break
            if i in (PAD_ID, START_ID):
                continue
            words.append(self.words[i])
        return words

    # --- tokenizer.p: plain data only -------------------------------------------------------
    def to_plain(self) -> dict:
        return {"format": TOKENIZER_FORMAT, "words": list(self.words)}

    @classmethod
    def from_plain(cls, data: object) -> Vocabulary:
        if not isinstance(data, dict) or data.get("format") != TOKENIZER_FORMAT:
            raise ValueError(f"not a Captioner vocabulary (expected format {TOKENIZER_FORMAT!r})")
        words = data.get("words")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError("vocabulary 'words' must be a list of strings")
        return cls(tuple(words))

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self.to_plain(), protocol=4))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls.from_plain(safe_unpickle(path.read_bytes()))


class _PlainDataUnpickler(pickle.Unpickler):
    """Refuses every global, so a pickle can only rebuild dicts, lists, strings and numbers."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: tokenizer.p may hold plain data only"
        )


def safe_unpickle(data: bytes) -> object:
    """Unpickle plain data (dict, list, tuple, str, int, float, bool, None) and nothing else."""
    return _PlainDataUnpickler(io.BytesIO(data)).load()
