"""Evidence heads for grounded captions (issue 25): which inputs, which training photos, which
thresholds, measured on Flickr8k dev (labels from the captions) and the open-world photos
(labels.tsv).

    python -m benchmarks.experiments.grounding_heads --flickr8k ../shared/flickr8k \\
        --openworld ../shared/openworld --cache /tmp/evidence/cache --output /tmp/evidence/report.md

The encoder runs once per photo (service preprocessing, the bundle's LiteRT encoder) and its
outputs are cached under --cache, where `python -m training add-grounding --cache` finds them.
Heads fitted on the open-world photos too are only ever scored on photos they were not fitted
on: stratified 5-fold cross-validation (out-of-fold), each fold's threshold taken from Flickr8k
dev, never from the open-world photos.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioning.concepts import softmax
from captioning.grounding import ClassGroups
from captioning.predictor import CaptionPredictor
from training.data import load_flickr8k
from training.grounding import (
    DEFAULT_EXTRA_WEIGHT,
    DEFAULT_HEADS,
    DEFAULT_L2,
    PRESENCE_RECALL,
    SCENERY,
    EncodedPhotos,
    TrainingSet,
    choose_threshold,
    class_groups_for,
    encode_cached,
    fit_heads,
    fit_logistic,
    fit_temperature,
    flickr8k_labels,
    rates,
    read_labels_tsv,
    standardiser,
    stratified_folds,
)
from training.mentions import Lexicon
from training.wordnet import WordNet

logger = logging.getLogger(__name__)

FOLDS = 5
GROUPS = (("dogs", "n02084071"), ("birds", "n01503061"), ("other animals", "n00015388"))
TEMPERATURES = (0.5, 0.7, 1.0)


@dataclass
class Sets:
    train: TrainingSet
    dev: TrainingSet
    open: TrainingSet
    open_groups: np.ndarray  # per open-world photo: dogs, birds, other animals, everything else
    open_reference_several: dict[str, np.ndarray]  # label -> the reference caption says 2+
    groups: dict[str, tuple[int, ...]]  # ImageNet class groups (dog, cat)
    class_ids: list[str]


def load_sets(args: argparse.Namespace) -> Sets:
    predictor = CaptionPredictor.from_artifacts(args.artifacts)
    dataset = load_flickr8k(args.flickr8k)
    wordnet = WordNet.load(args.wordnet)
    lexicon = Lexicon(wordnet)
    sets = {}
    for name in ("train", "dev"):
        split = dataset.splits[name]
        labelled = flickr8k_labels(split.image_paths, split.raw_captions, lexicon)
        encoded = encode_cached(predictor, labelled.paths, args.cache, name, grid_max=True)
        sets[name] = TrainingSet(encoded, labelled.targets, np.ones(len(encoded)))
    labels_file = args.openworld / "labels.tsv"
    labelled = read_labels_tsv(labels_file, args.openworld / "imagenet-sample")
    encoded = encode_cached(predictor, labelled.paths, args.cache, "extra", grid_max=True)
    open_set = TrainingSet(encoded, labelled.targets, np.ones(len(encoded)))
    group_names = []
    for path in labelled.paths:
        wnid = path.name.split("_")[0]
        group_names.append(
            next((g for g, root in GROUPS if wordnet.is_a(wnid, root)), "everything else")
        )
    references = [
        lexicon.claimed(line.split("\t")[4])
        for line in labels_file.read_text().splitlines()
        if line.strip()
    ]
    reference_several = {
        name: np.array([claims[name] > 1 for claims in references]) for name in ("person", "dog")
    }
    assert predictor.concepts is not None, "the measurement needs the ImageNet head"
    class_ids = list(predictor.concepts.class_ids)
    return Sets(
        sets["train"],
        sets["dev"],
        open_set,
        np.array(group_names),
        reference_several,
        class_groups_for(class_ids, wordnet),
        class_ids,
    )


# --- inputs --------------------------------------------------------------------------------------


def block(encoded: EncodedPhotos, kind: str, groups: dict, temperature: float = 1.0) -> np.ndarray:
    """An input to compare: pooled, grid max, all 1,000 log class probabilities, or the log
    summed probabilities of the class groups (as `captioning.grounding` computes them)."""
    if kind == "pooled":
        return encoded.pooled
    if kind == "gridmax":
        assert encoded.grid_max is not None
        return encoded.grid_max
    assert encoded.class_logits is not None
    if kind == "logp":
        return np.log(np.clip(softmax(encoded.class_logits / temperature), 1e-7, 1.0))
    if kind == "groups":
        table = ClassGroups(encoded.class_logits.shape[1], temperature, groups)
        return table(encoded.class_probabilities)
    raise ValueError(kind)


def design(encoded: EncodedPhotos, kinds: Sequence[str], groups: dict) -> np.ndarray:
    return np.hstack([block(encoded, kind, groups) for kind in kinds])


Scorer = Callable[[np.ndarray], np.ndarray]


def fit_scorer(x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float) -> Scorer:
    known = ~np.isnan(y)
    mean, scale = standardiser(x[known])
    w, b = fit_logistic((x[known] - mean) / scale, y[known], l2, weights[known])
    return lambda z: 1.0 / (1.0 + np.exp(-(((z - mean) / scale) @ w + b)))


# --- tables --------------------------------------------------------------------------------------


def fmt(r: dict[str, float]) -> str:
    return f"{r['precision']:.3f} | {r['recall']:.3f} | {r['false_positive_rate']:.3f}"


HEADER = (
    "| head | inputs | threshold | dev P | dev R | dev FPR | open P | open R | open FPR |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def row(name: str, inputs: str, threshold: float, dev: dict, open_world: dict) -> str:
    return f"| {name} | {inputs} | {threshold:.3f} | {fmt(dev)} | {fmt(open_world)} |"


def by_group(scores: np.ndarray, positives: np.ndarray, groups: np.ndarray, t: float) -> str:
    """False-positive rate per open-world group (photos without the thing)."""
    parts = []
    for name in ("dogs", "birds", "other animals", "everything else"):
        negatives = (groups == name) & ~positives
        if negatives.any():
            fired = int((scores[negatives] >= t).sum())
            parts.append(f"{name} {fired}/{int(negatives.sum())}")
    return ", ".join(parts)


def flickr_only(sets: Sets, out: list[str]) -> None:
    out.append("\n## A. Heads trained on Flickr8k train only\n")
    out.append(
        "Threshold 'R95' is the highest keeping 95% recall on Flickr8k dev (photos most of "
        "whose captions mention the thing); open = the 500 open-world photos (labels.tsv).\n"
    )
    out.append(HEADER)
    notes = []
    variants = {
        "person": [("pooled",), ("gridmax",), ("pooled", "gridmax"), ("pooled", "logp")],
        "dog": [("pooled",), ("pooled", "gridmax"), ("pooled", "groups"), ("pooled", "logp")],
    }
    for label, kinds_list in variants.items():
        for kinds in kinds_list:
            for l2 in (0.01, DEFAULT_L2) if kinds == ("pooled",) else (DEFAULT_L2,):
                started = time.perf_counter()
                x = design(sets.train.encoded, kinds, sets.groups)
                score = fit_scorer(x, sets.train.targets[label], sets.train.weights, l2)
                dev_s = score(design(sets.dev.encoded, kinds, sets.groups))
                open_s = score(design(sets.open.encoded, kinds, sets.groups))
                dev_y = sets.dev.targets[label] > 0.5
                open_y = sets.open.targets[label] > 0.5
                t95 = choose_threshold(dev_s, dev_y, PRESENCE_RECALL)
                name = f"{label} (l2 {l2})"
                for t in (t95, 0.5):
                    out.append(
                        row(
                            name,
                            "+".join(kinds),
                            t,
                            rates(dev_s, dev_y, t),
                            rates(open_s, open_y, t),
                        )
                    )
                notes.append(
                    f"- {label} {'+'.join(kinds)} l2 {l2} at R95 ({t95:.3f}), open-world false "
                    f"positives by group: {by_group(open_s, open_y, sets.open_groups, t95)}"
                )
                logger.info("A %s %s %.0fs", label, kinds, time.perf_counter() - started)
    out.append("")
    out.extend(notes)


def imagenet_sums(sets: Sets, out: list[str]) -> None:
    out.append("\n## B. The ImageNet head's summed class probabilities alone\n")
    out.append(
        f"dog: {len(sets.groups['dog'])} classes under WordNet dog.n.01; cat: "
        f"{len(sets.groups['cat'])} under domestic_cat.n.01. No fitting; T is the softmax "
        "temperature.\n"
    )
    out.append(HEADER)
    for label in ("dog", "cat"):
        members = list(sets.groups[label])
        dev_y = sets.dev.targets[label] > 0.5
        open_y = sets.open.targets[label] > 0.5
        for temperature in TEMPERATURES:
            dev_s = softmax(sets.dev.encoded.class_logits / temperature)[:, members].sum(1)
            open_s = softmax(sets.open.encoded.class_logits / temperature)[:, members].sum(1)
            t95 = choose_threshold(dev_s, dev_y, PRESENCE_RECALL)
            for t in sorted({t95, 0.1, 0.2, 0.4}):
                note = " (R95)" if dev_y.sum() >= 30 else " (0.5: too few dev positives)"
                name = f"{label} sum, T {temperature}" + (note if t == t95 else "")
                out.append(
                    row(name, "classes", t, rates(dev_s, dev_y, t), rates(open_s, open_y, t))
                )


def temperature_table(sets: Sets, out: list[str]) -> None:
    out.append("\n## C. Softmax temperature of the class groups\n")
    out.append(
        "Log loss of the summed group probability as P(thing), lower is better; and how "
        "many photos with / without the thing reach 0.4 (the concept tag threshold).\n"
    )
    out.append("| set | group | " + " | ".join(f"T {t}" for t in (0.5, 0.6, 0.7, 0.8, 1.0)) + " |")
    out.append("| --- | --- |" + " --- |" * 5)
    for set_name, data in (("train", sets.train), ("dev", sets.dev), ("open", sets.open)):
        for label in ("dog", "cat"):
            y = data.targets[label]
            cells = []
            for temperature in (0.5, 0.6, 0.7, 0.8, 1.0):
                p = softmax(data.encoded.class_logits / temperature)[:, list(sets.groups[label])]
                p = np.clip(p.sum(1), 1e-6, 1 - 1e-6)
                loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
                hit = int(((p >= 0.4) & (y > 0.5)).sum())
                false = int(((p >= 0.4) & (y <= 0.5)).sum())
                cells.append(f"{loss:.4f} ({hit}/{int((y > 0.5).sum())}, {false} false)")
            out.append(f"| {set_name} | {label} | " + " | ".join(cells) + " |")
    fitted = fit_temperature(sets.train.encoded.class_logits, sets.groups, sets.train.targets)
    out.append(f"\nTemperature fitted on Flickr8k train (as add-grounding does): {fitted}")


def cross_validated(sets: Sets, out: list[str]) -> None:
    out.append(
        f"\n## D. Trained on Flickr8k train + the open-world photos ({FOLDS}-fold, out-of-fold)\n"
    )
    out.append(
        "Open-world numbers are out-of-fold only: each photo scored by heads fitted without "
        "it, at the threshold keeping 95% dev recall for that fold's heads. Dev numbers are "
        "the mean over the folds.\n"
    )
    out.append(HEADER)
    variants = {
        "person": [("pooled",), ("pooled", "gridmax"), ("pooled", "logp")],
        "dog": [("pooled",), ("pooled", "groups"), ("groups",)],
        "cat": [("groups",), ("pooled", "groups")],
    }
    strata = sets.open.targets["person"] * 4 + sets.open.targets["dog"] * 2
    folds = stratified_folds(strata + sets.open.targets["cat"], FOLDS)
    l2s = {spec.name: spec.l2 or DEFAULT_L2 for spec in DEFAULT_HEADS}
    for label, kinds_list in variants.items():
        for kinds in kinds_list:
            for weight in (1.0, DEFAULT_EXTRA_WEIGHT):
                started = time.perf_counter()
                x_train = design(sets.train.encoded, kinds, sets.groups)
                x_dev = design(sets.dev.encoded, kinds, sets.groups)
                x_open = design(sets.open.encoded, kinds, sets.groups)
                y_open = sets.open.targets[label]
                dev_y = sets.dev.targets[label] > 0.5
                oof = np.zeros(len(x_open))
                fired = np.zeros(len(x_open), bool)
                dev_rates = []
                for fold in range(FOLDS):
                    fit_rows = folds != fold
                    score = fit_scorer(
                        np.vstack([x_train, x_open[fit_rows]]),
                        np.concatenate([sets.train.targets[label], y_open[fit_rows]]),
                        np.concatenate([sets.train.weights, np.full(fit_rows.sum(), weight)]),
                        l2s[label],
                    )
                    dev_s = score(x_dev)
                    t = choose_threshold(dev_s, dev_y, PRESENCE_RECALL)
                    if dev_y.sum() < 30:  # too few dev cats: the head's own 0.5
                        t = 0.5
                    dev_rates.append(rates(dev_s, dev_y, t))
                    oof[~fit_rows] = score(x_open[~fit_rows])
                    fired[~fit_rows] = oof[~fit_rows] >= t
                dev_mean = {k: float(np.mean([r[k] for r in dev_rates])) for k in dev_rates[0]}
                open_r = rates(fired.astype(float), y_open > 0.5, 0.5)
                name = f"{label} (extra weight {weight:g}, l2 {l2s[label]:g})"
                rule = "R95/fold" if dev_y.sum() >= 30 else "0.5 (4 dev cats)"
                out.append(row(name, "+".join(kinds), np.nan,
                               dev_mean, open_r).replace("nan", rule))  # fmt: skip
                logger.info("D %s %s %g %.0fs", label, kinds, weight, time.perf_counter() - started)


def several(sets: Sets, out: list[str]) -> None:
    out.append("\n## E. Two or more (people, dogs)\n")
    out.append(
        "Flickr8k dev: positive when most captions say two or more. Open-world photos have "
        "no count labels: 'open FPR' is over photos without the thing at all, and 'ref P/R' "
        "compares with their one reference caption (two or more said or not), over photos "
        "with the thing (out-of-fold when trained with them).\n"
    )
    out.append(
        "| head | training | threshold | dev P | dev R | dev FPR | open FPR | ref P | ref R |"
    )
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    strata = sets.open.targets["person"] * 4 + sets.open.targets["dog"] * 2
    folds = stratified_folds(strata, FOLDS)
    for label in ("person", "dog"):
        name = f"{label}>=2"
        x_train = design(sets.train.encoded, ("pooled",), sets.groups)
        x_dev = design(sets.dev.encoded, ("pooled",), sets.groups)
        x_open = design(sets.open.encoded, ("pooled",), sets.groups)
        dev_y = sets.dev.targets[name] > 0.5
        present = sets.open.targets[label] > 0.5
        for training in ("Flickr8k", "Flickr8k + open"):
            oof = np.zeros(len(x_open))
            for fold in range(FOLDS if training != "Flickr8k" else 1):
                fit_rows = folds != fold if training != "Flickr8k" else np.zeros(len(x_open), bool)
                score = fit_scorer(
                    np.vstack([x_train, x_open[fit_rows]]),
                    np.concatenate([sets.train.targets[name], sets.open.targets[name][fit_rows]]),
                    np.concatenate(
                        [sets.train.weights, np.full(fit_rows.sum(), DEFAULT_EXTRA_WEIGHT)]
                    ),
                    DEFAULT_L2,
                )
                oof[~fit_rows] = score(x_open[~fit_rows])
            dev_s = score(x_dev)
            best_f1 = choose_threshold(dev_s, dev_y, None)
            t90 = choose_threshold(dev_s, dev_y, 0.9)
            for t in sorted({t90, best_f1, 0.5, 0.7}):
                ref = rates(oof[present], sets.open_reference_several[label][present], t)
                no_thing = float((oof[~present] >= t).mean())
                note = " (best F1)" if t == best_f1 else " (R90)" if t == t90 else ""
                out.append(
                    f"| {name}{note} | {training} | {t:.3f} | {fmt(rates(dev_s, dev_y, t))} | "
                    f"{no_thing:.3f} | {ref['precision']:.3f} | {ref['recall']:.3f} |"
                )


def scenery(sets: Sets, out: list[str]) -> None:
    out.append("\n## F. Scenery the decoder likes to say (Flickr8k dev only: no open labels)\n")
    out.append("| head | threshold | dev P | dev R | dev FPR | dev positives |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    x_train = sets.train.encoded.pooled
    for label in SCENERY:
        score = fit_scorer(x_train, sets.train.targets[label], sets.train.weights, DEFAULT_L2)
        dev_s = score(sets.dev.encoded.pooled)
        dev_y = sets.dev.targets[label] > 0.5
        t90 = choose_threshold(dev_s, dev_y, 0.9)
        for t in sorted({t90, 0.5}):
            r = rates(dev_s, dev_y, t)
            out.append(f"| {label} | {t:.3f} | {fmt(r)} | {r['positives']} |")


def shipped(sets: Sets, out: list[str]) -> None:
    """The configuration add-grounding ships, through `fit_heads` and `EvidenceHeads`."""
    out.append("\n## G. The shipped configuration (training.grounding.DEFAULT_HEADS)\n")
    temperature = fit_temperature(
        np.concatenate([sets.train.encoded.class_logits, sets.open.encoded.class_logits]),
        sets.groups,
        {k: np.concatenate([sets.train.targets[k], sets.open.targets[k]]) for k in sets.groups},
    )
    table = ClassGroups(sets.train.encoded.class_logits.shape[1], temperature, sets.groups)
    inputs = ", ".join(f"{h.label}/{h.count}: {'+'.join(h.inputs)}" for h in DEFAULT_HEADS)
    out.append(
        f"Inputs per head: {inputs}; "
        f"l2 {DEFAULT_L2}; extra weight {DEFAULT_EXTRA_WEIGHT}; class-group temperature "
        f"{temperature} (fitted on train + open). Flickr8k-only: trained on train alone; "
        f"+ open: open-world numbers out-of-fold ({FOLDS} folds, thresholds from dev per fold); "
        "dev numbers from the heads fitted on all the photos (what add-grounding writes).\n"
    )
    out.append(
        "| head | training | threshold | dev P | dev R | dev FPR | open P | open R | open FPR |"
    )
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    strata = sets.open.targets["person"] * 4 + sets.open.targets["dog"] * 2
    folds = stratified_folds(strata + sets.open.targets["cat"], FOLDS)
    extra = TrainingSet(
        sets.open.encoded, sets.open.targets, np.full(len(sets.open.weights), DEFAULT_EXTRA_WEIGHT)
    )
    open_scores = {}
    flickr_heads, _ = fit_heads(sets.train, sets.dev, DEFAULT_HEADS, table, DEFAULT_L2)
    full_heads, _ = fit_heads(
        TrainingSet.concatenate([sets.train, extra]), sets.dev, DEFAULT_HEADS, table, DEFAULT_L2
    )
    oof = np.zeros((len(sets.open.weights), len(full_heads.heads)), np.float32)
    oof_thresholds = np.zeros((len(sets.open.weights), len(full_heads.heads)), np.float32)
    for fold in range(FOLDS):
        rows = folds != fold
        heads, _ = fit_heads(
            TrainingSet.concatenate([sets.train, _subset(extra, rows)]),
            sets.dev, DEFAULT_HEADS, table, DEFAULT_L2,
        )  # fmt: skip
        assert heads.columns == full_heads.columns
        held = _subset(sets.open, ~rows).encoded
        oof[~rows] = heads.probabilities(held.pooled, held.class_probabilities)
        oof_thresholds[~rows] = [h.threshold for h in heads.heads]
    dev = sets.dev.encoded
    for training, heads in (("Flickr8k", flickr_heads), ("Flickr8k + open", full_heads)):
        dev_p = heads.probabilities(dev.pooled, dev.class_probabilities)
        if training == "Flickr8k":
            open_p = heads.probabilities(
                sets.open.encoded.pooled, sets.open.encoded.class_probabilities
            )
            open_t = np.array([h.threshold for h in heads.heads])[None, :].repeat(len(open_p), 0)
        else:
            open_p, open_t = oof, oof_thresholds
        open_scores[training] = open_p
        for column, head in enumerate(heads.heads):
            dev_y = sets.dev.targets[head.name] > 0.5
            if head.count == 2:  # open-world photos have no counts: see table E
                out.append(
                    f"| {head.name} | {training} | {head.threshold:.3f} | "
                    f"{fmt(rates(dev_p[:, column], dev_y, head.threshold))} | - | - | - |"
                )
                continue
            open_y = sets.open.targets[head.label] > 0.5
            fired = (open_p[:, column] >= open_t[:, column]).astype(float)
            for t in sorted({head.threshold, 0.3, 0.5, 0.7, 0.9}):
                chosen = t == head.threshold
                open_r = (
                    rates(fired, open_y, 0.5) if chosen else rates(open_p[:, column], open_y, t)
                )
                label = head.name + (" **(shipped threshold)**" if chosen else "")
                out.append(
                    f"| {label} | {training} | {t:.3f} | "
                    f"{fmt(rates(dev_p[:, column], dev_y, t))} | {fmt(open_r)} |"
                )
    out.append(
        "\n(For '+ open' rows at other thresholds than the shipped one, open-world numbers "
        "are the out-of-fold probabilities at that fixed threshold.)"
    )
    # The decoding may also take a confident concept tag as evidence: the dog classes'
    # summed probability (temperature as the heads') at the tag threshold, 0.4.
    column = full_heads.columns.index("dog")
    members = list(sets.groups["dog"])
    dev_y = sets.dev.targets["dog"] > 0.5
    open_y = sets.open.targets["dog"] > 0.5
    dev_tag = softmax(dev.class_logits / temperature)[:, members].sum(1) >= 0.4
    open_tag = softmax(sets.open.encoded.class_logits / temperature)[:, members].sum(1) >= 0.4
    dev_p = full_heads.probabilities(dev.pooled, dev.class_probabilities)[:, column]
    dev_either = (dev_p >= full_heads.heads[column].threshold) | dev_tag
    open_either = (oof[:, column] >= oof_thresholds[:, column]) | open_tag
    out.append(
        "\nThe dog head or the dog classes' summed probability at the concept-tag threshold "
        f"(0.4, T {temperature}), Flickr8k + open (out-of-fold): dev "
        f"{fmt(rates(dev_either.astype(float), dev_y, 0.5))}; open "
        f"{fmt(rates(open_either.astype(float), open_y, 0.5))} (P | R | FPR)."
    )


def _subset(data: TrainingSet, rows: np.ndarray) -> TrainingSet:
    return TrainingSet(
        data.encoded.subset(rows), {k: v[rows] for k, v in data.targets.items()}, data.weights[rows]
    )


SECTIONS = {
    "A": flickr_only,
    "B": imagenet_sums,
    "C": temperature_table,
    "D": cross_validated,
    "E": several,
    "F": scenery,
    "G": shipped,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flickr8k", type=Path, default=Path("../shared/flickr8k"))
    parser.add_argument("--openworld", type=Path, default=Path("../shared/openworld"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/evidence/cache"))
    parser.add_argument("--output", type=Path, default=None, help="Markdown report")
    parser.add_argument("--sections", default="".join(SECTIONS), help="e.g. ABG")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sets = load_sets(args)
    out = [
        "# Evidence heads (issue 25)",
        f"\nFlickr8k train {len(sets.train.weights)}, dev {len(sets.dev.weights)}; open-world "
        f"{len(sets.open.weights)} photos (person {int(sets.open.targets['person'].sum())}, "
        f"dog {int(sets.open.targets['dog'].sum())}, cat {int(sets.open.targets['cat'].sum())}).",
    ]
    for key in args.sections:
        started = time.perf_counter()
        SECTIONS[key](sets, out)
        logger.info("section %s: %.0f s", key, time.perf_counter() - started)
        if args.output:
            args.output.write_text("\n".join(out) + "\n")
    logger.info("\n%s", "\n".join(out))


if __name__ == "__main__":
    main()
