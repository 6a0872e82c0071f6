"""One predictor object shared by the service, the command line, evaluation and the tests."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np
from PIL import Image

from captioning.bundle import ENCODER_TFLITE, ArtifactBundle, ArtifactError, load_bundle
from captioning.claims import FALLBACK_CONCEPT_MIN, ClaimRule, is_word_salad
from captioning.concepts import DEFAULT_CONCEPT_THRESHOLD, ConceptTable, Tag, softmax
from captioning.decoder_step import DecoderWeights, condition_ids
from captioning.images import load_image_file, to_model_batch
from captioning.phrases import (
    COLOURS,
    NAME_WITHIN,
    WordRoles,
    frame_rule,
    phrase_kinds,
    sure_length,
    sure_words,
    word_roles,
)
from captioning.runtime import (
    DEFAULT_RUNTIME,
    EncoderRuntime,
    LiteRTDecoderStep,
    LiteRTEncoder,
    RuntimeOptions,
    make_decoder_step,
)
from captioning.search import Hypothesis, beam_search, constrained_beam_search, greedy_decode
from captioning.search_settings import (
    DEFAULT_BEAM_SIZE,
    DEFAULT_LENGTH_PENALTY,
    DEFAULT_NO_REPEAT_NGRAM,
    SearchSettings,
    SearchSettingsError,
)
from captioning.subjects import Subject, SubjectNamer, agree_articles
from captioning.text import Vocabulary
from captioning.types import Caption, CaptionResult, EncodedImages, Evidence

logger = logging.getLogger(__name__)

# What Flickr8k's photos show: where grounding finds one of them, the decoder knows the scene;
# elsewhere it guesses the setting, so its captions stop where it is unsure
# (`SearchSettings.min_word_probability`).
SCENE_SUBJECTS = ("person", "dog")
# For a decoder trained with caption styles (`--caption-styles`): the style "auto" writes
# photos of Flickr8k's scenes in Flickr8k's own style, and the rest in COCO's, the corpus of
# everyday things (docs/experiments.md).
AUTO_STYLE = "auto"
OBJECT_STYLE = "coco"
# What a photo outside Flickr8k's scenes left with word salad and no concept is called, by what
# grounding finds in it: the evidence is surer than any word the decoder could not put in a
# sentence. (On people and dogs the decoder's own sentence stays: a fluent one repeating
# "white" reads as salad to the rule.)
EVIDENCE_NAMES = {"cat": ("a cat", "cats"), "animal": ("an animal", "animals")}
# The floor a caption holding an unsupported setting is cut with, on photos whose captions are
# otherwise whole: only that setting's phrase goes.
UNSUPPORTED_FLOOR = 1e-9


class CaptionPredictor:
    """Image(s) in, captions out: preprocessing, encoder runtime and decoding in one place."""

    def __init__(
        self,
        bundle: ArtifactBundle,
        *,
        runtime: RuntimeOptions = DEFAULT_RUNTIME,
        encoder: EncoderRuntime | None = None,
        concept_threshold: float | None = None,
    ) -> None:
        """`encoder`: an encoder runtime built by the caller (training's Keras encoder, for a
        model not yet exported); None: the bundle's encoder.tflite on LiteRT.
        `concept_threshold`: None for the manifest's."""
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.vocabulary: Vocabulary = bundle.vocabulary
        try:
            encoder_info = self.manifest["encoder"]
            self.input_size = int(encoder_info["input_size"])
            self.grid_size = int(encoder_info["grid_size"])
            self.search = _model_search_settings(self.manifest["decoder"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"manifest.json lacks a required field: {exc}") from exc
        self.model_id = str(self.manifest.get("model_id", "unknown"))
        if encoder is None and bundle.tflite_encoder is None:
            raise ArtifactError(
                f"the artifacts have no {ENCODER_TFLITE}, which the service encodes with: "
                "export it with `python -m training export-tflite --artifacts <folder>`"
            )
        self.encoder: EncoderRuntime = encoder or LiteRTEncoder(
            bundle.tflite_encoder, options=runtime
        )
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
        self.namer: SubjectNamer | None = None
        if bundle.concepts is not None:
            if concept_threshold is None:
                concepts_info = self.manifest.get("concepts", {})
                concept_threshold = concepts_info.get("threshold", DEFAULT_CONCEPT_THRESHOLD)
            self.namer = SubjectNamer(bundle.concepts, self.vocabulary, float(concept_threshold))
        if self.weights.entities:
            concepts = 0 if self.namer is None else len(self.namer.table.words)
            if concepts != self.weights.entities:
                raise ArtifactError(
                    f"decoder.keras is conditioned on {self.weights.entities} concepts, but "
                    f"concepts.json has {concepts}: they come from different trainings"
                )
        self.style_names: tuple[str, ...] = tuple(self.manifest["decoder"].get("style_names", ()))
        if self.weights.styles and len(self.style_names) != self.weights.styles + 1:
            raise ArtifactError(
                f"decoder.keras has {self.weights.styles + 1} caption styles, but the manifest "
                f"names {len(self.style_names)} (decoder.style_names)"
            )
        self.phrase_kinds = phrase_kinds(self.vocabulary)
        self.word_roles = word_roles(self.vocabulary)
        self.colour_ids = frozenset(
            self.vocabulary.id_of(word) for word in COLOURS if word in self.vocabulary
        )
        self.frame_rule = frame_rule(
            self.vocabulary, self.namer.table.checked_frames if self.namer else ()
        )
        self.grounding = bundle.grounding
        self.claim_rule: ClaimRule | None = None
        if self.grounding is not None and self.grounding.claims:
            self.claim_rule = ClaimRule(self.grounding.claims, self.vocabulary)
        logger.info(
            "model %s: %s encoder via %s, decoder via %s, vocabulary %d",
            self.model_id,
            encoder_info.get("backbone"),
            self.encoder.name,
            self.decoder_runtime,
            len(self.vocabulary),
        )

    @property
    def decoder_runtime(self) -> str:
        return self.decoder_step.name if self.decoder_step is not None else "numpy"

    @property
    def concepts(self) -> ConceptTable | None:
        return None if self.namer is None else self.namer.table

    @property
    def concept_threshold(self) -> float | None:
        return None if self.namer is None else self.namer.threshold

    @classmethod
    def from_artifacts(
        cls, path: Path | str, *, runtime: RuntimeOptions = DEFAULT_RUNTIME
    ) -> CaptionPredictor:
        """Load and verify an artifacts folder; raises ArtifactError naming the file and problem."""
        return cls(load_bundle(path), runtime=runtime)

    def warmup(self) -> None:
        """Run every path once, so the first request pays no tracing or allocation cost, and
        check the outputs: a model that computes NaN or no caption must not start serving
        (a model that loads fine can still compute garbage, e.g. a broken encoder export)."""
        gray = Image.new("RGB", (self.input_size, self.input_size), "gray")
        for batch in (1, 2):  # one image and a batch may take different encoder paths
            encoded = self.encode(self.preprocess([gray] * batch))
            if not (np.isfinite(encoded.grid).all() and np.isfinite(encoded.pooled).all()):
                raise ArtifactError(
                    f"model self-test failed: the {self.encoder.name} encoder computes NaN or "
                    "infinite features (a broken export?); re-export it with "
                    "`python -m training export-tflite`"
                )
        encoded = encoded[:1]
        for beam_size in (1, DEFAULT_BEAM_SIZE):
            settings = self.search.with_options(beam_size=beam_size)
            (result,) = self.generate(encoded, settings)
            if not result.captions or not np.isfinite(result.best.log_prob):
                raise ArtifactError(
                    f"model self-test failed: the decoder gives no valid caption at beam size "
                    f"{beam_size}"
                )
        if self.namer is not None:  # the constrained search's step shapes, once
            self._constrained(
                encoded, [self.namer.subject(0)], self.search, entities=self.entities(encoded)
            )

    def read_image(self, path: Path | str) -> Image.Image:
        """An image file, decoded as the service decodes uploads (see `decode_upload`)."""
        return load_image_file(Path(path), min_size=self.input_size)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return to_model_batch(images, self.input_size)

    def encode(self, pixels: np.ndarray) -> EncodedImages:
        grid, pooled, class_logits = self.encoder(pixels)
        grid = grid.reshape(len(grid), -1, grid.shape[-1])
        if class_logits is None:
            return EncodedImages(grid, pooled)
        classes = softmax(class_logits)
        concepts = None
        if self.namer is not None:
            if class_logits.shape[1] != self.namer.table.num_classes:
                raise ArtifactError(
                    f"the encoder has {class_logits.shape[1]} classes, "
                    f"concepts.json {self.namer.table.num_classes}"
                )
            concepts = self.namer.table.concept_probabilities(classes)
        return EncodedImages(grid, pooled, concepts, classes)

    def tags(self, encoded: EncodedImages) -> list[tuple[Tag, ...]]:
        """Each image's tags: its concepts at or above the threshold, most likely first."""
        if encoded.concepts is None or self.namer is None:
            return [() for _ in range(len(encoded))]
        table, threshold = self.namer.table, self.namer.threshold
        return [tuple(table.tags(row, threshold)) for row in encoded.concepts]

    def evidence(self, encoded: EncodedImages) -> list[tuple[Evidence, ...]]:
        """What grounding finds in each image, most likely first (nothing without heads)."""
        if self.grounding is None:
            return [() for _ in range(len(encoded))]
        return self.grounding.assess(encoded.pooled, encoded.classes).evidence

    def generate(
        self, encoded: EncodedImages, settings: SearchSettings | None = None
    ) -> list[CaptionResult]:
        """n-best captions for each encoded image, best first, with its tags and evidence.

        With `settings.grounding`, a word that claims a person, a dog, a cat, another animal,
        two of them or any living thing ("playing") is written only where the evidence (or the
        photo's confident concept) supports it, and word salad becomes the concept named
        plainly. With `settings.concepts`, an image whose caption does not name its most
        specific confident concept is decoded again, constrained to name it; on photos where
        grounding finds no person or dog, a less confident concept is named when none reaches
        the threshold (`UNKNOWN_SCENE_CONCEPT_THRESHOLD`). An image whose
        captions break English is decoded again with the searches kept from it (`WordRoles`).
        With `settings.min_word_probability` above 0, captions are cut where the decoder is
        unsure (photos without people or dogs) or names a setting without evidence (all), and a
        verb before a written-in concept that caption text never says of it becomes "with"."""
        settings = settings or self.search
        evidence = self.evidence(encoded)
        outside = guesses_scene(evidence)  # photos outside Flickr8k's scenes
        claim_rule = self.claim_rule if settings.grounding else None
        found: list[Subject | None] = [None] * len(encoded)
        if self.namer is not None and encoded.concepts is not None:
            # Outside Flickr8k's scenes a less confident concept beats the decoder's guess.
            unknown_scene = outside if claim_rule is not None else None
            found = self.namer.subjects(encoded.concepts, unknown_scene)
        penalty = None
        if claim_rule is not None:
            # The concept is evidence of its own: a terrier's caption may say "dog".
            allowed = [() if s is None else s.supported for s in found]
            penalty = claim_rule.word_penalty(evidence, allowed)
        entities = self.entities(encoded, self.styles(settings.style, evidence))
        # Photos outside Flickr8k's scenes get captions that name their subject first and
        # stop where the decoder is unsure (none when min_word_probability is 0).
        unsure = outside & (settings.min_word_probability > 0.0)
        name_within = np.where(unsure, NAME_WITHIN, 0)
        subjects = found if settings.concepts else [None] * len(encoded)
        hypotheses, subjects = self._decode(
            encoded, settings, penalty, entities, subjects, name_within, roles=None
        )
        # Broken English ("a little is sitting", "sunglasses and sunglasses") is decoded again
        # with the searches kept from it. Word salad is judged first (guarded, it would read
        # as a false sentence): a photo with a concept to name plainly gets that instead.
        broken = [
            index
            for index, per_image in enumerate(hypotheses)
            if any(self.word_roles.breaks(h.token_ids) for h in per_image)
        ]
        plain: dict[int, str] = {}
        for index in broken if penalty is not None else ():
            if self._is_salad(hypotheses[index][0]):
                text = self._plain_name(found[index], encoded, index, evidence[index])
                if text is not None:
                    plain[index] = text
        broken = [index for index in broken if index not in plain]
        if broken:
            redone, again = self._decode(
                encoded[broken],
                settings,
                None if penalty is None else penalty[broken],
                None if entities is None else entities[broken],
                [found[i] if settings.concepts else None for i in broken],
                name_within[broken],
                roles=self.word_roles,
            )
            for index, per_image, subject in zip(broken, redone, again, strict=True):
                hypotheses[index], subjects[index] = per_image, subject
        # Settings the evidence does not support ("in the snow" without snow) are cut from
        # every photo's captions, where cutting is on.
        unsupported = [frozenset[int]()] * len(encoded)
        if claim_rule is not None and settings.min_word_probability > 0.0:
            unsupported = [claim_rule.unsupported_settings(items) for items in evidence]
        hypotheses = [
            [
                self._sure_part(
                    h,
                    subject,
                    settings,
                    floor=settings.min_word_probability if cut else 0.0,
                    unsupported=setting_ids,
                    # Known to be outside Flickr8k's scenes only where grounding looked.
                    guessed=self.colour_ids if claim_rule is not None else frozenset(),
                )
                for h in per_image
            ]
            for per_image, subject, cut, setting_ids in zip(
                hypotheses, found, unsure, unsupported, strict=True
            )
        ]
        # A concept the search wrote in takes no verb the decoder chose for another noun and
        # caption text never says of it: "a girl is riding a sax" -> "a girl with a sax".
        hypotheses = [
            [self._loose_frame(h, subject, settings) for h in per_image]
            for per_image, subject in zip(hypotheses, subjects, strict=True)
        ]
        results = [
            CaptionResult(
                _distinct([self._to_caption(h, subject) for h in per_image]),
                tags=tags,
                evidence=items,
            )
            for per_image, subject, tags, items in zip(
                hypotheses, subjects, self.tags(encoded), evidence, strict=True
            )
        ]
        if penalty is not None:
            results = [
                self._fluent(r, s, encoded, i, plain=plain.get(i))
                for i, (r, s) in enumerate(zip(results, found, strict=True))
            ]
        return results

    def _decode(
        self,
        encoded: EncodedImages,
        settings: SearchSettings,
        penalty: np.ndarray | None,
        entities: np.ndarray | None,
        subjects: list[Subject | None],
        name_within: np.ndarray,
        roles: WordRoles | None,
    ) -> tuple[list[list[Hypothesis]], list[Subject | None]]:
        """The searches' n-best per image, and the subjects still to be written in: an image
        whose caption does not name its subject, or names it after `name_within[i]` words (a
        thing in the background), is decoded again, constrained to name it; one whose
        caption names it in the decoder's own words needs no writing in (None)."""
        subjects = list(subjects)
        hypotheses = self._search(encoded, settings, penalty, entities, roles)
        missing = []
        for index, subject in enumerate(subjects):
            best = hypotheses[index][0].token_ids
            if subject is None:
                continue
            first = _first_position(best, subject.named | subject.written.keys())
            if first is not None and name_within[index] and first >= name_within[index]:
                missing.append(index)  # named, but late: a thing in the background
            elif subject.named.intersection(best):
                subjects[index] = None  # the decoder named it already, in its own words
            elif first is None:
                missing.append(index)
        if missing:
            constrained = self._constrained(
                encoded[missing],
                [subjects[i] for i in missing],  # type: ignore[misc]
                settings,
                None if penalty is None else penalty[missing],
                None if entities is None else entities[missing],
                name_within[missing],
                roles,
            )
            for index, named in zip(missing, constrained, strict=True):
                hypotheses[index] = named
        return hypotheses, subjects

    def _is_salad(self, hypothesis: Hypothesis) -> bool:
        return is_word_salad(self.vocabulary.decode(hypothesis.token_ids), hypothesis.score)

    def _sure_part(
        self,
        hypothesis: Hypothesis,
        subject: Subject | None,
        settings: SearchSettings,
        *,
        floor: float,
        unsupported: AbstractSet[int],
        guessed: AbstractSet[int] = frozenset(),
    ) -> Hypothesis:
        """The hypothesis cut before its first phrase after the subject (the concept's word,
        or else the first word) holding a word below `floor` or an `unsupported` setting, and
        without the words between its article and its subject if one of them is below it or
        among the `guessed` (colours, on a photo grounding finds outside Flickr8k's scenes).
        With `floor` 0 (a photo whose captions are otherwise whole) only the unsupported
        setting's phrase goes: the decoder knows the rest of such scenes, verb included ("a
        brown dog is running", without "through the snow")."""
        ids, each = hypothesis.token_ids, hypothesis.word_log_probs
        whole = floor <= 0.0
        if unsupported.intersection(ids) and len(each) == len(ids):
            # An unsupported setting counts as a word the decoder could not be sure of.
            each = tuple(
                -math.inf if token in unsupported else p for token, p in zip(ids, each, strict=True)
            )
            floor = max(floor, UNSUPPORTED_FLOOR)
        if floor <= 0.0:
            return hypothesis
        subject_tokens = frozenset() if subject is None else subject.named | subject.written.keys()
        position = _first_position(ids, subject_tokens)
        if whole:
            length = sure_length(
                ids,
                each,
                self.phrase_kinds,
                keep=(position or 0) + 1,
                min_probability=floor,
                keep_verb=True,
            )
            kept = list(range(length))
        else:
            kept = sure_words(
                ids,
                each,
                self.phrase_kinds,
                subject_at=position,
                min_probability=floor,
                guessed=guessed,
            )
        if len(kept) == len(ids):
            return hypothesis
        own = hypothesis.word_log_probs  # the decoder's, not the cut's -inf
        log_prob = float(sum(own[i] for i in kept))
        return Hypothesis(
            token_ids=tuple(ids[i] for i in kept),
            log_prob=log_prob,
            score=log_prob / max(len(kept), 1) ** settings.length_penalty,
            attention=None if hypothesis.attention is None else hypothesis.attention[kept],
            word_log_probs=tuple(own[i] for i in kept),
        )

    def _loose_frame(
        self, hypothesis: Hypothesis, subject: Subject | None, settings: SearchSettings
    ) -> Hypothesis:
        """The hypothesis with a verb before its written-in subject made "with" where caption
        text never says it of the subject or a broader concept (`FrameRule`); as it was
        otherwise, and always at `min_word_probability` 0 (whole sentences, the decoder's own)."""
        ids = hypothesis.token_ids
        if subject is None or subject.frames is None or settings.min_word_probability <= 0.0:
            return hypothesis
        at = _first_position(ids, subject.written.keys())
        span = None if at is None else self.frame_rule.loose_span(ids, at, subject.frames)
        if span is None or self.frame_rule.with_id is None:
            return hypothesis
        start, end = span
        each, attention = hypothesis.word_log_probs, hypothesis.attention
        if attention is not None:
            attention = np.concatenate([attention[: start + 1], attention[end:]])
        # The replaced words' log-probabilities go to "with": the caption's total and its score
        # (what the salad rule reads) stay the decoder's.
        if len(each) == len(ids):
            each = (*each[:start], float(sum(each[start:end])), *each[end:])
        return dataclasses.replace(
            hypothesis,
            token_ids=(*ids[:start], self.frame_rule.with_id, *ids[end:]),
            attention=attention,
            word_log_probs=each,
        )

    def _fluent(
        self,
        result: CaptionResult,
        subject: Subject | None,
        encoded: EncodedImages,
        index: int,
        *,
        plain: str | None = None,
    ) -> CaptionResult:
        """The result, its best caption named plainly ("a whistle") when grounding left the
        decoder only word salad (`captioning.claims.is_word_salad`); `plain`: that name, for
        a caption judged salad before the searches decoded it again (`generate`)."""
        best = result.best
        if plain is None and is_word_salad(best.tokens, best.score):
            plain = self._plain_name(subject, encoded, index, result.evidence)
        if plain is None:
            return result
        caption = Caption(plain, tuple(plain.split(" ")), best.log_prob, best.score)
        return dataclasses.replace(result, captions=(caption, *result.captions[1:]))

    def _plain_name(
        self,
        subject: Subject | None,
        encoded: EncodedImages,
        index: int,
        evidence: Sequence[Evidence],
    ) -> str | None:
        """The photo's concept named plainly, one whose words grounding allows; else what the
        evidence finds ("an animal"); else None."""
        named = None
        if self.namer is not None and encoded.concepts is not None:
            forbidden = self.claim_rule.forbidden_words(evidence) if self.claim_rule else None
            named = self.namer.plain_name(
                subject, encoded.concepts[index], FALLBACK_CONCEPT_MIN, forbidden or frozenset()
            )
        return named or name_from_evidence(evidence)

    def entities(self, encoded: EncodedImages, styles: np.ndarray | int = 0) -> np.ndarray | None:
        """For a decoder conditioned on concepts, each image's input concept: its most specific
        confident concept's index + 1, or 0 for none (None: the decoder takes no concepts);
        for one that also takes styles, with each image's style index (`condition_ids`)."""
        if not self.weights.entities or self.namer is None or encoded.concepts is None:
            return None
        concepts = self.namer.table.entities(encoded.concepts, self.namer.threshold)
        if not self.weights.styles:
            return concepts
        return condition_ids(concepts, styles, self.weights.entities)

    def styles(self, style: str | None, evidence: Sequence[Sequence[Evidence]]) -> np.ndarray | int:
        """Each image's style index for `style`: a style's name, None for the photos' own (0),
        or AUTO_STYLE: the photos' own where the evidence finds people or dogs (what Flickr8k
        shows), OBJECT_STYLE's elsewhere."""
        if style is None:
            return 0
        if not self.weights.styles:
            raise SearchSettingsError(
                "style", "is for a model trained with caption styles (--caption-styles)"
            )
        if style != AUTO_STYLE:
            return self.style_index(style)
        other = self.style_index(OBJECT_STYLE) if OBJECT_STYLE in self.style_names else 0
        return np.array([other if guessing else 0 for guessing in guesses_scene(evidence)])

    def style_index(self, style: str) -> int:
        """A style's index among the model's."""
        if style not in self.style_names:
            known = ", ".join(self.style_names) or "none"
            raise SearchSettingsError("style", f"must be one of the model's styles ({known})")
        return self.style_names.index(style)

    def _search(
        self,
        encoded: EncodedImages,
        settings: SearchSettings,
        penalty: np.ndarray | None,
        entities: np.ndarray | None,
        roles: WordRoles | None = None,
    ) -> list[list[Hypothesis]]:
        common = {
            "settings": settings,
            "runtime": self.decoder_step,
            "word_penalty": penalty,
            "entities": entities,
            "roles": roles,
        }
        if settings.beam_size == 1:
            found = greedy_decode(self.weights, encoded.grid, encoded.pooled, **common)
            return [[hypothesis] for hypothesis in found]
        return beam_search(self.weights, encoded.grid, encoded.pooled, **common)

    def _constrained(
        self,
        encoded: EncodedImages,
        subjects: list[Subject],
        settings: SearchSettings,
        penalty: np.ndarray | None = None,
        entities: np.ndarray | None = None,
        name_within: np.ndarray | None = None,
        roles: WordRoles | None = None,
    ) -> list[list[Hypothesis]]:
        return constrained_beam_search(
            self.weights,
            encoded.grid,
            encoded.pooled,
            required=[list(subject.written) for subject in subjects],
            settings=settings,
            runtime=self.decoder_step,
            word_penalty=penalty,
            entities=entities,
            name_within=name_within,
            roles=roles,
        )

    def caption_images(
        self, images: Sequence[Image.Image], settings: SearchSettings | None = None
    ) -> list[CaptionResult]:
        """preprocess + encode + generate, with timings in ms for the whole batch."""
        started = time.perf_counter()
        pixels = self.preprocess(images)
        preprocessed = time.perf_counter()
        encoded = self.encode(pixels)
        encoded_at = time.perf_counter()
        results = self.generate(encoded, settings)
        finished = time.perf_counter()
        timings = {
            "preprocess": (preprocessed - started) * 1000,
            "encode": (encoded_at - preprocessed) * 1000,
            "generate": (finished - encoded_at) * 1000,
        }
        return [dataclasses.replace(result, timings_ms=dict(timings)) for result in results]

    def _to_caption(self, hypothesis: Hypothesis, subject: Subject | None) -> Caption:
        words = tuple(self.vocabulary.decode(hypothesis.token_ids))
        if subject is not None and self.namer is not None:
            words = self.namer.show(words, hypothesis.token_ids, subject)
        words = agree_articles(words)  # a cut or a named concept may leave "a animal"
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


def name_from_evidence(evidence: Sequence[Evidence]) -> str | None:
    """The likeliest animal grounding finds, named plainly ("an animal"), for a photo outside
    Flickr8k's scenes left with word salad and no concept to name; None when it finds none."""
    if any(item.label in SCENE_SUBJECTS for item in evidence):
        return None
    for item in evidence:
        if item.label in EVIDENCE_NAMES:
            one, several = EVIDENCE_NAMES[item.label]
            return several if (item.count or 1) >= 2 else one
    return None


def guesses_scene(evidence: Sequence[Sequence[Evidence]]) -> np.ndarray:
    """(images,) bool: where grounding finds none of Flickr8k's subjects (`SCENE_SUBJECTS`),
    so the decoder's setting is a guess; every image when the model has no grounding."""
    return np.array([not any(e.label in SCENE_SUBJECTS for e in items) for items in evidence], bool)


def _distinct(captions: list[Caption]) -> tuple[Caption, ...]:
    """The n-best without repeats (two captions cut to the same words, or the same but for
    their article), in the search's order."""
    seen: set[str] = set()
    kept = []
    for caption in captions:
        if caption.text not in seen:
            seen.add(caption.text)
            kept.append(caption)
    return tuple(kept)


def _first_position(token_ids: Sequence[int], tokens: AbstractSet[int]) -> int | None:
    return next((i for i, token in enumerate(token_ids) if token in tokens), None)


def _model_search_settings(decoder: dict) -> SearchSettings:
    """The search defaults a manifest's decoder section records, the recipe's where it is silent."""
    max_length = int(decoder["max_length"])
    return SearchSettings(
        max_length=max_length,
        length_limit=max_length,
        beam_size=int(decoder.get("default_beam_size", DEFAULT_BEAM_SIZE)),
        length_penalty=float(decoder.get("length_penalty", DEFAULT_LENGTH_PENALTY)),
        no_repeat_ngram=int(decoder.get("no_repeat_ngram", DEFAULT_NO_REPEAT_NGRAM)),
    )
