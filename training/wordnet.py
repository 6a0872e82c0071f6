"""WordNet 3.0 nouns from the plain-text database (Debian's `wordnet-base`), without NLTK.

Only what the concept table and the open-world evaluation need: each noun synset's lemmas and
its hypernyms. ImageNet names its classes by these synsets ("n" + the 8-digit offset).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
# "@" is a hypernym, "@i" an instance's class (a named thing's kind).
_HYPERNYM_POINTERS = ("@", "@i")
# The kinds of thing a photo's subject can be, to tell a word's senses apart: animal, plant,
# fungus, food, artifact, geological formation.
PHYSICAL_ENTITY, PERSON = "00001930", "00007846"
# Fewer tags than this say nothing about which sense is usual ("tiger": a person once, the cat
# once; "whale": a big person once).
MIN_TAGGED = 3
KINDS = frozenset({"00015388", "00017222", "12992868", "00021265", "00021939", "09287968"})


@dataclass(frozen=True)
class Synset:
    offset: str  # eight digits, as in data.noun
    lemmas: tuple[str, ...]  # lowercase, spaces for underscores, first lemma first
    hypernyms: tuple[str, ...]  # offsets
    instance: bool = False  # a named individual ("Stephen Crane"), not a kind of thing
    proper: frozenset[str] = frozenset()  # lemmas written capitalised: names ("German", "Miami")

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
        counts: SenseCounts | None = None,
    ) -> None:
        self.synsets = synsets
        self.senses = senses  # lemma -> its synsets' offsets, most common sense first
        self.irregular_plurals = irregular_plurals or {}  # singular -> plural ("mouse": "mice")
        self.verbs = verbs  # lemmas that are also verbs: their "-s" form may read as one
        self.counts = counts or SenseCounts()
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
        counts = Path(directory) / "cntlist.rev"
        sense_counts = (
            SenseCounts.parse(counts.read_text(encoding="utf-8", errors="replace"))
            if counts.is_file()
            else SenseCounts()
        )
        return cls(synsets, senses, plurals, verbs, sense_counts)

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
        usual = next((o for o in offsets if self.is_thing(o)), None)
        return usual is not None and self.kind(usual) == self.kind(wnid.removeprefix("n"))

    def usual_sense(self, lemma: str) -> str | None:
        """The noun sense a reader takes the lemma in: the one tagged most often in WordNet's
        concordance (ties: a physical thing other than a person first). A sense tagged fewer
        than `MIN_TAGGED` times is no evidence (the order is then the lexicographers'): the
        first physical thing other than a person is taken, as `reads_as` reads words, so a
        "hot dog" is the sausage, not the show-off, and a "whale" or a "primate" (a person
        once each) the animal."""
        offsets = self.senses.get(lemma.replace(" ", "_"), ())
        if not offsets:
            return None
        text = lemma.replace("_", " ")
        counts = [self.counts.noun(text, position) for position in range(len(offsets))]
        if max(counts) >= MIN_TAGGED:
            top = [o for o, count in zip(offsets, counts, strict=True) if count == max(counts)]
        else:
            top = list(offsets)
        return next((o for o in top if self.is_thing(o)), top[0])

    def is_thing_word(self, lemma: str) -> bool:
        """Whether the lemma's most common noun sense is a physical thing, not a person."""
        offsets = self.senses.get(lemma.replace(" ", "_"), ())
        return bool(offsets) and self.is_thing(offsets[0])

    def is_thing(self, offset: str) -> bool:
        """Whether the synset is a physical thing other than a person."""
        if offset not in self._things:  # asked for every sense of every candidate word
            ancestors = {s.offset for _, s in self.ancestors("n" + offset)}
            self._things[offset] = PHYSICAL_ENTITY in ancestors and PERSON not in ancestors
        return self._things[offset]

    def is_a(self, wnid: str, ancestor_wnid: str) -> bool:
        target = self.synset(ancestor_wnid).offset
        return any(synset.offset == target for _, synset in self.ancestors(wnid))


@dataclass(frozen=True)
class SenseCounts:
    """How often each sense was tagged in WordNet's semantic concordance (`cntlist.rev`): the
    evidence behind the sense order, and whether a word is mostly a noun ("white" is mostly an
    adjective, "man" a noun). Empty when the file is missing: every count is then 0."""

    nouns: dict[str, tuple[int, ...]] = field(default_factory=dict)  # lemma -> count per sense
    others: dict[str, int] = field(default_factory=dict)  # lemma -> its verb/adj/adv total, most

    @classmethod
    def parse(cls, text: str) -> SenseCounts:
        """Lines `lemma%ss_type:...  sense_number  count`; ss_type 1 is a noun."""
        nouns: dict[str, dict[int, int]] = {}
        others: dict[tuple[str, str], int] = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) != 3 or "%" not in fields[0]:
                continue
            lemma, sense_key = fields[0].split("%", 1)
            lemma, pos = lemma.replace("_", " ").lower(), sense_key[:1]
            if pos == "1":
                nouns.setdefault(lemma, {})[int(fields[1])] = int(fields[2])
            else:  # 5, an adjective satellite, is an adjective
                key = (lemma, "3" if pos == "5" else pos)
                others[key] = others.get(key, 0) + int(fields[2])
        other_totals: dict[str, int] = {}
        for (lemma, _), count in others.items():
            other_totals[lemma] = max(other_totals.get(lemma, 0), count)
        return cls(
            {
                lemma: tuple(by_sense.get(n, 0) for n in range(1, max(by_sense) + 1))
                for lemma, by_sense in nouns.items()
            },
            other_totals,
        )

    def noun(self, lemma: str, sense: int) -> int:
        """The count of the lemma's noun sense number `sense` (0-based, WordNet's order)."""
        counts = self.nouns.get(lemma, ())
        return counts[sense] if sense < len(counts) else 0

    def reads_as_noun(self, lemma: str) -> bool:
        """Whether no other part of speech of the word is tagged more often than its nouns."""
        return sum(self.nouns.get(lemma, ())) >= self.others.get(lemma, 0)


def parse_data_line(line: str) -> Synset:
    """One line of data.noun: offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt
    (pointer_symbol offset pos source/target)* | gloss."""
    fields = line.split(" | ", 1)[0].split()
    offset, word_count = fields[0], int(fields[3], 16)
    words = fields[4 : 4 + 2 * word_count : 2]
    position = 4 + 2 * word_count
    pointer_count = int(fields[position])
    pointers = fields[position + 1 : position + 1 + 4 * pointer_count]
    kinds = [
        (pointers[i], pointers[i + 1])
        for i in range(0, len(pointers), 4)
        if pointers[i] in _HYPERNYM_POINTERS and pointers[i + 2] == "n"
    ]
    hypernyms = tuple(target for _, target in kinds)
    instance = bool(kinds) and all(symbol == "@i" for symbol, _ in kinds)
    proper = frozenset(_lemma_text(word) for word in words if word[:1].isupper())
    return Synset(offset, tuple(_lemma_text(word) for word in words), hypernyms, instance, proper)


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
