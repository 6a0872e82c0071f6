"""Training with text-only corpora, from the command line: the tiny model learns a concept's
word from captions alone and writes it for a photo of that concept; the manifest says which
corpora trained it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from captioning.bundle import ArtifactError, load_bundle
from captioning.concepts import ConceptTable
from captioning.predictor import CaptionPredictor
from captioning.search_settings import SearchSettingsError
from captioning.types import EncodedImages, Evidence
from tests.support.fixtures import tiny_examples
from tests.support.wordnet import write_wordnet
from training.cli import main
from training.corpora import CORPORA
from training.fixture import tiny_train_arguments, write_text_corpora

pytestmark = pytest.mark.slow


def train_from_command_line(data: Path, base: Path, **changes) -> Path:
    artifacts = base / "artifacts"
    arguments = tiny_train_arguments(
        concepts=True, wordnet_dir=write_wordnet(base / "wordnet"), **changes
    )
    main(["train", "--data", str(data), "--artifacts", str(artifacts), "--work-dir",
          str(base / "work"), *arguments])  # fmt: skip
    return artifacts


@pytest.fixture(scope="module")
def with_text(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("with-text")
    corpora = write_text_corpora(base / "caption-text")
    return train_from_command_line(tiny_dataset[0], base, text_corpora=corpora, caption_styles=True)


@pytest.fixture(scope="module")
def without_text(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_from_command_line(tiny_dataset[0], tmp_path_factory.mktemp("without-text"))


def manifest(artifacts: Path) -> dict:
    return json.loads((artifacts / "manifest.json").read_text())


def test_the_manifest_records_the_corpora_that_trained_it(with_text, without_text) -> None:
    record = manifest(with_text)["text_corpora"]
    assert [c["name"] for c in record["corpora"]] == list(CORPORA)
    per_corpus = {c["name"]: c["captions"] for c in record["corpora"]}
    assert per_corpus == {"coco": 5, "conceptual": 5, "flickr30k": 25}
    assert all(c["source"] and c["files"] for c in record["corpora"])
    assert "text_corpora" not in manifest(without_text)
    # The local folder is not recorded: the corpora are, by name.
    assert "text_corpora" not in manifest(with_text)["training"]


def test_the_vocabulary_holds_the_words_only_the_text_taught(with_text, without_text) -> None:
    assert "zebra" in load_bundle(with_text).vocabulary
    assert "zebra" not in load_bundle(without_text).vocabulary
    concepts = load_bundle(with_text).concepts
    assert concepts is not None
    assert manifest(with_text)["decoder"]["entities"] == len(concepts.words)


def one_hot(table: ConceptTable, word: str, images: int) -> np.ndarray:
    concepts = np.zeros((images, len(table.words)), np.float32)
    concepts[:, table.words.index(word)] = 1.0
    return concepts


def test_a_concept_only_text_taught_is_written_as_its_own_word(with_text, without_text) -> None:
    predictor = CaptionPredictor.from_artifacts(with_text)
    table = predictor.concepts
    assert table is not None
    zebra = table.words.index("zebra")
    # Flickr8k's words alone: the zebra is decoded through a stand-in; with the text, as itself.
    assert table.stand_ins[zebra] == "zebra"
    assert load_bundle(without_text).concepts.stand_ins[zebra] != "zebra"
    images = [image for _, image, _ in tiny_examples()]
    photos = predictor.encode(predictor.preprocess(images))
    zebras = dataclasses.replace(photos, concepts=one_hot(table, "zebra", len(photos)))
    for result in predictor.generate(zebras):  # the service's search, which names the subject
        assert "zebra" in result.best.tokens and len(result.best.tokens) >= 3, result.best
    # The decoder alone, given only the concept (as the text taught it), writes the sentence.
    no_photo = EncodedImages(
        np.zeros_like(photos.grid), np.zeros_like(photos.pooled), zebras.concepts
    )
    plain_search = predictor.search.with_options(concepts=False)
    for result in predictor.generate(no_photo, plain_search):
        assert "zebra" in result.best.tokens and len(result.best.tokens) >= 3, result.best
    # No concept: the shapes' own captions, no zebra.
    shapes = EncodedImages(photos.grid, photos.pooled, np.zeros_like(zebras.concepts))
    assert not any("zebra" in r.best.tokens for r in predictor.generate(shapes, plain_search))


def test_each_corpus_is_a_style_the_captions_can_be_written_in(with_text, without_text) -> None:
    predictor = CaptionPredictor.from_artifacts(with_text)
    assert predictor.style_names == ("flickr8k", *CORPORA)
    assert "style_names" not in manifest(without_text)["decoder"]
    table = predictor.concepts
    assert table is not None
    images = [image for _, image, _ in tiny_examples()]
    photos = predictor.encode(predictor.preprocess(images))
    no_photo = EncodedImages(
        np.zeros_like(photos.grid),
        np.zeros_like(photos.pooled),
        one_hot(table, "zebra", len(photos)),
    )
    # COCO's style, as the text taught it (with no photo): the zebra's sentence.
    coco = predictor.search.with_options(concepts=False, style="coco")
    for result in predictor.generate(no_photo, coco):
        assert "zebra" in result.best.tokens and len(result.best.tokens) >= 3, result.best
    # Styles are the decoder's input: the same photos in another style get other ids.
    evidence = predictor.evidence(photos)
    flickr8k = predictor.entities(photos, predictor.styles(None, evidence))
    conceptual = predictor.entities(photos, predictor.styles("conceptual", evidence))
    assert flickr8k is not None and conceptual is not None
    assert not np.array_equal(flickr8k, conceptual)
    with pytest.raises(SearchSettingsError, match="style"):
        predictor.generate(photos, predictor.search.with_options(style="shakespeare"))
    plain = CaptionPredictor.from_artifacts(without_text)
    with pytest.raises(SearchSettingsError, match="caption styles"):
        plain.generate(photos, plain.search.with_options(style="coco"))


def test_a_manifest_that_names_other_styles_than_the_decoder_has_is_refused(
    with_text, tmp_path
) -> None:
    copy = tmp_path / "artifacts"
    shutil.copytree(with_text, copy)
    record = manifest(copy)
    record["decoder"]["style_names"] = ["flickr8k", "coco"]
    (copy / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match="caption styles"):
        CaptionPredictor.from_artifacts(copy)


def test_auto_writes_people_and_dogs_as_flickr8k_does_and_the_rest_as_coco(with_text) -> None:
    predictor = CaptionPredictor.from_artifacts(with_text)
    person, dog, cat = (Evidence(label, 0.9) for label in ("person", "dog", "cat"))
    styles = predictor.styles("auto", [(person,), (cat, dog), (cat,), ()])
    coco = predictor.style_names.index("coco")
    assert list(styles) == [0, 0, coco, coco]
