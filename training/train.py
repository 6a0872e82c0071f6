"""Training: Flickr8k folder -> encoder features -> decoder -> `artifacts/`.

    python -m training train --data ../shared/flickr8k --artifacts artifacts

`train()` runs the steps in order: load the dataset, export the encoder and extract features
with that export, build the vocabulary and caption arrays, train the decoder with cross-entropy
(training/loop.py, training/callbacks.py), fine-tune it self-critically (training/self_critical.py),
and write the artifacts (training/artifacts.py). Checkpoints go to the work folder after every
epoch, so an interrupted run resumes with `--resume` without losing a finished epoch. The kept
model is the epoch with the best dev CIDEr: dev loss is a poor guide to caption quality.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from captioning.bundle import ArtifactBundle, atomic_write
from captioning.concepts import DEFAULT_CONCEPT_THRESHOLD, ConceptTable, softmax
from captioning.decoder_step import condition_ids
from captioning.predictor import CaptionPredictor
from captioning.runtime import EncoderRuntime
from captioning.text import Vocabulary
from training.artifacts import base_manifest, export_artifacts, export_encoder
from training.batches import (
    CaptionBatches,
    MirroredImages,
    TextCaptions,
    encode_captions,
    encode_groups,
    keep_readable,
    mirror_captions,
)
from training.callbacks import DevSelection, WeightAverage
from training.concepts import (
    CONCEPT_VECTOR_DIM,
    CommonWords,
    build_for_vocabulary,
    concept_vectors,
    word_vectors,
)
from training.config import TrainConfig
from training.corpora import (
    ConceptReader,
    TextCorpus,
    build_vocabulary,
    corpora_manifest,
    parse_corpus_names,
    read_corpora,
)
from training.data import Flickr8k, Split, load_flickr8k
from training.features import Features, cache_key, extract_features
from training.loop import (
    build_or_resume_decoder,
    cross_entropy_done,
    make_strategy,
    run_cross_entropy,
)
from training.modeling.decoder import DecoderConfig
from training.modeling.encoders import IMAGENET_HEAD, build_encoder, get_spec
from training.modeling.keras_runtime import KerasEncoder, make_encoder_runtime
from training.self_critical import run_self_critical
from training.state import AVERAGE_FILE, BEST_WEIGHTS_FILE, FINAL_FILE, TrainState
from training.wordnet import WordNet

logger = logging.getLogger(__name__)

MIRRORED_TRAIN = "train_mirrored"  # the features of the mirrored training photos


@dataclass
class TrainingData:
    """The readable images of both splits, their features, and the caption arrays to learn."""

    train: Split
    train_features: Features
    dev: Split
    dev_features: Features
    vocabulary: Vocabulary
    max_words: int
    train_captions: np.ndarray  # encode_captions' ids
    mirrored: MirroredImages | None
    concepts: ConceptTable | None = None
    # A decoder conditioned on concepts: each training photo's concept (index + 1, 0: none)
    # and the text-only captions with theirs.
    train_entities: np.ndarray | None = None
    text: TextCaptions | None = None
    corpora: list[TextCorpus] = field(default_factory=list)
    # The caption text the concepts' noun forms were counted in: source -> captions.
    forms_counted_in: dict[str, int] = field(default_factory=dict)


def ships_concepts(config: TrainConfig) -> bool:
    """Concepts come from the ImageNet classifier, which only the pretrained Lite models have."""
    return (
        config.concepts
        and config.encoder_weights == "imagenet"
        and config.backbone.startswith("efficientnet_lite")
    )


def train(config: TrainConfig) -> dict:
    """The whole pipeline from dataset folder to artifacts; returns the manifest."""
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    dataset = load_dataset(config)
    encoder = build_encoder(
        config.backbone, config.encoder_weights, include_top=ships_concepts(config)
    )
    encoder_tflite = export_encoder(config, encoder)
    # Features from the encoder the service will run (LiteRT when exported and installed), so
    # that training sees what serving computes.
    runner = make_encoder_runtime(encoder, encoder_tflite)
    data = prepare_data(config, dataset, runner, encoder)
    decoder_config = make_decoder_config(config, data)
    spec = get_spec(config.backbone)
    manifest = base_manifest(config, spec, decoder_config, data.vocabulary, data.max_words, dataset)
    if data.corpora:
        manifest["text_corpora"] = corpora_manifest(data.corpora, config.text_groups_per_epoch)
        if decoder_config.styles:
            manifest["decoder"]["style_names"] = ["flickr8k", *(c.name for c in data.corpora)]
    make_predictor = predictor_factory(encoder, data.vocabulary, manifest, data.concepts)
    entity_vectors = None
    if decoder_config.entities:
        glove = CommonWords.load()
        entity_vectors = (
            concept_vectors(data.concepts, glove),
            word_vectors(data.vocabulary, glove),
        )
    decoder, state = train_decoder(
        config, data, decoder_config, make_predictor, manifest, started, entity_vectors
    )
    manifest["training"].update(
        features_runtime=runner.name,
        epochs_run=state.epoch,
        self_critical_epochs_run=state.self_critical_epochs,
        best_epoch=state.best_epoch,
        history=state.history,
        minutes=round((time.time() - started) / 60, 1),
    )
    return export_artifacts(
        config,
        encoder,
        encoder_tflite,
        decoder,
        decoder_config,
        data.vocabulary,
        manifest,
        data.dev,
        data.dev_features,
        data.concepts,
        data.forms_counted_in,
    )


def load_dataset(config: TrainConfig) -> Flickr8k:
    """The dataset's splits, the train split cut to `max_train_images` when set."""
    dataset = load_flickr8k(config.data_dir)
    for name in ("train", "dev"):
        if not len(dataset.splits[name]):
            raise RuntimeError(f"the {name} split has no usable images in {config.data_dir}")
    if config.max_train_images:
        train_split = dataset.splits["train"]
        n = config.max_train_images
        dataset.splits["train"] = Split(
            "train",
            train_split.image_paths[:n],
            train_split.captions[:n],
            train_split.raw_captions[:n],
        )
    return dataset


def prepare_features(
    config: TrainConfig, dataset: Flickr8k, runner: EncoderRuntime
) -> dict[str, Features]:
    spec = get_spec(config.backbone)
    logger.info("features from the %s encoder", runner.name)
    features = {}
    caches = {}
    for name in ("train", "dev"):
        split = dataset.splits[name]
        key = cache_key(
            config.backbone,
            f"{config.encoder_weights}|{runner.name}",
            spec.input_size,
            split.image_paths,
        )
        caches[name] = config.work_dir / "features" / f"{config.backbone}-{key}"
        features[name] = extract_features(
            runner, split.image_paths, spec.input_size, caches[name], name
        )
    if config.mirror_images:
        features[MIRRORED_TRAIN] = extract_features(
            runner,
            dataset.splits["train"].image_paths,
            spec.input_size,
            caches["train"],
            MIRRORED_TRAIN,
            mirror=True,
        )
    return features


def prepare_data(
    config: TrainConfig, dataset: Flickr8k, runner: EncoderRuntime, encoder: keras.Model
) -> TrainingData:
    """Features of both splits (cached), the text corpora, the vocabulary, the concepts and
    the training captions as ids."""
    features = prepare_features(config, dataset, runner)
    train_split, train_features = keep_readable(dataset.splits["train"], features["train"])
    dev_split, dev_features = keep_readable(dataset.splits["dev"], features["dev"])
    corpora = []
    if config.text_corpora is not None:
        if not ships_concepts(config):
            raise ValueError(
                "--text-corpora teaches a decoder conditioned on concepts: it needs --concepts "
                "(an EfficientNet-Lite with ImageNet weights)"
            )
        corpora = read_corpora(config.text_corpora, parse_corpus_names(config.corpora))

    vocabulary = build_vocabulary(
        [c for refs in train_split.captions for c in refs],
        corpora,
        config.min_word_count,
        config.corpus_min_count,
    )
    lengths = [len(c) for refs in train_split.captions for c in refs]
    max_words = min(config.max_caption_words, int(np.percentile(lengths, 99.5)))
    with_text = f", or >= {config.corpus_min_count} with the text corpora" if corpora else ""
    logger.info(
        "vocabulary: %d words (count >= %d%s); captions up to %d words",
        len(vocabulary),
        config.min_word_count,
        with_text,
        max_words,
    )
    train_captions = encode_captions(train_split, vocabulary, config.captions_per_image, max_words)
    mirrored = None
    if config.mirror_images:  # the same images are unreadable mirrored or not
        mirrored_features = keep_readable(dataset.splits["train"], features[MIRRORED_TRAIN])[1]
        mirrored = MirroredImages(mirrored_features, mirror_captions(train_captions, vocabulary))
    data = TrainingData(
        train_split,
        train_features,
        dev_split,
        dev_features,
        vocabulary,
        max_words,
        train_captions,
        mirrored,
        corpora=corpora,
    )
    if ships_concepts(config):
        add_concepts(config, data, encoder)
    return data


def add_concepts(config: TrainConfig, data: TrainingData, encoder: keras.Model) -> None:
    """The concept table; with `concept_input`, every photo's concept as the encoder sees it
    (as the service will), and the concept each text-only caption names."""
    photo_captions = [caption for captions in data.train.captions for caption in captions]
    corpus_captions = [c for corpus in data.corpora for group in corpus.groups for c in group]
    data.forms_counted_in = {
        "flickr8k train": len(photo_captions),
        **{corpus.name: corpus.captions for corpus in data.corpora},
    }
    data.concepts = build_for_vocabulary(
        data.vocabulary, config.wordnet_dir, photo_captions + corpus_captions
    )
    classifier = ConceptClassifier(encoder, data.concepts)
    data.train_features.concepts = classifier(data.train_features.pooled)
    data.dev_features.concepts = classifier(data.dev_features.pooled)
    if not (config.concept_input or data.corpora):
        return
    entities = data.concepts.entities(data.train_features.concepts, DEFAULT_CONCEPT_THRESHOLD)
    entities = entities.astype(np.int32)  # the decoder's input dtype
    data.train_features.entities = entities
    data.train_entities = np.repeat(entities[:, None], config.captions_per_image, axis=1)
    logger.info(
        "training photos with a concept: %d of %d", np.count_nonzero(entities), len(entities)
    )
    if data.corpora:
        groups = [group for corpus in data.corpora for group in corpus.groups]
        counts = WordNet.load(config.wordnet_dir).counts
        reader = ConceptReader(data.concepts, counts.reads_as_noun)
        per_image = config.captions_per_image
        named = np.array(
            [[reader(group[j % len(group)]) for j in range(per_image)] for group in groups],
            np.int32,
        )
        logger.info(
            "text-only captions: %d groups, %.0f%% of captions name a concept",
            len(groups),
            100 * np.count_nonzero(named) / named.size,
        )
        if config.caption_styles:  # each corpus its own style, after the photos' (0)
            styles = np.concatenate(
                [np.full(len(c.groups), index + 1) for index, c in enumerate(data.corpora)]
            )
            named = condition_ids(named, styles[:, None], len(data.concepts.words))
            named = named.astype(np.int32)
        # Each corpus as likely as another: Flickr30k's 29,000 people scenes would otherwise
        # drown COCO's 5,000 photos of things.
        chances = np.concatenate(
            [np.full(len(c.groups), 1 / len(c.groups)) for c in data.corpora]
        ) / len(data.corpora)
        data.text = TextCaptions(
            encode_groups(groups, data.vocabulary, per_image, data.max_words), named, chances
        )


class ConceptClassifier:
    """Pooled features -> concept probabilities, through the encoder's own ImageNet head (the
    features cache keeps no class logits; the head is one dense layer on the pooled vector)."""

    def __init__(self, encoder: keras.Model, table: ConceptTable) -> None:
        self.kernel, self.bias = encoder.get_layer(IMAGENET_HEAD).get_weights()
        self.table = table

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        logits = np.asarray(pooled, np.float32) @ self.kernel + self.bias
        return self.table.concept_probabilities(softmax(logits))


def make_decoder_config(config: TrainConfig, data: TrainingData) -> DecoderConfig:
    spec = get_spec(config.backbone)
    conditioned = data.train_entities is not None and data.concepts is not None
    return DecoderConfig(
        entities=len(data.concepts.words) if conditioned else 0,
        entity_dim=CONCEPT_VECTOR_DIM if conditioned else 0,
        styles=len(data.corpora) if conditioned and config.caption_styles else 0,
        vocab_size=len(data.vocabulary),
        feature_dim=spec.feature_dim,
        regions=spec.grid_size**2,
        embedding_dim=config.embedding_dim,
        hidden_dim=config.hidden_dim,
        dropout=config.dropout,
        region_dropout=config.region_dropout,
    )


def predictor_factory(
    encoder: keras.Model, vocabulary: Vocabulary, manifest: dict, concepts: ConceptTable | None
) -> Callable[[keras.Model], CaptionPredictor]:
    """Dev scoring captions through the service's predictor, with the decoder in training."""

    def make_predictor(decoder: keras.Model) -> CaptionPredictor:
        bundle = ArtifactBundle(encoder, decoder, vocabulary, manifest, concepts=concepts)
        return CaptionPredictor(bundle, encoder=KerasEncoder(encoder))

    return make_predictor


def train_decoder(
    config: TrainConfig,
    data: TrainingData,
    decoder_config: DecoderConfig,
    make_predictor: Callable[[keras.Model], CaptionPredictor],
    manifest: dict,
    started: float,
    entity_vectors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[keras.Model, TrainState]:
    """Cross-entropy epochs, then self-critical ones; the decoder holds the best weights."""
    strategy = make_strategy(config.strategy)
    logger.info(
        "distribution: %s with %d replica(s)", config.strategy, strategy.num_replicas_in_sync
    )
    manifest["training"]["replicas"] = strategy.num_replicas_in_sync
    checkpoint_dir = config.work_dir / "checkpoints"
    decoder, state = build_or_resume_decoder(
        config, decoder_config, strategy, checkpoint_dir, entity_vectors
    )
    average = None
    if config.weight_average:
        average = WeightAverage(config.weight_average, checkpoint_dir / AVERAGE_FILE)
        if state.epoch == 0:  # a fresh run: no average left over from another one
            (checkpoint_dir / AVERAGE_FILE).unlink(missing_ok=True)
    selection = DevSelection(
        config, make_predictor, data.dev, data.dev_features, state, started, average
    )
    if not cross_entropy_done(config, state):
        batches = CaptionBatches(
            data.train_features,
            data.train_captions,
            config.batch_images,
            config.seed + state.epoch,
            data.mirrored,
            entities=data.train_entities,
            text=data.text,
            text_per_epoch=config.text_groups_per_epoch,
            # Without a concept to go on, a photo without features teaches nothing.
            photo_dropout=config.photo_dropout if data.train_entities is not None else 0.0,
        )
        run_cross_entropy(
            decoder,
            batches,
            [c for c in (average, selection) if c is not None],
            initial_epoch=state.epoch,
            epochs=config.epochs,
            distributed=config.strategy != "default",
        )
    run_self_critical(
        config,
        decoder,
        decoder_config,
        data.vocabulary,
        data.max_words,
        data.train,
        data.train_features,
        selection,
    )
    atomic_write(checkpoint_dir / FINAL_FILE, decoder.save)  # the last weights trained
    if (checkpoint_dir / BEST_WEIGHTS_FILE).is_file():
        decoder.load_weights(checkpoint_dir / BEST_WEIGHTS_FILE)
    return decoder, state
