"""The run's output: the encoder's LiteRT export, the manifest, and the artifacts folder."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime

import keras
import numpy as np
import tensorflow as tf

import captioning
from captioning.bundle import ArtifactBundle
from captioning.concepts import DEFAULT_CONCEPT_THRESHOLD, ConceptTable
from captioning.decoder_step import DecoderWeights
from captioning.predictor import CaptionPredictor
from captioning.text import Vocabulary
from captioning.types import EncodedImages
from training.concepts import build_for_vocabulary, concepts_manifest
from training.config import TrainConfig
from training.data import Flickr8k, Split
from training.export import export_decoder_step, export_tflite
from training.features import Features
from training.metrics import score_captions
from training.modeling.decoder import DecoderConfig, build_decoder
from training.modeling.encoders import EncoderSpec
from training.modeling.keras_runtime import KerasEncoder

logger = logging.getLogger(__name__)

# The configuration's fields that are paths on the training machine, left out of the manifest.
# Paths on the training machine; the manifest records what they held instead.
LOCAL_FIELDS = ("data_dir", "artifacts_dir", "work_dir", "wordnet_dir", "text_corpora", "extra")


def export_encoder(config: TrainConfig, encoder: keras.Model) -> bytes | None:
    """The encoder's LiteRT export, made before the features so that they come from it."""
    if not config.export_tflite:
        return None
    try:
        return export_tflite(encoder)
    except Exception:  # the Keras model stays usable on its own
        logger.exception("LiteRT export failed; the service will encode with TensorFlow")
        return None


def export_artifacts(
    config: TrainConfig,
    encoder: keras.Model,
    encoder_tflite: bytes | None,
    decoder: keras.Model,
    decoder_config: DecoderConfig,
    vocabulary: Vocabulary,
    manifest: dict,
    dev: Split,
    dev_features: Features,
    concepts: ConceptTable | None = None,
    forms_counted_in: dict[str, int] | None = None,
) -> dict:
    """Strip the optimizer (a fresh, uncompiled copy), score dev with beam search, write."""
    serving_decoder = build_decoder(decoder_config)
    serving_decoder.set_weights(decoder.get_weights())
    step = None
    if config.export_tflite:
        try:
            step = export_decoder_step(DecoderWeights.from_model(serving_decoder))
        except Exception:  # NumPy decodes from decoder.keras alone
            logger.exception("LiteRT decoder-step export failed; the service will use NumPy")
    bundle = ArtifactBundle(encoder, serving_decoder, vocabulary, manifest, encoder_tflite, step)
    if len(encoder.outputs) > 2:  # the ImageNet head: tags and captions that name them
        bundle.concepts = concepts or build_for_vocabulary(vocabulary, config.wordnet_dir)
        manifest["encoder"]["classes"] = bundle.concepts.num_classes
        manifest["concepts"] = concepts_manifest(
            bundle.concepts, DEFAULT_CONCEPT_THRESHOLD, forms_counted_in
        )
    # Dev is scored on the cached features, with their concepts but without grounding (added
    # later by add-grounding); `python -m training evaluate` scores the whole service path.
    predictor = CaptionPredictor(bundle, encoder=KerasEncoder(encoder))
    encoded = EncodedImages(
        np.asarray(dev_features.grid, np.float32), dev_features.pooled, dev_features.concepts
    )
    settings = predictor.search.with_options(beam_size=config.eval_beam_size)
    results = predictor.generate(encoded, settings)
    metrics = score_captions(dev.raw_captions, [r.best.text for r in results], full=True)
    manifest["metrics"] = {
        "dev": {"beam_size": config.eval_beam_size, "images": len(dev), **metrics}
    }
    logger.info("dev metrics (beam %d): %s", config.eval_beam_size, metrics)
    return bundle.save(config.artifacts_dir)


def base_manifest(
    config: TrainConfig,
    spec: EncoderSpec,
    decoder_config: DecoderConfig,
    vocabulary: Vocabulary,
    max_words: int,
    dataset: Flickr8k,
) -> dict:
    """Everything the manifest says before training: the model's shape, data and settings."""
    created = datetime.now(UTC)
    return {
        "model_id": f"{config.backbone}-attention-lstm-{created:%Y%m%d-%H%M%S}",
        "created_at": created.isoformat(timespec="seconds"),
        "encoder": {
            "backbone": spec.name,
            "weights": str(config.encoder_weights),
            "input_size": spec.input_size,
            "grid_size": spec.grid_size,
            "feature_dim": spec.feature_dim,
            "preprocessing": f"upright RGB, resized without cropping to {spec.input_size}x"
            f"{spec.input_size} (bilinear), float pixels 0..255; normalisation inside the model",
        },
        "decoder": {
            **decoder_config.to_dict(),
            "architecture": "LSTM, state from pooled features, attention over the grid"
            + (
                "; conditioned on the photo's concept (GloVe vector into the state and every "
                "step; a second output path through the words' GloVe vectors)"
                if decoder_config.entities
                else ""
            ),
            "max_length": max_words,
            "length_penalty": config.length_penalty,
            "no_repeat_ngram": config.no_repeat_ngram,
            "default_beam_size": config.eval_beam_size,
        },
        "vocabulary": {
            "size": len(vocabulary),
            "min_count": config.min_word_count,
            **({"corpus_min_count": config.corpus_min_count} if config.text_corpora else {}),
        },
        "dataset": {
            "name": "Flickr8k",
            "layout": dataset.layout,
            "splits": dataset.split_sizes(),
            "problems": dataset.report.summary(),
        },
        "training": {k: v for k, v in asdict(config).items() if k not in LOCAL_FIELDS},
        "versions": {
            "captioner": captioning.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
    }
