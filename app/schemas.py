"""Request parameters and response bodies, with the examples shown on /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from captioning.search_settings import DEFAULT_MIN_WORD_PROBABILITY, MAX_BEAM_SIZE

# Upper bound on max_length before the model is known; the model's own maximum is checked too.
MAX_CAPTION_WORDS = 50


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable error code.", examples=["overloaded"])
    message: str = Field(
        description="Human-readable explanation.",
        examples=["the request queue is full; retry after the Retry-After delay"],
    )


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"error": {"code": "unsupported_image", "message": "the file is not an image"}}
            ]
        }
    )

    error: ErrorDetail


class CaptionOptions(BaseModel):
    """Decoding options, sent as form fields or query parameters (form fields win)."""

    model_config = ConfigDict(extra="ignore")

    beam_size: int | None = Field(
        None,
        ge=1,
        le=MAX_BEAM_SIZE,
        description="Beam width; 1 is greedy decoding. Default: the server's default (3).",
    )
    max_length: int | None = Field(
        None,
        ge=1,
        le=MAX_CAPTION_WORDS,
        description="Longest caption in words. Default and upper bound: the model's maximum.",
    )
    num_captions: int = Field(
        1,
        ge=1,
        le=MAX_BEAM_SIZE,
        description="How many of the best captions to return (≤ beam); fewer where two of "
        "them come out the same once cut (`min_word_probability`).",
    )
    attention: bool = Field(False, description="Return the attention map of every word.")
    grounding: bool | None = Field(
        None,
        description="Mention people, dogs, cats, other animals, how many of them, and what only "
        "the living do ('playing', 'in its mouth') only where the photo's evidence (the "
        "`evidence` in the answer) supports it; cut a setting it does not support ('in the "
        "snow', 'on the grass') when `min_word_probability` is above 0. Default: the server's "
        "(on); false gives the decoder's own words.",
    )
    concepts: bool | None = Field(
        None,
        description="Name the photo's most confident concept (its most specific tag) in the "
        "caption when the decoder does not. Default: the server's (on); false gives the "
        "decoder's own captions. Tags are returned either way.",
    )
    min_word_probability: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="On a photo without people or dogs (where the decoder guesses the setting), "
        "name the subject first and cut the caption before the first phrase after it holding "
        "a word the decoder gave less than this probability: 'a zebra', not 'a large zebra "
        "is riding on a dirt path'. With grounding, a setting without evidence ('in the "
        "snow') is cut from every photo's caption too. A verb captions never say of a concept "
        "written into the sentence becomes 'with' ('a girl with a sax', not '... is riding a "
        "sax'). 0 gives whole sentences. Default: the server's "
        f"({DEFAULT_MIN_WORD_PROBABILITY}).",
    )


class WordAttention(BaseModel):
    word: str = Field(examples=["dog"])
    weights: list[list[float]] = Field(
        description="grid x grid attention weights over the image (rows top to bottom), sum 1.",
        examples=[[[0.1, 0.2], [0.3, 0.4]]],
    )


class CaptionHypothesis(BaseModel):
    text: str = Field(examples=["a dog runs through the grass"])
    log_prob: float = Field(description="Total log-probability of the words.", examples=[-6.1])
    score: float = Field(
        description="Length-normalised log-probability used to rank captions.", examples=[-2.3]
    )
    attention: list[WordAttention] | None = Field(
        None, description="One map per word, present when `attention` was requested."
    )


class EvidenceItem(BaseModel):
    label: str = Field(examples=["person"])
    score: float = Field(
        description="How sure grounding is that the photo shows it (0-1).", examples=[0.97]
    )
    count: int | None = Field(
        None, description="How many, when grounding can tell: 1, or 2 for two or more."
    )
    box: tuple[float, float, float, float] | None = Field(
        None, description="x1, y1, x2, y2 in the photo's pixels, when a detector found it."
    )


class TagItem(BaseModel):
    word: str = Field(examples=["cat"])
    probability: float = Field(
        description="The image classifier's probability for the concept: the sum over the "
        "ImageNet classes it covers (every cat breed for 'cat').",
        examples=[0.93],
    )


class Timings(BaseModel):
    decode: float = Field(description="Decoding and resizing the upload, ms.", examples=[4.2])
    queue: float = Field(description="Waiting for a batch slot, ms.", examples=[1.0])
    encode: float = Field(description="Image encoder for the whole batch, ms.", examples=[21.5])
    generate: float = Field(description="Caption decoding for the batch, ms.", examples=[40.3])
    total: float = Field(description="From the received upload to the answer, ms.", examples=[70.0])


class CaptionResponse(BaseModel):
    caption: str = Field(description="The best caption.", examples=["a dog runs through the grass"])
    captions: list[CaptionHypothesis] = Field(
        description="The n-best captions, best first (in the search's order)."
    )
    tags: list[TagItem] = Field(
        description="What the image shows, as words with probabilities, most likely first: the "
        "concepts at or above the model's threshold (manifest `concepts.threshold`, 0.4). "
        "Empty when none is confident or the model has no concepts.",
        examples=[[{"word": "cat", "probability": 0.93}, {"word": "tabby", "probability": 0.61}]],
    )
    evidence: list[EvidenceItem] = Field(
        default_factory=list,
        description="What grounding found in the photo, which decides the people, animals, "
        "counts, doings of the living and settings (ball, grass, water, snow, air) a caption may "
        "mention. Empty when grounding is off or the model has none.",
        examples=[[{"label": "person", "score": 0.97, "count": 2}]],
    )
    width: int = Field(description="Image width after EXIF rotation.", examples=[640])
    height: int = Field(description="Image height after EXIF rotation.", examples=[480])
    model: str = Field(
        description="Model id from the manifest.",
        examples=["efficientnet_lite1-attention-lstm-20261127-023047"],
    )
    timings_ms: Timings


class CaptionsResponse(BaseModel):
    results: list[CaptionResponse | ErrorResponse] = Field(
        description="One entry per uploaded file, in upload order: captions or an error."
    )


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model: str = Field(examples=["efficientnet_lite1-attention-lstm-20261127-023047"])


ModelManifest = dict[str, Any]
