"""WordNet 3.0 nouns from the plain-text database (Debian's `wordnet-base`), without NLTK.

Only what the concept table and the open-world evaluation need: each noun synset's lemmas and
its hypernyms. ImageNet names its classes by these synsets ("n" + the 8-digit offset).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
# "@" is a hypernym, "@i" an instance's class (a named thing's kind).
_HYPERNYM_POINTERS = ("@", "@i")
# The kinds of thing a photo's subject can be, to tell a word's senses apart: animal, plant,
# fungus, food, artifact, geological formation.
PHYSICAL_ENTITY, PERSON = "00001930", "00007846"
KINDS = frozenset({"00015388", "00017222", "12992868", "00021265", "00021939", "09287968"})


@dataclass(frozen=True)
class Synset:
    offset: str  # eight digits, as in data.noun
    lemmas: tuple[str, ...]  # lowercase, spaces for underscores, first lemma first
    hypernyms: tuple[str, ...]  # offsets

    @property
    def wnid(self) -> str:
        return "n" + self.offset


class WordNet:
    """Noun synsets by offset, read once from `data.noun`."""

    def __init__(
        self,
        synsets: dict[str, Synset],
        senses: dict[str, tuple[str, ...]],
        irregular_plurals: dict[str, str] | None = None,
        verbs: frozenset[str] = frozenset(),
    ) -> None:
        self.synsets = synsets
        self.senses = senses  # lemma -> its synsets' offsets, most common sense first
        self.irregular_plurals = irregular_plurals or {}  # singular -> plural ("mouse": "mice")
        self.verbs = verbs  # lemmas that are also verbs: their "-s" form may read as one
        self._kinds: dict[str, str | None] = {}
        self._things: dict[str, bool] = {}

    @classmethod
    def load(cls, directory: Path | str = DEFAULT_WORDNET_DIR) -> WordNet:
        path = Path(directory) / "data.noun"
        if not path.is_file():
            raise FileNotFoundError(
                f"WordNet 3.0 not found at {path}: install Debian's wordnet-base "
                "(apt-get install wordnet-base) or pass its folder"
            )
        synsets = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(" "):  # the licence header
                continue
            synset = parse_data_line(line)
            synsets[synset.offset] = synset
        senses = {}
        index = Path(directory) / "index.noun"
        for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith(" "):
                lemma, offsets = parse_index_line(line)
                senses[lemma] = offsets
        plurals = {}
        exceptions = Path(directory) / "noun.exc"
        if exceptions.is_file():
            for line in exceptions.read_text(encoding="utf-8", errors="replace").splitlines():
                forms = line.split()
                if len(forms) == 2:
                    plurals.setdefault(forms[1].replace("_", " "), forms[0].replace("_", " "))
        verb_index = Path(directory) / "index.verb"
        verbs = (
            frozenset(
                line.split(" ", 1)[0].replace("_", " ")
                for line in verb_index.read_text(encoding="utf-8", errors="replace").splitlines()
                if verb_index.is_file() and not line.startswith(" ")
            )
            if verb_index.is_file()
            else frozenset()
        )
        return cls(synsets, senses, plurals, verbs)

    def plural(self, lemma: str) -> str:
        """English plural of a noun lemma (its last word for a compound)."""
        if lemma in self.irregular_plurals:
            return self.irregular_plurals[lemma]
        words = lemma.split(" ")
        # "article of clothing" -> "articles of clothing"; otherwise the last word.
        position = words.index("of") - 1 if "of" in words[1:] else len(words) - 1
        head = words[position]
        words[position] = self.irregular_plurals.get(head) or _regular_plural(head)
        return " ".join(words)

    def synset(self, wnid: str) -> Synset:
        offset = wnid[1:] if wnid.startswith("n") else wnid
        try:
            return self.synsets[offset]
        except KeyError:
            raise KeyError(f"no WordNet noun synset {wnid}") from None

    def ancestors(self, wnid: str) -> Iterator[tuple[int, Synset]]:
        """The synset itself (distance 0), then every hypernym, nearest first, each once."""
        start = self.synset(wnid)
        seen, frontier, distance = {start.offset}, [start], 0
        while frontier:
            yield from ((distance, synset) for synset in frontier)
            distance += 1
            parents = []
            for synset in frontier:
                for offset in synset.hypernyms:
                    if offset not in seen and offset in self.synsets:
                        seen.add(offset)
                        parents.append(self.synsets[offset])
            frontier = parents

    def kind(self, offset: str) -> str | None:
        """Which of `KINDS` the synset is (None: none of them, such as people and places)."""
        if offset not in self._kinds:
            ancestors = [s.offset for _, s in self.ancestors("n" + offset)]
            self._kinds[offset] = next((a for a in ancestors if a in KINDS), None)
        return self._kinds[offset]

    def reads_as(self, lemma: str, wnid: str) -> bool:
        """Whether a reader takes `lemma` for a thing of the synset's kind: its most common
        sense among physical things other than people is of that kind ("cardigan" reads as a
        sweater, not the dog; "crane" as a machine, not the bird; "wood" as a material)."""
        offsets = self.senses.get(lemma.replace(" ", "_"), ())
        usual = next((o for o in offsets if self._is_thing(o)), None)
        return usual is not None and self.kind(usual) == self.kind(wnid.removeprefix("n"))

    def is_thing_word(self, lemma: str) -> bool:
        """Whether the lemma's most common noun sense is a physical thing, not a person."""
        offsets = self.senses.get(lemma.replace(" ", "_"), ())
        return bool(offsets) and self._is_thing(offsets[0])

    def _is_thing(self, offset: str) -> bool:
        if offset not in self._things:  # asked for every sense of every candidate word
            ancestors = {s.offset for _, s in self.ancestors("n" + offset)}
            self._things[offset] = PHYSICAL_ENTITY in ancestors and PERSON not in ancestors
        return self._things[offset]

    def is_a(self, wnid: str, ancestor_wnid: str) -> bool:
        target = self.synset(ancestor_wnid).offset
        return any(synset.offset == target for _, synset in self.ancestors(wnid))


def parse_data_line(line: str) -> Synset:
    """One line of data.noun: offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt
    (pointer_symbol offset pos source/target)* | gloss."""
    fields = line.split(" | ", 1)[0].split()
    offset, word_count = fields[0], int(fields[3], 16)
    words = fields[4 : 4 + 2 * word_count : 2]
    position = 4 + 2 * word_count
    pointer_count = int(fields[position])
    pointers = fields[position + 1 : position + 1 + 4 * pointer_count]
    hypernyms = tuple(
        pointers[i + 1]
        for i in range(0, len(pointers), 4)
        if pointers[i] in _HYPERNYM_POINTERS and pointers[i + 2] == "n"
    )
    return Synset(offset, tuple(_lemma_text(word) for word in words), hypernyms)


def parse_index_line(line: str) -> tuple[str, tuple[str, ...]]:
    """One line of index.noun: lemma pos synset_cnt p_cnt (ptr)* sense_cnt tagsense_cnt
    (offset)*, the offsets most common sense first; returns (lemma, offsets)."""
    fields = line.split()
    synset_count, pointer_count = int(fields[2]), int(fields[3])
    offsets = fields[4 + pointer_count + 2 :]
    return fields[0].lower(), tuple(offsets[:synset_count])


def _regular_plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


def _lemma_text(word: str) -> str:
    # Adjective markers such as "(a)" follow some lemmas in data files.
    word = word.split("(", 1)[0]
    return word.replace("_", " ").lower()
