"""How captions speak of a concept's word: how it is written alone ("a desk", "bread", "jeans"),
and which verbs take it as their object ("riding a horse", not "riding a sax").

WordNet does not say whether a noun is counted. Captions do: where the word heads a noun phrase,
"a"/"an" opens the phrase of a counted noun ("a desk"), and nothing opens that of a mass noun
("with bread", "some furniture"); a noun said almost only in the plural ("jeans", "pants") is
written so. Counted in caption text: Flickr8k's training captions and, when given, the text
corpora (`training.corpora`). A word the text says too rarely stays counted, as before.

The verbs are the frames the decoder writes before an object (`CHECKED_FRAMES`: "is riding a",
"is sitting on a"); a frame is attested for a word when some caption says it right before a noun
phrase the word heads. The service replaces a frame the text never says of the photo's concept (or
of a broader one) with "with", where the search wrote the concept into the decoder's sentence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from captioning.concepts import COUNTABLE, MASS, PLURAL
from captioning.phrases import ADJECTIVES, DETERMINERS, PHRASE_STARTS, VERB_STARTS

# A word is judged from this many noun phrases it heads with "a"/"an" or with nothing.
MIN_PHRASES = 10
# A mass noun: nothing opens at least this share of them ("on display" makes "display" 81%).
MASS_SHARE = 0.9
# Written in the plural: said this many times more often in the plural than in the singular.
PLURAL_RATIO = 50
# What may follow the noun that heads a phrase (or the caption ends): a preposition, a verb, "and".
_AFTER_HEAD = PHRASE_STARTS | VERB_STARTS | {"and"}
# What may come before a bare phrase: a preposition, a verb of having, the start.
_BEFORE_BARE = PHRASE_STARTS | VERB_STARTS | {"some", "has", "have", ""}
# Verbs (with their preposition) that say how a person or an animal deals with a thing, which the
# decoder writes before Flickr8k's nouns and the search can leave before another. Not "sitting
# in": its objects are mostly places ("in the mountains"), which "with" does not fit.
CHECKED_FRAMES = (
    *("riding", "riding on", "sitting on", "standing on", "laying on", "lying on"),
    *("jumping over", "jumping on", "jumping off", "climbing", "climbing on", "walking on"),
    *("holding", "carrying", "playing", "playing with", "eating", "wearing", "pushing"),
    *("pulling", "driving", "throwing", "catching", "kicking", "swinging on", "sliding down"),
)


def noun_forms(
    words: Sequence[str], plurals: Sequence[str], captions: Iterable[Sequence[str]]
) -> tuple[str, ...]:
    """Per word (with its plural): COUNTABLE, MASS or PLURAL, from tokenised `captions`.
    A word of several tokens ("ice cream") is counted as the whole phrase."""
    with_article: Counter[tuple[str, ...]] = Counter()
    bare: Counter[tuple[str, ...]] = Counter()
    heads: Counter[tuple[str, ...]] = Counter()
    for tokens, start, phrase in _noun_heads(captions, (*words, *plurals)):
        heads[phrase] += 1
        opener = _opener(tokens, start)
        opening = tokens[opener] if opener >= 0 else ""
        if opening in ("a", "an"):
            with_article[phrase] += 1
        elif opening in _BEFORE_BARE:
            bare[phrase] += 1
    forms = []
    for word, plural in zip(words, plurals, strict=True):
        singular, many = tuple(word.split(" ")), tuple(plural.split(" "))
        counted, uncounted = with_article[singular], bare[singular]
        if many != singular and heads[many] >= PLURAL_RATIO * max(heads[singular], 1):
            forms.append(PLURAL)
        elif counted + uncounted >= MIN_PHRASES and uncounted >= MASS_SHARE * (counted + uncounted):
            forms.append(MASS)
        else:
            forms.append(COUNTABLE)
    return tuple(forms)


def attested_frames(
    words: Sequence[str],
    plurals: Sequence[str],
    captions: Iterable[Sequence[str]],
    frames: Sequence[str] = CHECKED_FRAMES,
) -> tuple[tuple[str, ...], ...]:
    """Per word: the `frames` some caption says right before a noun phrase (a determiner or
    adjectives, then the word or its plural) that the word heads."""
    checked = {tuple(frame.split(" ")) for frame in frames}
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for tokens, start, phrase in _noun_heads(captions, (*words, *plurals)):
        opener = _opener(tokens, start)
        if opener < 0 or tokens[opener] not in DETERMINERS:
            continue
        for length in (1, 2):
            frame = tuple(tokens[max(opener - length, 0) : opener])
            if len(frame) == length and frame in checked:
                seen.add((frame, phrase))
    return tuple(
        tuple(
            frame
            for frame in frames
            if (tuple(frame.split(" ")), tuple(word.split(" "))) in seen
            or (tuple(frame.split(" ")), tuple(plural.split(" "))) in seen
        )
        for word, plural in zip(words, plurals, strict=True)
    )


def _noun_heads(
    captions: Iterable[Sequence[str]], words: Sequence[str]
) -> Iterator[tuple[Sequence[str], int, tuple[str, ...]]]:
    """(caption, start, phrase) wherever one of `words` (of one or more tokens) heads a noun
    phrase: what follows it is a preposition, a verb, "and" or the caption's end."""
    wanted = {tuple(word.split(" ")) for word in words}
    longest = max((len(phrase) for phrase in wanted), default=0)
    for tokens in captions:
        for start in range(len(tokens)):
            for size in range(1, longest + 1):
                phrase = tuple(tokens[start : start + size])
                if len(phrase) < size:
                    break
                ends = start + size == len(tokens)
                if phrase in wanted and (ends or tokens[start + size] in _AFTER_HEAD):
                    yield tokens, start, phrase


def _opener(tokens: Sequence[str], start: int) -> int:
    """The position of the word before the adjectives ("and" between them) in front of
    position `start`; -1 at the caption's start."""
    position = start - 1
    while position >= 0 and (tokens[position] in ADJECTIVES or tokens[position] == "and"):
        position -= 1
    return position


def caption_text(
    flickr8k: Path | None = None, corpora: Path | None = None
) -> tuple[list[list[str]], dict[str, int]]:
    """Tokenised captions to count noun forms in: Flickr8k's training captions (its folder)
    and the text corpora (a folder laid out as ../shared/caption-text); and how many each
    source gave, for the manifest."""
    from training.corpora import read_corpora
    from training.data import load_flickr8k

    captions: list[list[str]] = []
    counted_in: dict[str, int] = {}
    if flickr8k is not None:
        train = load_flickr8k(flickr8k).splits["train"]
        found = [caption for references in train.captions for caption in references]
        captions += found
        counted_in["flickr8k train"] = len(found)
    for corpus in read_corpora(corpora) if corpora is not None else ():
        captions += [caption for group in corpus.groups for caption in group]
        counted_in[corpus.name] = corpus.captions
    return captions, counted_in
