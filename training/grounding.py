"""Evidence heads: what a photo shows (people, dogs, cats...), read from the encoder's outputs.

Flickr8k photos are labelled from their five reference captions: a photo shows a person when
its captions claim one ("a man", "a skier", "in a red shirt"), and two or more when they say
so ("two dogs", "a group of people", "a man and a woman"), read by `training.mentions`, the
lexicon the open-world evaluation counts phantoms with. Small L2-regularised logistic
regressions on the encoder's pooled features (and, when the encoder has its ImageNet head,
its class probabilities) then learn to see them; `captioning.grounding` runs them when
serving. They are fitted here in NumPy: the heads are plain numbers in `grounding.json`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from captioning.claims import Claim
from captioning.concepts import softmax
from captioning.decoder_step import sigmoid
from captioning.grounding import CLASS_GROUPS, POOLED, ClassGroups, EvidenceHeads, Head, Normaliser
from captioning.text import normalize_caption
from training.data import Split
from training.mentions import CHECKED, Lexicon, words
from training.wordnet import WordNet

if TYPE_CHECKING:
    from captioning.predictor import CaptionPredictor

logger = logging.getLogger(__name__)


# Scenery and objects the decoder likes to say, mentioned or not (no count); optional heads.
SCENERY: dict[str, frozenset[str]] = {
    "ball": frozenset({"ball", "balls", "soccer", "football", "basketball", "volleyball"}),
    "grass": frozenset({"grass", "grassy", "lawn", "field", "meadow"}),
    "water": words(
        """water pool lake ocean river sea stream pond waves wave surf splashing splashes
        swimming swims fountain puddle waterfall"""
    ),
    "snow": frozenset({"snow", "snowy", "snowboarder", "snowboarding", "skier", "skiing"}),
    "air": frozenset({"air", "midair"}),
}
# Said of a moment (a dog mid-jump) that one caption of a photo catches and another does not:
# a photo shows it when any caption says it. Labelled by most captions, dev had 19 such photos,
# too few to choose a threshold from (docs/experiments.md).
SAID_BY_ANY = frozenset({"air"})


@dataclass(frozen=True)
class CaptionLabels:
    """Per photo, the share of its captions that mention each thing (0..1), and the share that
    say two or more of a person, dog or cat (`several`)."""

    mentioned: dict[str, np.ndarray]  # label -> (photos,) share of captions
    several: dict[str, np.ndarray]  # "person", "dog", "cat" -> (photos,) share saying 2+

    def present(self, label: str, share: float = 0.5) -> np.ndarray:
        """Photos where more than `share` of the captions mention it (0: any caption)."""
        return self.mentioned[label] > share

    def many(self, label: str, share: float = 0.5) -> np.ndarray:
        return self.several[label] > share


def label_from_captions(captions: Sequence[Sequence[str]], lexicon: Lexicon) -> CaptionLabels:
    """`captions`: per photo, its raw reference captions. A person, dog or cat is mentioned as
    `lexicon` reads claims (`training.mentions`, as the open-world evaluation counts phantoms):
    "a man", "in a red shirt", "two dogs", "a kitten"."""
    mentioned = {name: np.zeros(len(captions)) for name in (*CHECKED, *SCENERY)}
    several = {name: np.zeros(len(captions)) for name in CHECKED}
    for index, references in enumerate(captions):
        if not references:
            continue
        claims = [lexicon.claimed(caption) for caption in references]
        for name in CHECKED:
            mentioned[name][index] = np.mean([claim[name] > 0 for claim in claims])
            several[name][index] = np.mean([claim[name] > 1 for claim in claims])
        tokenised = [set(normalize_caption(caption)) for caption in references]
        for name, found in SCENERY.items():
            said = [bool(found & tokens) for tokens in tokenised]
            mentioned[name][index] = float(any(said)) if name in SAID_BY_ANY else np.mean(said)
    return CaptionLabels(mentioned, several)


# --- fitting -------------------------------------------------------------------------------------


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    l2: float,
    sample_weight: np.ndarray | None = None,
    iterations: int = 50,
    tolerance: float = 1e-7,
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method: (weights, bias).

    Minimises mean_i s_i * CE(y_i, sigmoid(x_i . w + b)) + l2 / 2 * |w|^2 (the bias is not
    penalised); `y` may be soft (a share of captions). `x` should be standardised, so that one
    `l2` suits every feature. Newton is exact and needs no step size: a few solves of a
    (features + 1) square system, seconds for Flickr8k's 6,000 photos."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, d = x.shape
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    s = s / s.mean()
    design = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0

    def loss(t: np.ndarray) -> float:
        z = design @ t
        # log(1 + e^z) - y z, stably.
        return float(np.mean(s * (np.logaddexp(0.0, z) - y * z)) + 0.5 * np.sum(penalty * t * t))

    current = loss(theta)
    for _ in range(iterations):
        p = sigmoid(design @ theta)
        gradient = design.T @ (s * (p - y)) / n + penalty * theta
        hessian = (design * (s * p * (1 - p))[:, None]).T @ design / n
        hessian[np.diag_indices_from(hessian)] += penalty + 1e-9
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-4:  # backtracking: Newton's full step can overshoot
            candidate = theta - scale * step
            value = loss(candidate)
            if value <= current:
                break
            scale /= 2
        else:
            break
        theta, previous, current = candidate, current, value
        if previous - current < tolerance * max(1.0, abs(current)):
            break
    return theta[:-1], float(theta[-1])


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and scale (standard deviation, 1 where constant)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-6, scale, 1.0)


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number per sample, positives and negatives spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), int)
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        fold[members] = np.arange(len(members)) % folds
    return fold


# --- photos, labels and the heads of grounding.json ---------------------------------------------

# Class groups of the ImageNet head, by WordNet synset: every class below it is in the group.
# Domestic cats only: lions and lynxes are not what "a cat" claims.
CLASS_GROUP_SYNSETS = {"dog": "n02084071", "cat": "n02121808", "animal": "n00015388"}
# "animal" is evidence when ImageNet's animal classes sum to this or more (temperature applied):
# on the shared open-world photos it keeps every animal photo and 2.3% of the others; on
# Flickr8k dev 95% of the photos most of whose captions name an animal (docs/experiments.md).
ANIMAL_GROUP_MIN = 0.1
# A head's threshold is the highest at which it still finds this share of dev's photos that
# have the thing (labelled by most of their captions) ...
PRESENCE_RECALL = 0.95
# ... when dev has at least this many of them; with fewer the recall is noise, and the
# head's own calibrated probability decides at 0.5.
MIN_DEV_POSITIVES = 30
DEFAULT_L2 = 0.1
# Labelled extra photos (the open-world sample) are few but hold nearly all the negatives
# that Flickr8k lacks (parrots, sharks, hot dogs): each counts this many Flickr8k photos.
DEFAULT_EXTRA_WEIGHT = 3.0
ENCODE_BATCH = 16
# Softmax temperatures tried for the class groups (below 1 sharpens).
TEMPERATURES = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)


@dataclass(frozen=True)
class HeadSpec:
    label: str
    count: int  # 1 presence, 2 two or more
    inputs: tuple[str, ...]  # preferred inputs; class_groups is dropped without the classifier
    # Dev recall the threshold keeps; None: the threshold of best F1 on dev.
    recall: float | None
    l2: float | None = None  # None: the run's

    @property
    def name(self) -> str:
        return self.label if self.count == 1 else f"{self.label}>=2"


DEFAULT_HEADS = (
    # A person or a dog missed on a Flickr8k photo is a caption that must leave them out:
    # their thresholds keep 95% of dev's.
    HeadSpec("person", 1, ("pooled",), PRESENCE_RECALL),
    HeadSpec("dog", 1, ("pooled", "class_groups"), PRESENCE_RECALL),
    # Flickr8k has 18 photos of cats: the classifier's five cat breeds carry this head, two
    # inputs that a light penalty cannot overfit (the default one would swamp 18 photos).
    HeadSpec("cat", 1, ("class_groups",), PRESENCE_RECALL, l2=1e-4),
    # 'Two' said of one is as wrong as 'a' said of two: the threshold of best F1.
    HeadSpec("person", 2, ("pooled",), None),
    HeadSpec("dog", 2, ("pooled",), None),
)
# A setting missed is a phrase cut from a caption, not a falsehood: thresholds keep 90% of
# dev's photos whose captions say it; 95% for grass, which Flickr8k's captions say so often
# that 90% cut 18 true settings from dev captions for 13 false (docs/experiments.md).
SCENERY_RECALL = {"ball": 0.9, "grass": 0.95, "water": 0.9, "snow": 0.9, "air": 0.9}
SCENERY_HEADS = tuple(HeadSpec(name, 1, ("pooled",), SCENERY_RECALL[name]) for name in SCENERY)
# What add-grounding fits unless told otherwise (`--no-scenery`: the claims of things only).
SHIPPED_HEADS = DEFAULT_HEADS + SCENERY_HEADS


@dataclass
class EncodedPhotos:
    """What the heads read of each photo: the encoder's pooled features and class logits."""

    pooled: np.ndarray  # (photos, C) float32
    class_logits: np.ndarray | None  # (photos, classes) float32; None without the classifier
    grid_max: np.ndarray | None = None  # (photos, C) the grid's maximum, for experiments

    def __len__(self) -> int:
        return len(self.pooled)

    @property
    def class_probabilities(self) -> np.ndarray | None:
        if self.class_logits is None:
            return None
        return softmax(self.class_logits.astype(np.float64)).astype(np.float32)

    def subset(self, rows: np.ndarray) -> EncodedPhotos:
        return EncodedPhotos(
            self.pooled[rows],
            None if self.class_logits is None else self.class_logits[rows],
            None if self.grid_max is None else self.grid_max[rows],
        )

    @staticmethod
    def concatenate(parts: Sequence[EncodedPhotos]) -> EncodedPhotos:
        logits = [p.class_logits for p in parts]
        grid = [p.grid_max for p in parts]
        return EncodedPhotos(
            np.concatenate([p.pooled for p in parts]),
            None if any(x is None for x in logits) else np.concatenate(logits),
            None if any(x is None for x in grid) else np.concatenate(grid),
        )

    def save(self, prefix: Path) -> None:
        """As .npy files named after `prefix`, then `prefix`.done: only a complete set counts."""
        Path(f"{prefix}.done").unlink(missing_ok=True)
        np.save(f"{prefix}_pooled.npy", self.pooled)
        if self.class_logits is not None:
            np.save(f"{prefix}_logits.npy", self.class_logits)
        if self.grid_max is not None:
            np.save(f"{prefix}_gridmax.npy", self.grid_max)
        Path(f"{prefix}.done").write_text(f"{len(self)} photos\n")

    @classmethod
    def load(cls, prefix: Path) -> EncodedPhotos:
        def optional(kind: str) -> np.ndarray | None:
            path = Path(f"{prefix}_{kind}.npy")
            return np.load(path) if path.is_file() else None

        return cls(np.load(f"{prefix}_pooled.npy"), optional("logits"), optional("gridmax"))


def encode_photos(
    predictor: CaptionPredictor, paths: Sequence[Path], grid_max: bool = False
) -> EncodedPhotos:
    """Each photo read and preprocessed as the service does, through the bundle's encoder."""
    pooled, logits, maxima = [], [], []
    for start in range(0, len(paths), ENCODE_BATCH):
        chunk = paths[start : start + ENCODE_BATCH]
        output = predictor.encoder(predictor.preprocess([predictor.read_image(p) for p in chunk]))
        pooled.append(output.pooled)
        logits.append(output.class_logits)
        if grid_max:
            maxima.append(output.grid.reshape(len(chunk), -1, output.grid.shape[-1]).max(axis=1))
        if start and start % (ENCODE_BATCH * 50) == 0:
            logger.info("encoded %d of %d photos", start, len(paths))
    return EncodedPhotos(
        np.concatenate(pooled).astype(np.float32),
        None if logits[0] is None else np.concatenate(logits).astype(np.float32),
        np.concatenate(maxima).astype(np.float32) if grid_max else None,
    )


def encode_cached(
    predictor: CaptionPredictor,
    paths: Sequence[Path],
    cache: Path | None,
    name: str,
    grid_max: bool = False,
) -> EncodedPhotos:
    """`encode_photos`, kept under `cache` (when given) keyed by the model and the photos."""
    if cache is None:
        return encode_photos(predictor, paths, grid_max)
    digest = hashlib.sha256(predictor.model_id.encode())
    digest.update(predictor.manifest["files"].get("encoder.tflite", {}).get("sha256", "").encode())
    for path in paths:
        digest.update(path.name.encode())
    prefix = Path(cache) / f"{name}-{digest.hexdigest()[:12]}"
    if Path(f"{prefix}.done").is_file() and (
        not grid_max or Path(f"{prefix}_gridmax.npy").is_file()
    ):
        logger.info("%s: %d photos' features from %s", name, len(paths), prefix)
        return EncodedPhotos.load(prefix)
    encoded = encode_photos(predictor, paths, grid_max)
    Path(cache).mkdir(parents=True, exist_ok=True)
    encoded.save(prefix)
    return encoded


@dataclass(frozen=True)
class LabelledPhotos:
    """Photos with a label per thing: a share of captions (Flickr8k) or 0/1 (labels.tsv);
    NaN where unknown (how many people a labels.tsv photo shows)."""

    paths: list[Path]
    targets: dict[str, np.ndarray]  # head name ("person", "person>=2") -> (photos,) 0..1/NaN


def flickr8k_labels(
    paths: Sequence[Path], captions: Sequence[Sequence[str]], lexicon: Lexicon
) -> LabelledPhotos:
    labels = label_from_captions(captions, lexicon)
    targets = dict(labels.mentioned)
    targets.update({f"{name}>=2": share for name, share in labels.several.items()})
    return LabelledPhotos(list(paths), targets)


def read_labels_tsv(path: Path, photos: Path | None = None) -> LabelledPhotos:
    """The photos of a `labels.tsv` (read by `training.open_world.read_labels`, the
    evaluation's reader), as training targets; files relative to `photos` (default: the
    file's folder)."""
    from training.open_world import read_labels

    labels = read_labels(Path(path))
    folder = Path(photos) if photos is not None else Path(path).parent
    paths = [folder / name for name in labels]
    rows = [[label.shows(name) for name in CHECKED] for label in labels.values()]
    table = np.asarray(rows, np.float64)
    targets: dict[str, np.ndarray] = {}
    for column, name in enumerate(CHECKED):
        targets[name] = table[:, column]
        # None of the thing: not two either; some: how many is not said.
        targets[f"{name}>=2"] = np.where(table[:, column] == 0, 0.0, np.nan)
    # A setting is there when the reference caption (written by looking) says it; a salient
    # one (snow, a lawn) a one-sentence description rarely leaves out.
    said = [set(normalize_caption(label.caption)) for label in labels.values()]
    for name, found in SCENERY.items():
        targets[name] = np.array([float(bool(found & words)) for words in said])
    return LabelledPhotos(paths, targets)


def class_groups_for(class_ids: Sequence[str], wordnet: WordNet) -> dict[str, tuple[int, ...]]:
    """The classifier's classes under each of `CLASS_GROUP_SYNSETS` (groups without any are
    left out)."""
    groups = {}
    for name, root in CLASS_GROUP_SYNSETS.items():
        if root[1:] not in wordnet.synsets:
            continue
        members = tuple(
            i
            for i, wnid in enumerate(class_ids)
            if wnid[1:] in wordnet.synsets and wordnet.is_a(wnid, root)
        )
        if members:
            groups[name] = members
    return groups


def fit_temperature(
    class_logits: np.ndarray,
    groups: dict[str, tuple[int, ...]],
    targets: dict[str, np.ndarray],
    candidates: Sequence[float] = TEMPERATURES,
) -> float:
    """The softmax temperature at which the groups' summed probabilities best predict the
    labels (lowest log loss over every group with positives), from `candidates`."""
    logits = np.asarray(class_logits, np.float64)
    best, best_loss = 1.0, np.inf
    for temperature in candidates:
        probabilities = softmax(logits / temperature)
        loss = 0.0
        for name, members in groups.items():
            y = targets.get(name)
            if y is None or not np.nansum(y):
                continue
            known = ~np.isnan(y)
            p = np.clip(probabilities[:, list(members)].sum(axis=1), 1e-6, 1 - 1e-6)[known]
            loss += float(-np.mean(y[known] * np.log(p) + (1 - y[known]) * np.log(1 - p)))
        if loss < best_loss:
            best, best_loss = float(temperature), loss
    return best


def choose_threshold(scores: np.ndarray, positives: np.ndarray, recall: float | None) -> float:
    """The highest threshold at which `recall` of the positives still score at or above it
    (None: the threshold of best F1); 0.5 with fewer than `MIN_DEV_POSITIVES` positives."""
    scores = np.asarray(scores)
    positives = np.asarray(positives, bool)
    found = np.sort(scores[positives])[::-1]
    if len(found) < MIN_DEV_POSITIVES:
        return 0.5
    if recall is None:
        order = np.argsort(-scores, kind="stable")
        true = np.cumsum(positives[order])
        f1 = 2 * true / (np.arange(1, len(scores) + 1) + len(found))
        return float(np.floor(scores[order][int(np.argmax(f1))] * 1e4) / 1e4)
    kept = int(np.ceil(recall * len(found)))
    # Rounded down, so that the photo at the boundary still counts.
    return float(np.floor(found[kept - 1] * 1e4) / 1e4)


def rates(scores: np.ndarray, positives: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and false-positive rate of `scores >= threshold`."""
    positives = np.asarray(positives, bool)
    fired = np.asarray(scores) >= threshold
    true = int((fired & positives).sum())
    return {
        "precision": round(true / max(int(fired.sum()), 1), 4),
        "recall": round(true / max(int(positives.sum()), 1), 4),
        "false_positive_rate": round(
            int((fired & ~positives).sum()) / max(int((~positives).sum()), 1), 4
        ),
        "positives": int(positives.sum()),
        "photos": len(positives),
    }


@dataclass
class TrainingSet:
    encoded: EncodedPhotos
    targets: dict[str, np.ndarray]  # head name -> (photos,) 0..1, NaN unknown
    weights: np.ndarray  # (photos,) sample weights

    @staticmethod
    def concatenate(parts: Sequence[TrainingSet]) -> TrainingSet:
        names = set().union(*(p.targets for p in parts))
        return TrainingSet(
            EncodedPhotos.concatenate([p.encoded for p in parts]),
            {
                name: np.concatenate(
                    [p.targets.get(name, np.full(len(p.weights), np.nan)) for p in parts]
                )
                for name in names
            },
            np.concatenate([p.weights for p in parts]),
        )


def input_blocks(encoded: EncodedPhotos, groups: ClassGroups | None) -> dict[str, np.ndarray]:
    """The heads' inputs before normalisation, as `captioning.grounding` computes them."""
    blocks = {POOLED: encoded.pooled}
    if groups is not None and encoded.class_logits is not None:
        blocks[CLASS_GROUPS] = groups(encoded.class_probabilities)
    return blocks


def fit_heads(
    train: TrainingSet,
    dev: TrainingSet | None,
    specs: Sequence[HeadSpec] = DEFAULT_HEADS,
    groups: ClassGroups | None = None,
    l2: float = DEFAULT_L2,
    info: dict | None = None,
) -> tuple[EvidenceHeads, dict[str, dict]]:
    """Fit every head of `specs` that `train` has positives and negatives for, each with its
    threshold from `dev` (0.5 without dev); returns the heads and their dev rates."""
    blocks = input_blocks(train.encoded, groups)
    normalisers = {name: Normaliser(*standardiser(x)) for name, x in blocks.items()}
    normalised = {name: normalisers[name](x) for name, x in blocks.items()}
    dev_normalised = (
        {name: normalisers[name](x) for name, x in input_blocks(dev.encoded, groups).items()}
        if dev is not None
        else {}
    )
    heads: list[Head] = []
    dev_rates: dict[str, dict] = {}
    for spec in specs:
        name = spec.name
        inputs = tuple(i for i in spec.inputs if i in blocks) or (POOLED,)
        y = train.targets.get(name)
        if y is None:
            logger.warning("grounding: no labels for %s; head skipped", name)
            continue
        known = ~np.isnan(y)
        if not (y[known] > 0).any() or not (y[known] < 1).any():
            logger.warning("grounding: %s has no positive or no negative photo; skipped", name)
            continue
        if spec.count == 2 and spec.label not in {h.label for h in heads if h.count == 1}:
            logger.warning("grounding: %s skipped: its presence head was", name)
            continue
        x = np.hstack([normalised[i][known] for i in inputs])
        weights, bias = fit_logistic(x, y[known], spec.l2 or l2, train.weights[known])
        threshold = 0.5
        if dev is not None and name in dev.targets:
            dev_known = ~np.isnan(dev.targets[name])
            dev_x = np.hstack([dev_normalised[i][dev_known] for i in inputs])
            scores = sigmoid(dev_x @ weights + bias)
            positives = dev.targets[name][dev_known] > 0.5
            threshold = choose_threshold(scores, positives, spec.recall)
            dev_rates[name] = rates(scores, positives, threshold)
        heads.append(
            Head(spec.label, spec.count, inputs, weights.astype(np.float32), bias, threshold)
        )
        logger.info("grounding head %s on %s: threshold %.4f, dev %s", name, "+".join(inputs),
                    threshold, dev_rates.get(name))  # fmt: skip
    if not heads:
        raise ValueError("no grounding head could be fitted: the photos show none of the labels")
    used = {i for h in heads for i in h.inputs}
    return (
        EvidenceHeads(
            tuple(heads),
            {name: n for name, n in normalisers.items() if name in used},
            groups if CLASS_GROUPS in used else None,
            info or {},
        ),
        dev_rates,
    )


def add_grounding(
    artifacts: Path,
    data: Path,
    extra_labels: Path | None = None,
    extra_photos: Path | None = None,
    wordnet_dir: Path | None = None,
    cache: Path | None = None,
    specs: Sequence[HeadSpec] = SHIPPED_HEADS,
    l2: float = DEFAULT_L2,
    extra_weight: float = DEFAULT_EXTRA_WEIGHT,
    temperature: float | None = None,
) -> dict:
    """Fit the evidence heads on the encoder of `artifacts` from Flickr8k's train split (plus
    `extra_labels`' photos, when given), with thresholds from its dev split, and write them to
    `artifacts/grounding.json` and the manifest; every other file stays as it was. Returns
    the manifest's `grounding` entry."""
    from captioning.bundle import GROUNDING, add_files
    from captioning.predictor import CaptionPredictor
    from training.data import DatasetError, load_flickr8k

    predictor = CaptionPredictor.from_artifacts(artifacts)
    dataset = load_flickr8k(data)
    train_split, dev_split = dataset.splits["train"], dataset.splits["dev"]
    if not len(train_split):
        raise DatasetError(f"{data} has no train photos to fit grounding heads on")
    wordnet = WordNet.load(wordnet_dir) if wordnet_dir else WordNet.load()
    lexicon = Lexicon(wordnet)
    parts = [_flickr8k_set(predictor, train_split, lexicon, cache, "train")]
    dev = _flickr8k_set(predictor, dev_split, lexicon, cache, "dev") if len(dev_split) else None
    extra_record = None
    if extra_labels is not None:
        labelled = read_labels_tsv(extra_labels, extra_photos)
        encoded = encode_cached(predictor, labelled.paths, cache, "extra")
        parts.append(TrainingSet(encoded, labelled.targets, np.full(len(encoded), extra_weight)))
        extra_record = {
            "labels": Path(extra_labels).name,
            "labels_sha256": hashlib.sha256(Path(extra_labels).read_bytes()).hexdigest(),
            "photos": len(encoded),
            "weight": extra_weight,
        }
    train = TrainingSet.concatenate(parts)
    groups = None
    if train.encoded.class_logits is not None:
        groups = _class_groups(predictor, train, wordnet, temperature)
    info = {
        "data": {
            "flickr8k": {
                "train": len(train_split),
                "dev": len(dev_split),
                "labels": "from the five reference captions, read by training.mentions: the "
                "share that claim each thing (training target); dev photos where more than "
                "half do (thresholds); settings: the share saying one of the setting's words "
                "(training.grounding.SCENERY; 'air': 1 where any caption says it; a labels "
                "file's photos: its reference caption)",
            },
            **({"extra": extra_record} if extra_record else {}),
        },
        "l2": l2,
        "thresholds": f"highest keeping {PRESENCE_RECALL:.0%} of dev's photos with the thing "
        "(presence), of best F1 on dev (two or more); 0.5 with fewer than "
        f"{MIN_DEV_POSITIVES} dev positives",
    }
    heads, dev_rates = fit_heads(train, dev, specs, groups, l2, info)
    # The words each label's evidence licenses, from the same lexicon that counts phantoms.
    lexicon = Lexicon(WordNet.load(wordnet_dir) if wordnet_dir else WordNet.load())
    claims = tuple(Claim.from_plain(c) for c in lexicon.claims(predictor.vocabulary.words))
    claims += setting_claims(heads, predictor.vocabulary.words)
    extra_heads = () if heads.class_groups is None else (animal_rule_head(heads),)
    heads = dataclasses.replace(heads, heads=heads.heads + extra_heads, claims=claims)
    entry = {
        "file": GROUNDING,
        "format": heads.to_plain()["format"],
        "heads": {
            head.name: {
                "inputs": list(head.inputs),
                "threshold": head.threshold,
                "l2": next((s.l2 for s in specs if s.name == head.name and s.l2), l2),
                **({"dev": dev_rates[head.name]} if head.name in dev_rates else {}),
            }
            for head in heads.heads
        },
        "claims": {f"{c.label} x{c.count}": len(c.words) for c in claims},
        **info,
    }
    if heads.class_groups is not None:
        entry["class_groups"] = {
            "temperature": heads.class_groups.temperature,
            "classes": {k: len(v) for k, v in heads.class_groups.groups.items()},
            "synsets": {k: CLASS_GROUP_SYNSETS[k] for k in heads.class_groups.groups},
        }
    add_files(artifacts, {GROUNDING: heads.to_json()}, {"grounding": entry})
    return entry


def setting_claims(heads: EvidenceHeads, vocabulary: Sequence[str]) -> tuple[Claim, ...]:
    """A setting claim for each scenery head fitted: its words need its evidence, and a
    caption's phrase holding one is cut where the evidence is missing (`Claim.setting`)."""
    fitted = {head.label for head in heads.heads}
    return tuple(
        Claim(name, 1, tuple(sorted(found.intersection(vocabulary))), setting=True)
        for name, found in SCENERY.items()
        if name in fitted and found.intersection(vocabulary)
    )


def animal_rule_head(heads: EvidenceHeads, minimum: float = ANIMAL_GROUP_MIN) -> Head:
    """'animal' as a rule, not a fit: it fires when the animal classes' summed probability is at
    least `minimum` (its score is p / (p + minimum)). On the normalised log group probability
    x = (g - mean) / scale, w = scale and bias = mean - log(minimum) give w x + bias = g -
    log(minimum), which is 0 exactly at the minimum."""
    assert heads.class_groups is not None
    column = list(heads.class_groups.groups).index("animal")
    normaliser = heads.normalisers[CLASS_GROUPS]
    weights = np.zeros(len(normaliser.mean), np.float32)
    weights[column] = normaliser.scale[column]
    bias = float(normaliser.mean[column]) - float(np.log(minimum))
    return Head("animal", 1, (CLASS_GROUPS,), weights, bias, 0.5)


def _flickr8k_set(
    predictor: CaptionPredictor, split: Split, lexicon: Lexicon, cache: Path | None, name: str
) -> TrainingSet:
    labelled = flickr8k_labels(split.image_paths, split.raw_captions, lexicon)
    encoded = encode_cached(predictor, labelled.paths, cache, name)
    return TrainingSet(encoded, labelled.targets, np.ones(len(encoded)))


def _class_groups(
    predictor: CaptionPredictor,
    train: TrainingSet,
    wordnet: WordNet,
    temperature: float | None,
) -> ClassGroups | None:
    """The dog and cat class groups of the encoder's classifier, at `temperature` (None: the
    one fitted on `train`)."""
    from training.concepts import read_imagenet_classes

    assert train.encoded.class_logits is not None
    classes = train.encoded.class_logits.shape[1]
    if predictor.concepts is not None:
        class_ids = list(predictor.concepts.class_ids)
    elif classes == 1000:
        class_ids = read_imagenet_classes()
    else:
        logger.warning("grounding: %d classes of unknown ids; no class groups", classes)
        return None
    groups = class_groups_for(class_ids, wordnet)
    if not groups:
        return None
    if temperature is None:
        temperature = fit_temperature(train.encoded.class_logits, groups, train.targets)
        logger.info("grounding: class-group temperature %.2f (fitted on train)", temperature)
    return ClassGroups(classes, temperature, groups)
