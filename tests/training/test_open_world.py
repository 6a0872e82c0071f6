"""`evaluate-open --labels`: phantom rates, grounded share and CIDEr-D on made-up photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from captioning.search_settings import SearchSettings
from captioning.types import Caption, CaptionResult, Evidence
from tests.support.wordnet import write_wordnet
from training.cli import _parser
from training.open_world import evaluate_open_world, read_labels
from training.wordnet import WordNet

# file: (person, dog, cat, reference, caption the predictor writes)
PHOTOS = {
    # the caption is the reference; the jacket is the dog's: grounded
    "n02099712_Labrador_retriever.JPEG": (
        0,
        1,
        0,
        "a dog in a red jacket",
        "a dog in a red jacket",
    ),
    # a shirt on a bird claims a wearer: phantom person
    "n01622779_great_grey_owl.JPEG": (0, 0, 0, "an owl on a branch", "a great grey owl in a shirt"),
    # the person is there, but the zebra is not named
    "n02391049_zebra.JPEG": (1, 0, 0, "a man feeding a zebra", "a man next to a horse"),
    # phantom dog; the hot dog is named
    "n07697537_hotdog.JPEG": (0, 0, 0, "a hot dog on a plate", "a dog looking at a hot dog"),
    # phantom person; the cat is named
    "n02123045_tabby.JPEG": (0, 0, 1, "a tabby cat asleep", "a man holding a cat"),
    # grounded
    "n02012849_crane.JPEG": (0, 0, 0, "a crane in a field", "two birds standing in a field"),
}
BOX = (4.0, 6.0, 40.0, 50.0)


class ScriptedPredictor:
    """Answers each photo's caption from `PHOTOS` (and a detector's box for the Labrador)."""

    model_id = "scripted-1"
    concepts = None
    concept_threshold = 0.4

    def read_image(self, path: Path | str) -> Image.Image:
        image = Image.open(path)
        image.load()
        return image

    def caption_images(
        self, images: list[Image.Image], settings: SearchSettings | None = None
    ) -> list[CaptionResult]:
        results = []
        for image in images:
            name = Path(image.filename).name
            text = PHOTOS[name][4]
            caption = Caption(text, tuple(text.split()), -1.0, -0.1)
            evidence = (Evidence("dog", 0.9, 1, BOX),) if name.startswith("n02099712") else ()
            results.append(CaptionResult(captions=(caption,), evidence=evidence))
        return results


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory) -> WordNet:
    return WordNet.load(write_wordnet(tmp_path_factory.mktemp("wordnet")))


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        Image.new("RGB", (64, 48), (120, 90, 60)).save(folder / name)
    labels = tmp_path / "labels.tsv"
    labels.write_text(
        "".join(f"{name}\t{p}\t{d}\t{c}\t{ref}\n" for name, (p, d, c, ref, _) in PHOTOS.items())
    )
    return folder, labels


def evaluate_labelled(photos: tuple[Path, Path], wordnet: WordNet, output: Path) -> dict:
    folder, labels = photos
    predictor = ScriptedPredictor()
    settings = SearchSettings(max_length=20)
    return evaluate_open_world(
        predictor,  # type: ignore[arg-type]
        folder,
        settings,
        output,
        wordnet,
        read_labels(labels),
    )


def test_grounding_scores_overall_and_by_group(
    photos: tuple[Path, Path], wordnet: WordNet, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    summary = evaluate_labelled(photos, wordnet, output)
    assert summary["subject_named"] == round(5 / 6, 4)
    assert summary["phantom"] == {
        "person": {"photos_without": 5, "mentioned": 2, "rate": 0.4},  # owl, tabby
        "dog": {"photos_without": 5, "mentioned": 1, "rate": 0.2},  # hot dog photo
        "cat": {"photos_without": 5, "mentioned": 0, "rate": 0.0},
    }
    assert summary["grounded"] == round(2 / 6, 4)  # the Labrador and the crane
    # the one photo of a thing with no one in it, and its dog "looking" at the hot dog
    assert summary["living_words"] == {"photos_without": 1, "mentioned": 1, "rate": 1.0}
    birds = summary["by_group"]["birds"]  # the owl and the crane
    assert (birds["grounded"], birds["phantom"]["person"]["rate"]) == (0.5, 0.5)
    assert summary["by_group"]["dogs"]["phantom"]["dog"]["rate"] is None  # no photo without

    rows = {r["image"]: r for r in map(json.loads, (output / "open_world.jsonl").open())}
    labrador = rows["n02099712_Labrador_retriever.JPEG"]
    assert labrador["phantoms"] == [] and labrador["grounded"]
    assert labrador["evidence"] == [{"label": "dog", "score": 0.9, "count": 1, "box": list(BOX)}]
    assert rows["n01622779_great_grey_owl.JPEG"]["mentions"] == [
        {"group": "person", "text": "shirt", "count": 1, "via": "worn"}
    ]
    # CIDEr-D: a caption equal to its reference scores best; the summary is the mean.
    ciders = [r["cider"] for r in rows.values()]
    assert labrador["cider"] == max(ciders) > 0
    assert summary["CIDEr-D"] == pytest.approx(sum(ciders) / len(ciders), abs=1e-3)


def test_the_report_shows_flags_references_and_boxes(
    photos: tuple[Path, Path], wordnet: WordNet, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    evaluate_labelled(photos, wordnet, output)
    report = (output / "open_world.html").read_text()
    assert report.count("<figure") == len(PHOTOS)
    assert "phantom person" in report and "reference: an owl on a branch" in report
    assert "given life: looking" in report
    assert '<svg viewBox="0 0 64 48"' in report  # the box, in the photo's own pixels
    assert '<rect x="4.0" y="6.0" width="36.0" height="44.0"/>' in report
    assert "evidence: dog 0.90 x1" in report
    # Failures first: the first card is not grounded.
    assert report.index('class="fail"') < report.index('class="pass"')


def test_without_labels_only_the_subject_is_scored(
    photos: tuple[Path, Path], wordnet: WordNet, tmp_path: Path
) -> None:
    folder, _ = photos
    summary = evaluate_open_world(
        ScriptedPredictor(),  # type: ignore[arg-type]
        folder,
        SearchSettings(max_length=20),
        tmp_path / "out",
        wordnet,
    )
    assert summary["subject_named"] == round(5 / 6, 4)
    assert "grounded" not in summary and "phantom" not in summary["by_group"]["dogs"]


def test_labels_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "labels.tsv"
    path.write_text("file\tperson\tdog\tcat\tcaption\nphoto.jpg\t1\t0\t0\ta man\n")
    assert read_labels(path)["photo.jpg"].person
    path.write_text("photo.jpg\tyes\t0\t0\ta man\n")
    with pytest.raises(ValueError, match=r"labels.tsv:1: expected file, person, dog, cat"):
        read_labels(path)


def test_the_command_takes_labels() -> None:
    args = _parser().parse_args(["evaluate-open", "photos", "--labels", "labels.tsv"])
    assert args.labels == Path("labels.tsv")
