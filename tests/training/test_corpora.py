"""Text-only corpora: their readers, the concept a caption names, the vocabulary they grow,
and the batches that mix them with photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from captioning.concepts import ConceptTable
from captioning.text import PAD_ID, SPECIAL_TOKENS, Vocabulary, normalize_caption
from training import corpora as readers
from training.batches import CaptionBatches, TextCaptions, encode_groups
from training.corpora import CORPORA, ConceptReader, TextCorpus
from training.features import Features
from training.fixture import TINY_TEXT_CAPTIONS, write_text_corpora


def concept_table() -> ConceptTable:
    return ConceptTable(
        class_ids=("n1", "n2"),
        class_concepts=((0,), (1, 2)),
        words=("zebra", "hot dog", "sandwich"),
        wnids=("w0", "w1", "w2"),
        stand_ins=("animal", "food", "food"),
        plurals=("zebras", "hot dogs", "sandwiches"),
        stand_in_plurals=(None, None, None),
        synonyms=((), ("hotdog", "hotdogs"), ()),
    )


def test_every_corpus_format_reads_its_captions_grouped(tmp_path: Path) -> None:
    folder = write_text_corpora(tmp_path / "text")
    corpora = {corpus.name: corpus for corpus in readers.read_corpora(folder)}
    assert set(corpora) == set(CORPORA)
    expected = [normalize_caption(c) for c in TINY_TEXT_CAPTIONS]
    assert corpora["coco"].groups == [expected]  # one photo's five captions
    assert corpora["conceptual"].groups == [expected]  # consecutive captions, five a group
    # Flickr30k: line i of the five files is one photo: five copies of each caption here.
    assert corpora["flickr30k"].groups == [[caption] * 5 for caption in expected]
    assert corpora["flickr30k"].captions == 25


def test_a_missing_corpus_file_is_named(tmp_path: Path) -> None:
    folder = write_text_corpora(tmp_path / "text")
    (folder / "flickr30k_train.3.en.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"flickr30k_train\.3\.en\.gz"):
        readers.read_corpora(folder, ["coco", "flickr30k"])
    assert [c.name for c in readers.read_corpora(folder, ["coco"])] == ["coco"]


def test_corpus_names_are_checked() -> None:
    assert readers.parse_corpus_names("coco, flickr30k") == ("coco", "flickr30k")
    with pytest.raises(ValueError, match="unknown corpus"):
        readers.parse_corpus_names("coco,imagenet")
    with pytest.raises(ValueError, match="unknown corpus"):
        readers.parse_corpus_names(" , ")


def test_a_caption_names_its_first_concept_in_any_of_its_forms() -> None:
    read = ConceptReader(concept_table())
    assert read(normalize_caption("a zebra eats a hot dog")) == 1  # index + 1: the first one said
    assert read(normalize_caption("two hot dogs beside a zebra")) == 2  # two words, plural
    assert read(normalize_caption("a hotdog on a plate")) == 2  # a synonym
    assert read(normalize_caption("a sandwich")) == 3
    assert read(normalize_caption("a man on a bench")) == 0  # none


def test_the_corpora_add_their_frequent_words_only() -> None:
    flickr = [["a", "dog", "runs"]] * 5 + [["a", "rare", "cat"]]
    corpus = TextCorpus("coco", [[["a", "zebra", "grazes"]] * 3, [["an", "okapi"]]])
    plain = readers.build_vocabulary(flickr, [], min_count=5, corpus_min_count=3)
    assert plain == Vocabulary.build(flickr, 5)
    grown = readers.build_vocabulary(flickr, [corpus], min_count=5, corpus_min_count=3)
    assert {"zebra", "grazes"} <= set(grown.words)
    assert not {"okapi", "an", "rare"} & set(grown.words)  # fewer than 3 uses
    assert grown.words[: len(SPECIAL_TOKENS) + 1] == (*SPECIAL_TOKENS, "a")  # by frequency


def test_the_manifest_records_each_corpus_and_its_terms() -> None:
    corpus = TextCorpus("coco", [[["a", "zebra"]] * 5])
    record = readers.corpora_manifest([corpus], groups_per_epoch=10)
    assert record["captions"] == 5 and record["groups_per_epoch"] == 10
    (entry,) = record["corpora"]
    assert entry["name"] == "coco" and entry["captions"] == 5
    assert "CC BY 4.0" in entry["source"]


def test_batches_mix_photos_with_text_groups_that_have_no_features() -> None:
    vocabulary = Vocabulary((*SPECIAL_TOKENS, "a", "dog", "zebra"))
    images, regions, channels = 4, 3, 5
    rng = np.random.default_rng(0)
    features = Features(
        rng.normal(size=(images, regions, channels)).astype(np.float16) + 1,
        rng.normal(size=(images, channels)).astype(np.float32) + 1,
        [f"{i}.jpg" for i in range(images)],
        [],
    )
    captions = encode_groups([[["a", "dog"]]] * images, vocabulary, 2, 4)
    text = TextCaptions(
        encode_groups([[["a", "zebra"]]] * 6, vocabulary, 2, 4), np.full((6, 2), 7, np.int32)
    )
    batches = CaptionBatches(
        features,
        captions,
        batch_images=20,
        seed=0,
        entities=np.ones((images, 2), np.int32),
        text=text,
        text_per_epoch=3,
    )
    (grid, pooled, inputs, entities), targets = batches[0]
    assert len(batches) == 1 and len(grid) == images + 3  # every photo, 3 of the 6 groups
    is_text = entities[:, 0] == 7
    assert is_text.sum() == 3
    assert not grid[is_text].any() and not pooled[is_text].any()  # no photo
    assert grid[~is_text].all() and pooled[~is_text].all()
    zebra = vocabulary.id_of("zebra")
    assert (inputs[is_text, :, 2] == zebra).all() and (inputs[~is_text, :, 2] != zebra).all()
    assert targets.shape == (len(grid) * 2, inputs.shape[2])
    assert (targets[:, -1] == PAD_ID).all()


def test_words_mostly_used_as_verbs_name_no_concept() -> None:
    table = concept_table()
    read = ConceptReader(table, reads_as_noun=lambda word: word != "dog")
    # "hot dog" ends in "dog": neither it nor its plural counts, the synonym "hotdog" does.
    assert read(normalize_caption("two hot dogs and a hotdog")) == 2
    assert read(normalize_caption("a hot dog")) == 0
    assert read(normalize_caption("a zebra")) == 1


def test_photo_dropout_hides_photos_but_keeps_their_concepts_and_captions() -> None:
    vocabulary = Vocabulary((*SPECIAL_TOKENS, "a", "dog"))
    rng = np.random.default_rng(0)
    features = Features(
        rng.normal(size=(8, 3, 5)).astype(np.float16) + 2,
        rng.normal(size=(8, 5)).astype(np.float32) + 2,
        [f"{i}.jpg" for i in range(8)],
        [],
    )
    captions = encode_groups([[["a", "dog"]]] * 8, vocabulary, 2, 4)
    entities = np.arange(1, 9, dtype=np.int32)[:, None].repeat(2, axis=1)

    def first_batch(dropout: float):
        batches = CaptionBatches(
            features, captions, 8, seed=0, entities=entities, photo_dropout=dropout
        )
        return batches[0][0]

    grid, pooled, inputs, shown = first_batch(0.5)
    hidden = ~grid.any(axis=(1, 2))
    assert 0 < hidden.sum() < 8  # about half, drawn per photo
    assert not pooled[hidden].any() and pooled[~hidden].all()
    assert (shown == entities).all()
    assert (inputs == captions[:, :, : inputs.shape[2]]).all()
    assert first_batch(0.0)[0].all()  # none hidden
