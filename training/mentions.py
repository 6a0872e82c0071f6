"""Which words of a caption claim a person, a dog or a cat, and how many: one lexicon, read
from WordNet, for measuring captions (`training.open_world`) and for grounding them.

A noun claims a group when the sense a reader takes it in is one of the group's synsets. That
sense (`WordNet.usual_sense`) is the one tagged most often in WordNet's concordance; where no
sense is tagged 3 times, the first physical thing other than a person, as the concept table
reads words: a "hot dog" is food, a "whale" or a "primate" an animal, a "boxer" a dog.

- person: person.n.01 and its kinds (man, girl, surfer, rider, ...) and "people", its plural;
  not a name (a lemma WordNet capitalises: "German", "Santa Claus", "Black and Tan") nor a
  word tagged more often as another part of speech ("white", "blond", "professional");
- dog: dog.n.01 and its kinds (puppy, terrier, husky, ...): wolves, foxes and hyenas are other
  canines;
- cat: cat.n.01 itself ("cat"), the domestic cat and its kinds (tabby, tomcat, ...), kitten;
  not the big cats.

WordNet's phrases are read whole: a "German shepherd" is a dog, a "big cat" not a cat, "granny
smith" an apple. A person word just before an animal's name modifies it ("baby elephant"). A
person is also claimed by
- he, she, his, her, him, himself, herself, unless they refer to an animal, the nearest one
  before them ("a bird with a stick in his mouth");
- clothing (and footwear, glasses) said to be worn: "in a yellow shirt", "wearing a hat". Its
  wearer is the nearest person, animal or thing before: a dog or a cat may wear a coat, a
  thing is in it ("a hair slide in a hat"), but "a finch in a yellow shirt" claims a person;
- crowd, couple, audience, team, family, unless "of ..." follows ("a couple of dogs").

A living thing is claimed, without saying which, by what only a living thing does or has
(`LIVING_WORDS`: "running", "playing", "looking", "its mouth"): said of a violin or a glove,
they are false whatever else the caption says.

How many: a plural claims two or more, a number or count word before the noun its number
("two dogs", "a group of people": `COUNT_WORDS`). A caption's claim for a group adds up its
nouns ("two men and a woman": 3); pronouns and clothing only say that there is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from captioning.claims import ALTERNATIVES
from training.wordnet import DEFAULT_WORDNET_DIR, MIN_TAGGED, WordNet

PERSON, DOG, CAT = "person", "dog", "cat"
CHECKED = (PERSON, DOG, CAT)
ANY = "*"  # a claim any checked group's evidence can support ("two" of whatever it is)
# Word classes that only claim a person in context: clothing, other animals, other things.
WORN, ANIMAL, THING = "worn", "animal", "thing"
# A claim that a person's, a dog's, a cat's or another animal's evidence meets.
LIVING = ALTERNATIVES.join((PERSON, DOG, CAT, ANIMAL))

# group -> (synset offset, whether its hyponyms count too)
ROOTS: dict[str, tuple[tuple[str, bool], ...]] = {
    PERSON: (("00007846", True), ("07942152", False)),  # person; people
    DOG: (("02084071", True),),  # dog, domestic dog
    CAT: (("02121620", False), ("02121808", True), ("02122948", False)),  # cat; house cat; kitten
    # clothing; footwear (WordNet also files it under covering); spectacles, glasses
    WORN: (("03051540", True), ("03381126", True), ("04272054", True)),
}
ANIMAL_SYNSET = "00015388"
PLURAL_SYNSETS = frozenset({"07942152"})  # "people" names several persons

PRONOUNS = frozenset({"he", "she", "his", "her", "hers", "him", "himself", "herself"})
# The number a word says, or the least number a vague one claims: before the noun ("two
# dogs") or, for the nouns among them, through "of" ("a group of people", "a pair of dogs").
COUNT_WORDS: dict[str, int] = {
    **{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7},
    **{"eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "dozen": 12},
    **{"both": 2, "few": 2, "several": 3, "many": 3},
    **{"couple": 2, "pair": 2, "team": 2, "family": 2, "lots": 3, "group": 3, "crowd": 3},
    **{"bunch": 3, "herd": 3, "pack": 3, "flock": 3, "litter": 3},
}
COUNT_NOUNS = frozenset(
    {"couple", "pair", "team", "family", "lots", "group", "crowd"}
    | {"bunch", "herd", "pack", "flock", "litter"}
)
# Groups of people when nothing else is named ("a crowd watches"; not "a crowd of birds").
COLLECTIVES: dict[str, int] = {"crowd": 3, "couple": 2, "audience": 3, "team": 2, "family": 2}
# Person nouns of captions whose most frequent WordNet sense is something else ("climber": a
# plant; "diver": a bird; "adult", "male": animals too). In photo captions they name people.
CAPTION_PERSONS = frozenset(
    {"adult", "male", "female", "jockey", "pirate", "diver", "climber", "fireman", "groom"}
    | {"teen", "newborn", "santa"}
)
# Words whose commonest WordNet sense is an animal but that captions use otherwise ("does a
# trick", "a stunt", "a cricket match", "a giant", "a three wheeler", "a poster", "teal").
CAPTION_NOT_ANIMALS = frozenset(
    {"does", "doe", "stunt", "stunts", "hind", "cricket", "giant", "wheeler", "poster"}
    | {"posters", "teal", "bug", "young", "human"}
)
WEAR_WORDS = frozenset({"in", "wearing", "wears", "wear", "wore", "dressed"})


def words(text: str) -> frozenset[str]:
    """The words of a whitespace-separated list."""
    return frozenset(text.split())


# What captions say only a living thing does or has: Flickr8k's verbs of people and dogs at
# play, and parts of a face and hands ("with a ball in its mouth", "in its hand"). Not the
# postures that things take too (standing, sitting, lying, hanging), what machines and water
# do (flying, racing, floating, splashing), nor forms that name things ("a watch", "a ride").
LIVING_WORDS = words(
    """run runs running ran jump jumps jumping jumped leap leaps leaping play plays playing
    played riding rode walk walks walking swim swims swimming swam climb climbs climbing
    chase chases chasing catch catches catching caught carry carries carrying hold holds
    holding eat eats eating bite bites biting chew chews chewing lick licks licking sniff
    sniffs sniffing fetch fetches fetching dig digs digging bark barks barking look looks
    looking watching smile smiles smiling laugh laughs laughing pose poses posing dance
    dances dancing sing sings singing throw throws throwing kick kicks kicking pull pulls
    pulling push pushes pushing perform performs performing wear wears wearing wade wades
    wading crawl crawls crawling hug hugs hugging kiss kisses kissing drinking sleep sleeps
    sleeping skiing surfing skateboarding mouth mouths tongue teeth paw paws hand hands"""
)
# Words that end the phrase a count word or a wear word governs.
PHRASE_BREAKS = frozenset(
    {
        *("is", "are", "was", "were", "on", "with", "at", "by", "near", "next", "to", "from"),
        *("under", "over", "behind", "through", "into", "onto", "while", "as", "beside"),
        *("for", "that", "who", "which", "where", "holding", "playing", "standing", "sitting"),
    }
)
_PLURAL_ENDINGS = (
    ("s", ""),
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
)
_MAX_PHRASE = 4  # longest WordNet phrase looked up ("great white shark", "hen of the woods")
_WEARERS = (PERSON, DOG, CAT, ANIMAL, THING)
_LOOK_BACK = 5  # words between a wear or count word and its noun, at most


@dataclass(frozen=True)
class Mention:
    """Words of a caption that claim a person, a dog or a cat."""

    group: str  # PERSON, DOG or CAT
    text: str  # the words, as written
    start: int  # word positions in `caption_words(caption)`
    end: int
    count: int  # how many it claims at least: 1, 2 for a plural, the count word's number
    via: str  # "noun", "pronoun", "worn" (clothing said to be worn) or "collective"

    def to_json(self) -> dict:
        return {"group": self.group, "text": self.text, "count": self.count, "via": self.via}


@dataclass(frozen=True)
class _Unit:
    """One word or WordNet phrase of a caption, and what it is."""

    start: int
    end: int
    lemma: str | None
    plural: bool
    kind: str | None  # PERSON, DOG, CAT, WORN, ANIMAL, THING, "pronoun" or None


def caption_words(caption: str) -> list[str]:
    """Lowercase words; "'s" stays a word of its own, so that "man's dog" is two nouns."""
    text = re.sub(r"'s\b", " s", caption.lower().replace("-", " "))
    return re.findall(r"[a-z]+", text)


class Lexicon:
    """The module docstring's rules over one WordNet."""

    def __init__(self, wordnet: WordNet) -> None:
        self.wordnet = wordnet
        self._singular = {
            plural: singular for singular, plural in wordnet.irregular_plurals.items()
        }
        self._kinds: dict[str, str | None] = {}

    @classmethod
    def load(cls, directory: Path | str = DEFAULT_WORDNET_DIR) -> Lexicon:
        return cls(WordNet.load(directory))

    # Words on their own

    def lemma_of(self, phrase: str) -> tuple[str, bool] | None:
        """The WordNet noun a phrase writes, and whether it is written in the plural."""
        *head, last = phrase.split(" ")
        irregular = self._singular.get(last)
        forms = ([irregular] if irregular else []) + self._singulars(last)
        singulars = [lemma for f in forms if self._is_lemma(lemma := " ".join([*head, f]))]
        if not self._is_lemma(phrase):
            return (singulars[0], True) if singulars else None
        if singulars:
            # A lemma that is also a plural ("men": a work force, "weeds": mourning clothes,
            # "dive": divas) is read as the plural when its singular is tagged more often,
            # and noun.exc lists it or its own senses are barely tagged ("glasses" stays).
            best = max(singulars, key=self._tagged)
            listed = irregular is not None and best == singulars[0]
            if self._tagged(best) > self._tagged(phrase) and (
                listed or self._tagged(phrase) < MIN_TAGGED
            ):
                return best, True
        return phrase, False

    def _is_lemma(self, lemma: str) -> bool:
        return lemma.replace(" ", "_") in self.wordnet.senses

    def _tagged(self, lemma: str) -> int:
        return sum(self.wordnet.counts.nouns.get(lemma, ()))

    @staticmethod
    def _singulars(word: str) -> list[str]:
        """WordNet's own rules for regular plurals (morphy's), "-men" included: "women"."""
        if len(word) < 4 or word.endswith("ss"):
            return []  # "is", "his", "grass"
        return [
            word[: -len(plural)] + singular
            for plural, singular in _PLURAL_ENDINGS
            if word.endswith(plural)
        ]

    def kind(self, lemma: str) -> str | None:
        """PERSON, DOG, CAT, WORN, ANIMAL, THING or None: what the lemma names in its usual
        sense."""
        if lemma not in self._kinds:
            self._kinds[lemma] = self._kind(lemma)
        return self._kinds[lemma]

    def _kind(self, lemma: str) -> str | None:
        if lemma in CAPTION_PERSONS:
            return PERSON
        wordnet = self.wordnet
        offset = wordnet.usual_sense(lemma)
        if offset is None or wordnet.synsets[offset].instance:
            return None
        ancestors = {synset.offset for _, synset in wordnet.ancestors("n" + offset)}
        group = next(
            (
                group
                for group, roots in ROOTS.items()
                if any(offset == root or (kinds and root in ancestors) for root, kinds in roots)
            ),
            None,
        )
        if group in (PERSON, WORN) and not self._reads_as_noun(lemma):
            return None  # the words that describe people also name them: "a white", "a blond"
        if group == PERSON and lemma in wordnet.synsets[offset].proper:
            return None  # a capitalised person word names a people or a person: "German"
        if group is None and ANIMAL_SYNSET in ancestors:
            return ANIMAL
        if group is None and wordnet.is_thing(offset):
            return THING
        return group

    def _reads_as_noun(self, lemma: str) -> bool:
        """Not mostly another part of speech in WordNet's concordance, nor a verb's "-ed" or
        "-ing" form that no one tagged as a noun ("chased": the pursued, in WordNet)."""
        counts = self.wordnet.counts
        if not counts.reads_as_noun(lemma):
            return False
        if sum(counts.nouns.get(lemma, ())) == 0 and lemma.endswith(("ed", "ing")):
            stem = lemma[:-2] if lemma.endswith("ed") else lemma[:-3]
            if {stem, stem + "e", stem[:-1]} & self.wordnet.verbs:
                return False
        return True

    def word_groups(self, words: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """A vocabulary's words (or phrases) by what they claim on their own: person, dog,
        cat, worn (clothing: a person when said to be worn), pronoun, count."""
        groups: dict[str, list[str]] = {g: [] for g in (*CHECKED, WORN, "pronoun", "count")}
        for word in words:
            if word in PRONOUNS:
                groups["pronoun"].append(word)
            if word in COUNT_WORDS:
                groups["count"].append(word)
            found = self.lemma_of(word)
            kind = self.kind(found[0]) if found else None
            if kind in groups:
                groups[kind].append(word)
            elif word in COLLECTIVES:
                groups[PERSON].append(word)
        return {group: tuple(sorted(found)) for group, found in groups.items()}

    def claims(self, words: Iterable[str]) -> list[dict]:
        """What evidence each word needs before a caption may say it, as grounding.json's
        `claims`: a person, a dog or a cat (its nouns, and for a person also pronouns and
        worn clothing), another animal ("bird", "horse"), any living thing (`LIVING_WORDS`),
        two or more of one (plurals, collectives), or two or more of any (count words: "two",
        "group")."""
        needs: dict[tuple[str, int], set[str]] = {}
        for word in words:
            for label, count in self._needs(word):
                needs.setdefault((label, count), set()).add(word)
        return [
            {"label": label, "count": count, "words": sorted(found)}
            for (label, count), found in sorted(needs.items())
        ]

    def _needs(self, word: str) -> list[tuple[str, int]]:
        needs = [(LIVING, 1)] if word in LIVING_WORDS else []
        if word in PRONOUNS:
            needs.append((PERSON, 1))
        if COUNT_WORDS.get(word, 1) >= 2:
            needs.append((ANY, 2))
        found = self.lemma_of(word)
        kind = self.kind(found[0]) if found else None
        if kind == WORN:
            needs.append((PERSON, 1))
        elif kind == ANIMAL and self._names_an_animal(word, found):
            needs.append((ANIMAL, 1))
        elif kind in CHECKED:
            several = bool(found and found[1]) or found[0] in self._plural_lemmas()
            needs.append((kind, 2 if several else 1))  # evidence counts 1 or 2+
        elif word in COLLECTIVES:
            needs.append((PERSON, min(COLLECTIVES[word], 2)))  # evidence counts 1 or 2+
        return needs

    def _names_an_animal(self, word: str, found: tuple[str, bool] | None) -> bool:
        """An animal noun as captions use it: not a verb's form ("flies") nor a caption word
        for something else (`CAPTION_NOT_ANIMALS`)."""
        if found is None or word in CAPTION_NOT_ANIMALS or found[0] in CAPTION_NOT_ANIMALS:
            return False
        surface_is_noun = word == found[0] or self.wordnet.counts.reads_as_noun(word)
        return self._reads_as_noun(found[0]) and surface_is_noun

    def _plural_lemmas(self) -> set[str]:
        """Lemmas that name several by themselves ("people")."""
        return {
            lemma.replace("_", " ")
            for offset in PLURAL_SYNSETS
            if offset in self.wordnet.synsets
            for lemma in self.wordnet.synsets[offset].lemmas
        }

    def not_counted(self, words: Iterable[str]) -> dict[str, str]:
        """Words with some sense of a person, a dog or a cat that are not counted, and why."""
        reasons = {}
        for word in words:
            found = self.lemma_of(word)
            if found is None or self.kind(found[0]) in (*CHECKED, WORN):
                continue
            lemma = found[0]
            if not any(map(self._group_of_sense, self.wordnet.senses[lemma.replace(" ", "_")])):
                continue
            usual = self.wordnet.usual_sense(lemma)
            assert usual is not None
            if not self._reads_as_noun(lemma):
                reasons[word] = "mostly not a noun"
            elif self.wordnet.synsets[usual].instance or (
                lemma in self.wordnet.synsets[usual].proper
            ):
                reasons[word] = "a name"
            else:
                lemmas = self.wordnet.synsets[usual].lemmas
                reasons[word] = f"usually '{', '.join(lemmas[:2])}'"
        return reasons

    def _group_of_sense(self, offset: str) -> str | None:
        ancestors = {synset.offset for _, synset in self.wordnet.ancestors("n" + offset)}
        return next(
            (
                group
                for group in CHECKED
                for root, kinds in ROOTS[group]
                if offset == root or (kinds and root in ancestors)
            ),
            None,
        )

    # Words in a caption

    def _units(self, words: list[str]) -> list[_Unit]:
        """The caption's words, WordNet's phrases read whole, longest first."""
        units, position = [], 0
        while position < len(words):
            for size in range(min(_MAX_PHRASE, len(words) - position), 0, -1):
                phrase = " ".join(words[position : position + size])
                if size == 1 and phrase in PRONOUNS:
                    units.append(_Unit(position, position + 1, None, False, "pronoun"))
                    break
                # A phrase is a noun's: "small white" (a butterfly) is two adjectives here.
                if size > 1 and not self.wordnet.counts.reads_as_noun(words[position + size - 1]):
                    continue
                found = self.lemma_of(phrase)
                if found is None and size > 1:  # "lady-slipper", "hen-of-the-woods"
                    found = self.lemma_of(phrase.replace(" ", "-"))
                if found is not None:
                    lemma, plural = found
                    units.append(_Unit(position, position + size, lemma, plural, self.kind(lemma)))
                    break
            else:
                units.append(_Unit(position, position + 1, None, False, None))
            position = units[-1].end
        return units

    def mentions(self, caption: str) -> list[Mention]:
        """Every claim of a person, a dog or a cat in the caption, in order."""
        words = caption_words(caption)
        units = self._units(words)
        found = []
        for index, unit in enumerate(units):
            text = " ".join(words[unit.start : unit.end])
            following = units[index + 1] if index + 1 < len(units) else None
            if unit.kind in CHECKED:
                if unit.kind == PERSON and following and following.kind in (ANIMAL, DOG, CAT):
                    continue  # "baby elephant", "mother bird": a modifier
                number = self._number_before(words, units, index)
                count = 2 if unit.plural or self._plural_synset(unit) else 1
                found.append(
                    Mention(unit.kind, text, unit.start, unit.end, number or count, "noun")
                )
            elif text in COLLECTIVES and (following is None or words[following.start] != "of"):
                found.append(
                    Mention(PERSON, text, unit.start, unit.end, COLLECTIVES[text], "collective")
                )
            elif unit.kind == "pronoun":
                referent = _nearest_before(units, index, (PERSON, DOG, CAT, ANIMAL))
                if referent is None or referent.kind == PERSON:
                    found.append(Mention(PERSON, text, unit.start, unit.end, 1, "pronoun"))
            elif unit.kind == WORN:
                wear = self._wear_word_before(words, units, index)
                # The wearer: a thing is not one ("a hair slide in a hat" is inside it).
                wearer = None if wear is None else _nearest_before(units, wear, _WEARERS)
                if wear is not None and (wearer is None or wearer.kind in (PERSON, ANIMAL)):
                    found.append(Mention(PERSON, text, unit.start, unit.end, 1, "worn"))
        return found

    def _plural_synset(self, unit: _Unit) -> bool:
        assert unit.lemma is not None
        return self.wordnet.usual_sense(unit.lemma) in PLURAL_SYNSETS

    def _number_before(self, words: list[str], units: list[_Unit], index: int) -> int | None:
        """The number said of the noun: "two dogs", "a couple of boys", "three small cats"."""
        for back in range(index - 1, max(index - _LOOK_BACK, 0) - 1, -1):
            unit = units[back]
            word = words[unit.start] if unit.end - unit.start == 1 else None
            if word in COUNT_WORDS:
                of = unit.end < len(words) and words[unit.end] == "of"
                # "a crowd watches a dog": a count noun counts only what it is "of".
                return COUNT_WORDS[word] if of or word not in COUNT_NOUNS else None
            if word in PHRASE_BREAKS or word == "and" or unit.kind is not None:
                return None
        return None

    def _wear_word_before(self, words: list[str], units: list[_Unit], index: int) -> int | None:
        """The unit index of "in"/"wearing" governing a garment: "in a red shirt and blue
        jeans"; None when the garment is not said to be worn ("a shirt on a line")."""
        since_garment = 0
        for back in range(index - 1, -1, -1):
            unit = units[back]
            word = words[unit.start] if unit.end - unit.start == 1 else None
            if word in WEAR_WORDS:
                return back
            since_garment = 0 if unit.kind == WORN else since_garment + 1
            if word in PHRASE_BREAKS or unit.kind not in (None, WORN):
                return None
            if since_garment >= _LOOK_BACK:
                return None
        return None

    def claimed(self, caption: str) -> dict[str, int]:
        """How many persons, dogs and cats the caption claims at least (0: none)."""
        mentions = self.mentions(caption)
        claims = {}
        for group in CHECKED:
            mine = [m for m in mentions if m.group == group]
            counted = sum(m.count for m in mine if m.via in ("noun", "collective"))
            claims[group] = max(counted, 1) if mine else 0
        return claims


def _nearest_before(units: list[_Unit], index: int, kinds: tuple[str, ...]) -> _Unit | None:
    """The nearest unit of these kinds before units[index]: what a pronoun refers to, or who
    wears a garment."""
    return next((u for u in reversed(units[:index]) if u.kind in kinds), None)
