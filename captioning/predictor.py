"""One predictor object shared by the service, the command line, evaluation and the tests."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from captioning.bundle import ENCODER_TFLITE, ArtifactBundle, ArtifactError, load_bundle
from captioning.concepts import DEFAULT_CONCEPT_THRESHOLD, ConceptTable, Tag, softmax
from captioning.decoding import (
    DEFAULT_BEAM_SIZE,
    DEFAULT_LENGTH_PENALTY,
    DecoderWeights,
    Hypothesis,
    beam_search,
    constrained_beam_search,
    greedy_decode,
)
from captioning.images import load_image_file, to_model_batch
from captioning.runtime import (
    DEFAULT_RUNTIME,
    EncoderRuntime,
    LiteRTDecoderStep,
    LiteRTEncoder,
    RuntimeOptions,
    make_decoder_step,
)
from captioning.text import Vocabulary
from captioning.types import Caption, CaptionResult

logger = logging.getLogger(__name__)

MAX_BEAM_SIZE = 10
DEFAULT_NO_REPEAT_NGRAM = 3


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int = DEFAULT_BEAM_SIZE  # 1 = greedy
    max_length: int | None = None  # None: the manifest's maximum caption length
    num_captions: int = 1  # n-best, at most beam_size
    return_attention: bool = False
    length_penalty: float | None = None  # None: the manifest's; score = log_prob / len**penalty
    no_repeat_ngram: int | None = None  # None: the manifest's; 0 allows repeated n-grams
    # Name the photo's most specific confident concept in the caption (when the model has
    # concepts); False gives the captions of the decoder alone.
    concepts: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.beam_size <= MAX_BEAM_SIZE:
            raise ValueError(f"beam_size must be between 1 and {MAX_BEAM_SIZE}")
        if not 1 <= self.num_captions <= self.beam_size:
            raise ValueError("num_captions must be between 1 and beam_size")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError("max_length must be at least 1")


@dataclass(frozen=True)
class EncodedImages:
    grid: np.ndarray  # (batch, regions, channels) float32
    pooled: np.ndarray  # (batch, channels) float32
    concepts: np.ndarray | None = None  # (batch, concepts) probabilities; None without them

    def __len__(self) -> int:
        return len(self.pooled)

    def __getitem__(self, index: slice | np.ndarray | list[int]) -> EncodedImages:
        concepts = None if self.concepts is None else self.concepts[index]
        return EncodedImages(self.grid[index], self.pooled[index], concepts)


@dataclass(frozen=True)
class _Subject:
    """The concept a caption is made to name, and how. The decoder writes one of the
    `written` tokens (the concept's word or a stand-in it knows, singular or plural), and
    the caption shows the concept's word in its place. A caption that already has one of the
    `named` tokens (the concept or a broader one, as words: "dog" for a terrier) is kept."""

    written: dict[int, str]  # token -> the words shown in its place
    named: frozenset[int]


class CaptionPredictor:
    """Image(s) in, captions out: preprocessing, encoder runtime and decoding in one place."""

    def __init__(
        self,
        bundle: ArtifactBundle,
        *,
        runtime: RuntimeOptions = DEFAULT_RUNTIME,
        encoder: EncoderRuntime | None = None,
    ) -> None:
        """`encoder`: an encoder runtime built by the caller (training's Keras encoder, for a
        model not yet exported); None: the bundle's encoder.tflite on LiteRT."""
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.vocabulary: Vocabulary = bundle.vocabulary
        try:
            encoder_info = self.manifest["encoder"]
            self.input_size = int(encoder_info["input_size"])
            self.grid_size = int(encoder_info["grid_size"])
            self.max_length = int(self.manifest["decoder"]["max_length"])
            self.length_penalty = float(
                self.manifest["decoder"].get("length_penalty", DEFAULT_LENGTH_PENALTY)
            )
            self.no_repeat_ngram = int(
                self.manifest["decoder"].get("no_repeat_ngram", DEFAULT_NO_REPEAT_NGRAM)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"manifest.json lacks a required field: {exc}") from exc
        self.model_id = str(self.manifest.get("model_id", "unknown"))
        if encoder is None and bundle.tflite_encoder is None:
            raise ArtifactError(
                f"the artifacts have no {ENCODER_TFLITE}, which the service encodes with: "
                "export it with `python -m training export-tflite --artifacts <folder>`"
            )
        if encoder is None:
            encoder = LiteRTEncoder(bundle.tflite_encoder, options=runtime)
        self.encoder: EncoderRuntime = encoder
        self.weights = (
            DecoderWeights.from_model(bundle.decoder)
            if bundle.decoder is not None
            else DecoderWeights.from_layers(bundle.decoder_layers or {})
        )
        if self.weights.word_gates.shape[0] != len(self.vocabulary):
            raise ArtifactError("decoder.keras and tokenizer.p disagree on the vocabulary size")
        self.decoder_step: LiteRTDecoderStep | None = make_decoder_step(
            bundle.tflite_decoder_step, options=runtime
        )
        self.concepts: ConceptTable | None = bundle.concepts
        self.concept_threshold = float(
            self.manifest.get("concepts", {}).get("threshold", DEFAULT_CONCEPT_THRESHOLD)
        )
        self._check_concepts(bundle.concepts)
        self._subject_cache: dict[int, _Subject] = {}
        logger.info(
            "model %s: %s encoder via %s, decoder via %s, vocabulary %d",
            self.model_id,
            encoder_info.get("backbone"),
            self.encoder.name,
            self.decoder_runtime,
            len(self.vocabulary),
        )

    def _check_concepts(self, concepts: ConceptTable | None) -> None:
        if concepts is None:
            return
        stand_ins = {*concepts.stand_ins, *(w for w in concepts.stand_in_plurals if w)}
        unknown = sorted(w for w in stand_ins if w not in self.vocabulary)
        if unknown:
            raise ArtifactError(f"concepts.json: stand-in words not in tokenizer.p: {unknown[:5]}")

    def _subject(self, index: int) -> _Subject:
        if index not in self._subject_cache:
            table = self.concepts
            assert table is not None
            written = {self.vocabulary.id_of(table.stand_ins[index]): table.words[index]}
            if table.stand_in_plurals[index]:
                plural_id = self.vocabulary.id_of(table.stand_in_plurals[index])
                written[plural_id] = table.plurals[index]
            named = {
                self.vocabulary.id_of(word)
                for concept in table.related(index)
                for word in (table.words[concept], table.plurals[concept], *table.synonyms[concept])
                if word in self.vocabulary
            }
            self._subject_cache[index] = _Subject(written, frozenset(named))
        return self._subject_cache[index]

    @property
    def decoder_runtime(self) -> str:
        return self.decoder_step.name if self.decoder_step is not None else "numpy"

    @classmethod
    def from_artifacts(
        cls, path: Path | str, *, runtime: RuntimeOptions = DEFAULT_RUNTIME
    ) -> CaptionPredictor:
        """Load and verify an artifacts folder; raises ArtifactError naming the file and problem."""
        return cls(load_bundle(path), runtime=runtime)

    def warmup(self) -> None:
        """Run every path once, so the first request pays no tracing or allocation cost, and
        check the outputs: a model that computes NaN or no caption must not start serving."""
        pixels = np.full((2, self.input_size, self.input_size, 3), 127.0, np.float32)
        for batch in (1, 2):  # one image and a batch may take different encoder paths
            encoded = self.encode(pixels[:batch])
            if not (np.isfinite(encoded.grid).all() and np.isfinite(encoded.pooled).all()):
                raise ArtifactError(f"the {self.encoder.name} encoder computes non-finite features")
        encoded = encoded[:1]
        for beam_size in (1, DEFAULT_BEAM_SIZE):
            captions = self.generate(encoded, DecodeOptions(beam_size=beam_size))
            if not captions[0] or not np.isfinite(captions[0][0].log_prob):
                raise ArtifactError(f"the decoder gives no valid caption at beam size {beam_size}")
        if self.concepts is not None:  # the constrained search's step shapes, once
            required = [list(self._subject(0).written)]
            constrained_beam_search(
                self.weights, encoded.grid, encoded.pooled, required, DEFAULT_BEAM_SIZE,
                self.max_length, runtime=self.decoder_step,
            )  # fmt: skip

    def read_image(self, path: Path | str) -> Image.Image:
        """An image file, decoded as the service decodes uploads (see `decode_upload`)."""
        return load_image_file(Path(path), min_size=self.input_size)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return to_model_batch(images, self.input_size)

    def encode(self, pixels: np.ndarray) -> EncodedImages:
        grid, pooled, class_logits = self.encoder(pixels)
        concepts = None
        if self.concepts is not None and class_logits is not None:
            if class_logits.shape[1] != self.concepts.num_classes:
                raise ArtifactError(
                    f"the encoder has {class_logits.shape[1]} classes, "
                    f"concepts.json {self.concepts.num_classes}"
                )
            concepts = self.concepts.concept_probabilities(softmax(class_logits))
        return EncodedImages(grid.reshape(len(grid), -1, grid.shape[-1]), pooled, concepts)

    def tags(self, encoded: EncodedImages) -> list[tuple[Tag, ...]]:
        """Each image's tags: its concepts at or above the threshold, most likely first."""
        if encoded.concepts is None or self.concepts is None:
            return [() for _ in range(len(encoded))]
        return [
            tuple(self.concepts.tags(probabilities, self.concept_threshold))
            for probabilities in encoded.concepts
        ]

    def _subjects(self, encoded: EncodedImages) -> list[_Subject | None]:
        if encoded.concepts is None or self.concepts is None:
            return [None] * len(encoded)
        subjects: list[_Subject | None] = []
        for probabilities in encoded.concepts:
            index = self.concepts.subject(probabilities, self.concept_threshold)
            subjects.append(None if index is None else self._subject(index))
        return subjects

    def decoding_settings(self, options: DecodeOptions) -> tuple[float, int]:
        """The length penalty and no-repeat n-gram size `options` decode with."""
        penalty = self.length_penalty if options.length_penalty is None else options.length_penalty
        ngram = self.no_repeat_ngram if options.no_repeat_ngram is None else options.no_repeat_ngram
        return penalty, ngram

    def generate(self, encoded: EncodedImages, options: DecodeOptions) -> list[tuple[Caption, ...]]:
        """n-best captions for each encoded image, best first.

        With `options.concepts`, an image whose caption does not name its most specific
        confident concept is decoded again, constrained to name it."""
        max_length = min(options.max_length or self.max_length, self.max_length)
        penalty, ngram = self.decoding_settings(options)
        hypotheses = self._decode(encoded, options, max_length, penalty, ngram)
        subjects = self._subjects(encoded) if options.concepts else [None] * len(encoded)
        for index, subject in enumerate(subjects):
            if subject is not None and subject.named.intersection(hypotheses[index][0].token_ids):
                subjects[index] = None  # the decoder named it already, in its own words
        missing = [
            index
            for index, subject in enumerate(subjects)
            if subject is not None
            and not subject.written.keys() & set(hypotheses[index][0].token_ids)
        ]
        if missing:
            chosen = encoded[missing]
            constrained = constrained_beam_search(
                self.weights, chosen.grid, chosen.pooled,
                [list(subjects[i].written) for i in missing],  # type: ignore[union-attr]
                options.beam_size, max_length, options.num_captions, penalty,
                options.return_attention, ngram, self.decoder_step,
            )  # fmt: skip
            for index, found in zip(missing, constrained, strict=True):
                hypotheses[index] = found
        return [
            tuple(self._to_caption(h, subject) for h in per_image)
            for per_image, subject in zip(hypotheses, subjects, strict=True)
        ]

    def _decode(
        self,
        encoded: EncodedImages,
        options: DecodeOptions,
        max_length: int,
        penalty: float,
        ngram: int,
    ) -> list[list[Hypothesis]]:
        if options.beam_size == 1:
            return [
                [hyp]
                for hyp in greedy_decode(
                    self.weights, encoded.grid, encoded.pooled, max_length,
                    options.return_attention, penalty, ngram, self.decoder_step,
                )
            ]  # fmt: skip
        return beam_search(
            self.weights, encoded.grid, encoded.pooled, options.beam_size, max_length,
            options.num_captions, penalty, options.return_attention, ngram, self.decoder_step,
        )  # fmt: skip

    def caption_images(
        self, images: Sequence[Image.Image], options: DecodeOptions | None = None
    ) -> list[CaptionResult]:
        """preprocess + encode + generate, with timings in ms for the whole batch."""
        options = options or DecodeOptions()
        started = time.perf_counter()
        pixels = self.preprocess(images)
        preprocessed = time.perf_counter()
        encoded = self.encode(pixels)
        encoded_at = time.perf_counter()
        captions = self.generate(encoded, options)
        tags = self.tags(encoded)
        finished = time.perf_counter()
        timings = {
            "preprocess": (preprocessed - started) * 1000,
            "encode": (encoded_at - preprocessed) * 1000,
            "generate": (finished - encoded_at) * 1000,
        }
        return [
            CaptionResult(per_image, dict(timings), image_tags)
            for per_image, image_tags in zip(captions, tags, strict=True)
        ]

    def _to_caption(self, hypothesis: Hypothesis, subject: _Subject | None = None) -> Caption:
        words = tuple(self.vocabulary.decode(hypothesis.token_ids))
        if subject is not None:
            position = next(
                (i for i, t in enumerate(hypothesis.token_ids) if t in subject.written), None
            )
            if position is not None:
                shown = subject.written[hypothesis.token_ids[position]]
                words = name_subject(words, position, shown)
        attention = None
        if hypothesis.attention is not None:
            attention = hypothesis.attention.reshape(-1, self.grid_size, self.grid_size)
        return Caption(
            text=" ".join(words),
            tokens=words,
            log_prob=hypothesis.log_prob,
            score=hypothesis.score,
            attention=attention,
        )


_AN_EXCEPTIONS = ("uni", "use", "usu", "eu", "one", "once")
_SILENT_H = ("hour", "honest", "honor", "honour", "heir")


def name_subject(words: tuple[str, ...], position: int, word: str) -> tuple[str, ...]:
    """The caption with `word` at `position` (where the decoder wrote its stand-in), and the
    article before it agreeing ("a animal" -> "an axolotl", "an animal" -> "a zebra")."""
    named = list(words)
    parts = word.split(" ")
    # "soccer" + "ball" -> "soccer ball", not "soccer soccer ball".
    lead = next(
        (
            k
            for k in range(len(parts) - 1, 0, -1)
            if named[max(position - k, 0) : position] == parts[:k]
        ),
        0,
    )
    named[position - lead : position + 1] = [word]
    position -= lead
    if position > 0 and named[position - 1] in ("a", "an"):
        named[position - 1] = "an" if _takes_an(word) else "a"
    return tuple(named)


def _takes_an(word: str) -> bool:
    if word.startswith(_SILENT_H):
        return True
    return word[:1] in "aeiou" and not word.startswith(_AN_EXCEPTIONS)
