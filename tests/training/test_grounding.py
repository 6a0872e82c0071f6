"""Fitting the evidence heads: labels from captions, the logistic regression, thresholds, and
`add-grounding` on the tiny fixture model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from captioning.bundle import GROUNDING, MANIFEST, load_bundle
from captioning.claims import Claim
from captioning.grounding import ClassGroups, EvidenceHeads, Head, Normaliser
from captioning.predictor import CaptionPredictor
from tests.support.wordnet import write_wordnet
from training.cli import main as cli_main
from training.fixture import tiny_examples
from training.grounding import (
    DEFAULT_HEADS,
    MIN_DEV_POSITIVES,
    EncodedPhotos,
    HeadSpec,
    TrainingSet,
    choose_threshold,
    fit_heads,
    fit_logistic,
    fit_temperature,
    label_from_captions,
    rates,
    read_labels_tsv,
    setting_claims,
    stratified_folds,
)
from training.mentions import Lexicon


@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wordnet(tmp_path_factory.mktemp("wordnet"))


def test_labels_are_shares_of_the_captions(wordnet_dir: Path) -> None:
    """Read as the open-world evaluation reads claims (training.mentions)."""
    labels = label_from_captions(
        [
            ["a man and his dog", "a boy with a dog", "two dogs", "a dog", "a grass field"],
            ["a cat sleeps", "a kitten", "a cat jumps in the air", "a cat", "a finch in a shirt"],
        ],
        Lexicon.load(wordnet_dir),
    )
    np.testing.assert_allclose(labels.mentioned["person"], [0.4, 0.2])
    np.testing.assert_allclose(labels.mentioned["dog"], [0.8, 0.0])
    np.testing.assert_allclose(labels.several["dog"], [0.2, 0.0])
    np.testing.assert_allclose(labels.mentioned["cat"], [0.0, 0.8])
    assert labels.present("dog").tolist() == [True, False]
    assert labels.present("person", 0.0).tolist() == [True, True]
    assert labels.many("dog", 0.1).tolist() == [True, False]
    assert labels.mentioned["grass"][0] == pytest.approx(0.2)
    # A moment one caption catches: any caption that says it labels the photo.
    assert labels.mentioned["air"].tolist() == [0.0, 1.0]


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    true_w = np.array([2.0, -1.0, 0.0, 0.5, 0.0])
    p = 1 / (1 + np.exp(-(x @ true_w - 0.5)))
    y = (rng.uniform(size=n) < p).astype(float)
    return x, y, true_w


def test_logistic_regression_reaches_the_optimum() -> None:
    x, y, true_w = synthetic(4000)
    l2 = 0.01
    w, b = fit_logistic(x, y, l2)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    # The regularised loss's gradient vanishes at the optimum.
    np.testing.assert_allclose(x.T @ (p - y) / len(y) + l2 * w, 0, atol=1e-6)
    assert abs(np.mean(p - y)) < 1e-6  # the bias is not penalised
    # Nearly unpenalised, it recovers the weights the labels were drawn with.
    w, b = fit_logistic(x, y, 1e-5)
    np.testing.assert_allclose(w, true_w, atol=0.2)
    assert b == pytest.approx(-0.5, abs=0.15)


def test_sample_weights_count_as_repeated_photos() -> None:
    x, y, _ = synthetic(300, seed=1)
    weights = np.where(np.arange(300) < 100, 3.0, 1.0)
    repeated = np.concatenate([np.repeat(np.arange(100), 3), np.arange(100, 300)])
    w1, b1 = fit_logistic(x, y, 0.05, weights)
    w2, b2 = fit_logistic(x[repeated], y[repeated], 0.05)
    np.testing.assert_allclose(w1, w2, atol=1e-6)
    assert b1 == pytest.approx(b2, abs=1e-6)


def test_soft_labels_and_strong_penalty() -> None:
    x, _, _ = synthetic(500, seed=2)
    w, b = fit_logistic(x, np.full(500, 0.25), 10.0)
    np.testing.assert_allclose(w, 0, atol=1e-3)
    assert 1 / (1 + np.exp(-b)) == pytest.approx(0.25, abs=1e-4)


def test_threshold_keeps_the_recall() -> None:
    scores = np.linspace(0, 1, 200)
    positives = np.arange(200) >= 100  # scores 0.50..1.0
    threshold = choose_threshold(scores, positives, 0.9)
    kept = rates(scores, positives, threshold)
    assert kept["recall"] >= 0.9 and kept["recall"] < 0.92
    assert kept["false_positive_rate"] == 0.0 and kept["precision"] == 1.0
    few = np.zeros(200, bool)
    few[: MIN_DEV_POSITIVES - 1] = True
    assert choose_threshold(scores, few, 0.9) == 0.5


def test_best_f1_threshold() -> None:
    # 40 positives at 0.8, 40 negatives at 0.6, 40 positives at 0.4, 200 negatives at 0.2:
    # 0.8 -> F1 0.67; 0.6 -> 0.57; 0.4 -> 0.8; everything -> 0.4.
    scores = np.repeat([0.8, 0.6, 0.4, 0.2], [40, 40, 40, 200])
    positives = np.repeat([True, False, True, False], [40, 40, 40, 200])
    assert choose_threshold(scores, positives, None) == pytest.approx(0.4)


def test_folds_are_stratified() -> None:
    labels = np.array([1] * 10 + [0] * 40)
    folds = stratified_folds(labels, 5)
    for fold in range(5):
        assert (labels[folds == fold] == 1).sum() == 2
        assert (folds == fold).sum() == 10


def test_temperature_is_fitted_on_the_groups() -> None:
    rng = np.random.default_rng(3)
    n, classes = 400, 10
    present = rng.uniform(size=n) < 0.5
    logits = rng.normal(size=(n, classes))
    # Photos with the thing spread their mass over classes 0-2; sharper softmax helps.
    logits[present, :3] += 1.5
    temperature = fit_temperature(logits, {"dog": (0, 1, 2)}, {"dog": present.astype(float)})
    assert temperature < 1.0


def test_labels_tsv(tmp_path) -> None:
    path = tmp_path / "labels.tsv"
    path.write_text("a.jpg\t1\t0\t0\ta man\nb.jpg\t0\t1\t1\ta dog and a cat\n\n")
    labelled = read_labels_tsv(path)
    assert [p.name for p in labelled.paths] == ["a.jpg", "b.jpg"]
    assert labelled.paths[0].parent == tmp_path
    assert labelled.targets["person"].tolist() == [1.0, 0.0]
    assert np.isnan(labelled.targets["person>=2"][0]) and labelled.targets["person>=2"][1] == 0
    # A setting is there when the reference caption says it.
    assert labelled.targets["snow"].tolist() == [0.0, 0.0]
    path.write_text("a.jpg\t1\t0\t0\ta man skiing in deep snow\nb.jpg\t0\t1\t0\ta dog\n")
    assert read_labels_tsv(path).targets["snow"].tolist() == [1.0, 0.0]
    path.write_text("a.jpg\tyes\t0\t0\n")
    with pytest.raises(ValueError, match="0 or 1"):
        read_labels_tsv(path)


def synthetic_set(n: int, seed: int) -> TrainingSet:
    """Pooled features where dimension 0 shows a person, 1 two or more; class 0 is a dog."""
    rng = np.random.default_rng(seed)
    person = rng.uniform(size=n) < 0.5
    several = person & (rng.uniform(size=n) < 0.5)
    dog = rng.uniform(size=n) < 0.3
    pooled = rng.normal(size=(n, 8)).astype(np.float32)
    pooled[:, 0] += 4 * person
    pooled[:, 1] += 4 * several
    logits = rng.normal(size=(n, 6)).astype(np.float32)
    logits[:, 0] += 4 * dog
    targets = {
        "person": person.astype(float),
        "person>=2": several.astype(float),
        "dog": dog.astype(float),
        "dog>=2": np.zeros(n),  # never: skipped
        "cat": np.zeros(n),
    }
    return TrainingSet(EncodedPhotos(pooled, logits), targets, np.ones(n))


def test_fit_heads_learns_and_skips_what_it_cannot() -> None:
    train, dev = synthetic_set(600, 4), synthetic_set(300, 5)
    groups = ClassGroups(6, 1.0, {"dog": (0,)})
    heads, dev_rates = fit_heads(train, dev, DEFAULT_HEADS, groups, 0.1, {"data": "synthetic"})
    assert heads.columns == ("person", "dog", "person>=2")
    assert heads.heads[1].inputs == ("pooled", "class_groups")
    assert dev_rates["person"]["recall"] >= 0.95
    assert dev_rates["person"]["false_positive_rate"] < 0.1
    assert dev_rates["dog"]["recall"] >= 0.95
    grounding = heads.assess(dev.encoded.pooled, dev.encoded.class_probabilities)
    said = np.array([any(e.label == "person" for e in found) for found in grounding.evidence])
    assert (said == (dev.targets["person"] > 0)).mean() > 0.9
    # Without the classifier, the class-group inputs drop out.
    pooled_only = EncodedPhotos(train.encoded.pooled, None)
    no_classes = TrainingSet(pooled_only, train.targets, train.weights)
    heads, _ = fit_heads(no_classes, None, [HeadSpec("dog", 1, ("pooled", "class_groups"), 0.9)])
    assert heads.heads[0].inputs == ("pooled",) and heads.heads[0].threshold == 0.5
    assert heads.class_groups is None


def test_nothing_to_learn_is_an_error() -> None:
    data = synthetic_set(100, 6)
    data.targets.update(person=np.zeros(100), dog=np.zeros(100))
    with pytest.raises(ValueError, match="no grounding head"):
        fit_heads(data, None, DEFAULT_HEADS)


@pytest.mark.slow
def test_add_grounding_on_the_tiny_model(
    tiny_artifacts: Path, tiny_dataset, wordnet_dir: Path, tmp_path: Path
) -> None:
    """The command fits heads from the fixture dataset plus a labels file, writes
    grounding.json and its manifest entry, and the bundle serves them."""
    root, _ = tiny_dataset
    artifacts = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, artifacts)
    before = {p.name: p.read_bytes() for p in artifacts.iterdir() if p.name != MANIFEST}
    assert load_bundle(artifacts).grounding is None
    labels = tmp_path / "labels.tsv"
    # The shapes' captions name no person or dog: the labels file says red shows a person,
    # and outweighs the captions of the same photos in the train split.
    names = [name for name, _, _ in tiny_examples()]
    labels.write_text(
        "".join(f"{name}\t{int(name.startswith('red'))}\t0\t0\tx\n" for name in names)
    )
    code = cli_main(
        [
            "add-grounding",
            "--data", str(root),
            "--artifacts", str(artifacts),
            "--extra-labels", str(labels),
            "--extra-photos", str(root / "Flicker8k_Dataset"),
            "--extra-weight", "20",
            "--wordnet", str(wordnet_dir),
            "--cache", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    assert code == 0
    manifest = json.loads((artifacts / MANIFEST).read_text())
    assert GROUNDING in manifest["files"]
    entry = manifest["grounding"]
    assert list(entry["heads"]) == ["person"]  # nothing else has a positive photo
    assert entry["heads"]["person"]["threshold"] == 0.5  # dev's captions show no person
    assert entry["data"]["extra"]["photos"] == len(names)
    assert entry["data"]["extra"]["weight"] == 20
    assert entry["data"]["flickr8k"]["train"] == len(names)
    # Every other file byte for byte as it was.
    assert {n: (artifacts / n).read_bytes() for n in before} == before

    bundle = load_bundle(artifacts)
    assert bundle.grounding is not None and bundle.grounding.columns == ("person",)
    predictor = CaptionPredictor(bundle)
    images = [image for _, image, _ in tiny_examples()]
    encoded = predictor.encode(predictor.preprocess(images))
    grounding = bundle.grounding.assess(encoded.pooled)
    said = [bool(found) for found in grounding.evidence]
    assert said == [name.startswith("red") for name in names]
    # Features come from the cache the second time.
    assert any((tmp_path / "cache").iterdir())
    nothing = ["add-grounding", "--data", str(root), "--artifacts", str(artifacts)]
    assert cli_main([*nothing, "--wordnet", str(wordnet_dir)]) == 2


def test_setting_claims_follow_the_scenery_heads_fitted() -> None:
    size = 3
    heads = EvidenceHeads(
        tuple(
            Head(label, 1, ("pooled",), np.zeros(size, np.float32), 0.0, 0.5)
            for label in ("person", "snow")
        ),
        {"pooled": Normaliser(np.zeros(size), np.ones(size))},
    )
    claims = setting_claims(heads, ["a", "dog", "in", "the", "snow", "skiing", "grass"])
    assert claims == (Claim("snow", 1, ("skiing", "snow"), setting=True),)
