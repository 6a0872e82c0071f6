"""Evidence heads as plain data: their maths, what they say per image, and grounding.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from captioning.grounding import (
    GROUNDING_FORMAT,
    ClassGroups,
    EvidenceHeads,
    Head,
    Normaliser,
)
from captioning.types import Evidence

POOLED = 4
CLASSES = 6


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def make_heads(with_groups: bool = True) -> EvidenceHeads:
    """person (and two or more) on the pooled features; dog on pooled + class groups."""
    normalisers = {"pooled": Normaliser(np.full(POOLED, 1.0, np.float32), np.full(POOLED, 2.0))}
    heads = [
        Head("person", 1, ("pooled",), np.array([4.0, 0, 0, 0], np.float32), 0.0, 0.6),
        Head("person", 2, ("pooled",), np.array([0, 4.0, 0, 0], np.float32), -1.0, 0.5),
    ]
    groups = None
    if with_groups:
        groups = ClassGroups(CLASSES, 1.0, {"dog": (0, 1), "cat": (2,)})
        normalisers["class_groups"] = Normaliser(np.zeros(2, np.float32), np.ones(2, np.float32))
        heads.append(
            Head("dog", 1, ("pooled", "class_groups"), np.array([0, 0, 1.0, 0, 2.0, 0]), 1.0, 0.5)
        )
    return EvidenceHeads(tuple(heads), normalisers, groups, {"data": "synthetic"})


def class_probabilities(dog: float, images: int = 1) -> np.ndarray:
    p = np.full((images, CLASSES), (1.0 - dog) / (CLASSES - 2), np.float32)
    p[:, 0] = p[:, 1] = dog / 2
    return p


def test_probabilities_are_logistic_regressions_on_normalised_inputs() -> None:
    heads = make_heads()
    pooled = np.array([[3.0, 1.0, 5.0, 0.0], [-1.0, 5.0, 1.0, 7.0]], np.float32)
    probabilities = class_probabilities(0.8, 2)
    found = heads.probabilities(pooled, probabilities)
    x = (pooled - 1.0) / 2.0
    log_dog = np.log(probabilities[:, :2].sum(axis=1))
    expected = np.stack(
        [sigmoid(4 * x[:, 0]), sigmoid(4 * x[:, 1] - 1), sigmoid(x[:, 2] + 2 * log_dog + 1)],
        axis=1,
    )
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)
    assert heads.columns == ("person", "person>=2", "dog")
    assert heads.labels == ("person", "dog")
    assert heads.needs_class_probabilities


def test_evidence_names_what_fires_with_counts() -> None:
    heads = make_heads()
    pooled = np.array(
        [
            [3.0, 3.0, 1.0, 0.0],  # a person, two or more; a dog
            [3.0, -3.0, 1.0, 0.0],  # one person
            [-3.0, 3.0, 1.0, 0.0],  # 'two or more' alone claims nobody
        ],
        np.float32,
    )
    probabilities = np.concatenate([class_probabilities(0.9), class_probabilities(0.001, 2)])
    grounding = heads.assess(pooled, probabilities)
    first, second, third = grounding.evidence
    assert [(e.label, e.count) for e in first] == [("person", 2), ("dog", None)]
    assert first[0].score >= first[1].score  # most likely first
    assert [(e.label, e.count) for e in second] == [("person", 1)]
    assert third == ()
    assert isinstance(first[0], Evidence)
    assert first[0].score == pytest.approx(float(grounding.probabilities[0, 0]), abs=1e-4)
    assert grounding.probabilities.shape == (3, 3)


def test_a_threshold_decides_presence() -> None:
    heads = make_heads(with_groups=False)
    # x = 0.05 -> sigmoid(0.2) = 0.55: under the person threshold of 0.6.
    pooled = np.array([[1.1, 0.0, 0.0, 0.0]], np.float32)
    assert heads.assess(pooled).evidence == [()]
    pooled[0, 0] = 1.3  # sigmoid(0.6) = 0.646
    assert [e.label for e in heads.assess(pooled).evidence[0]] == ["person"]


def test_heads_without_class_groups_need_no_probabilities() -> None:
    heads = make_heads(with_groups=False)
    assert not heads.needs_class_probabilities
    assert heads.probabilities(np.zeros((2, POOLED), np.float32)).shape == (2, 2)
    with pytest.raises(ValueError, match="class probabilities"):
        make_heads().probabilities(np.zeros((1, POOLED), np.float32), None)
    with pytest.raises(ValueError, match="pooled features"):
        heads.probabilities(np.zeros((1, POOLED + 1), np.float32))


def test_a_temperature_below_one_gathers_a_spread_group() -> None:
    """A cat spread over three breeds, none on top: sharpening raises the group's share."""
    probabilities = np.array([[0.12, 0.12, 0.12, 0.3, 0.2, 0.14]], np.float32)
    plain = ClassGroups(CLASSES, 1.0, {"cat": (0, 1, 2)})
    np.testing.assert_allclose(np.exp(plain(probabilities)), [[0.36]], rtol=1e-5)
    sharp = ClassGroups(CLASSES, 0.5, {"cat": (0, 1, 2)})
    squared = probabilities**2 / (probabilities**2).sum()
    np.testing.assert_allclose(np.exp(sharp(probabilities)), [[squared[0, :3].sum()]], rtol=1e-5)
    concentrated = np.array([[0.5, 0.05, 0.05, 0.2, 0.1, 0.1]], np.float32)
    assert np.exp(sharp(concentrated))[0, 0] > np.exp(plain(concentrated))[0, 0]


def test_json_round_trip_computes_the_same() -> None:
    heads = make_heads()
    again = EvidenceHeads.from_json(heads.to_json())
    assert again.columns == heads.columns
    assert again.info == {"data": "synthetic"}
    assert again.class_groups is not None and again.class_groups.groups == {
        "dog": (0, 1),
        "cat": (2,),
    }
    pooled = np.random.default_rng(0).normal(size=(5, POOLED)).astype(np.float32)
    probabilities = class_probabilities(0.3, 5)
    np.testing.assert_allclose(
        again.probabilities(pooled, probabilities),
        heads.probabilities(pooled, probabilities),
        rtol=1e-6,
    )
    plain = json.loads(heads.to_json())
    assert plain["format"] == GROUNDING_FORMAT
    assert plain["inputs"]["class_groups"]["temperature"] == 1.0
    assert [h["threshold"] for h in plain["heads"]] == [0.6, 0.5, 0.5]


def test_load_from_a_file(tmp_path) -> None:
    path = tmp_path / "grounding.json"
    path.write_bytes(make_heads().to_json())
    assert EvidenceHeads.load(path).columns == ("person", "person>=2", "dog")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="someone-elses/2"), "format"),
        (lambda d: d.pop("heads"), "required field"),
        (lambda d: d["heads"][0].update(weights=[1.0]), "wrong number of weights"),
        (lambda d: d["heads"][0].update(count=3), "count"),
        (lambda d: d["heads"][0].update(threshold=1.5), "threshold"),
        (lambda d: d["heads"][0].update(inputs=["pixels"]), "inputs"),
        (lambda d: d["heads"].pop(0), "presence head"),
        (lambda d: d["inputs"]["pooled"].update(size=7), "size"),
        (lambda d: d["inputs"]["class_groups"].update(temperature=0), "temperature"),
        (lambda d: d["inputs"]["class_groups"]["groups"].update(dog=[99]), "class group"),
        (lambda d: d["inputs"].pop("class_groups"), "normalisation"),
    ],
)
def test_a_broken_file_is_refused(change, message) -> None:
    data = json.loads(make_heads().to_json())
    change(data)
    with pytest.raises(ValueError, match=message):
        EvidenceHeads.from_json(json.dumps(data).encode())


def test_not_json_is_refused() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        EvidenceHeads.from_json(b"{nope")
