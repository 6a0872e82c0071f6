"""How captions are searched for: one frozen object, resolved and checked once.

A model's defaults come from its manifest (`CaptionPredictor.search`); a server's settings and
then a request's options narrow them with `with_options`, which checks the result. The
predictor and the searches read this object and never default or check anything again (as
transformers' `GenerationConfig` does for its models).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# The defaults, written once: the recipe's beam width, length penalty and no-repeat n-gram
# size (a bundle's manifest records the ones its model was tuned with, and they win).
DEFAULT_BEAM_SIZE = 3
DEFAULT_LENGTH_PENALTY = 1.0
DEFAULT_NO_REPEAT_NGRAM = 3
# On photos without people or dogs, cut a caption before the first phrase after its subject
# holding a word the decoder gave less than this (`captioning.phrases`; docs/experiments.md).
DEFAULT_MIN_WORD_PROBABILITY = 0.1
MAX_BEAM_SIZE = 10


class SearchSettingsError(ValueError):
    """An option out of range or inconsistent with another; `field` names the option."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    max_length: int  # words at most, <end> not counted
    beam_size: int = DEFAULT_BEAM_SIZE  # 1 = greedy
    num_captions: int = 1  # n-best, one per beam at most
    length_penalty: float = DEFAULT_LENGTH_PENALTY  # score = log_prob / length ** penalty
    no_repeat_ngram: int = DEFAULT_NO_REPEAT_NGRAM  # 0 allows repeated n-grams
    return_attention: bool = False
    # Name the photo's most specific confident concept (when the model has concepts); False
    # gives the captions of the decoder alone.
    concepts: bool = True
    # Write a word that claims a person, a dog, a cat, a number of them or a living thing
    # ("playing") only where the photo's evidence supports it (when the model has grounding);
    # False: the decoder's words.
    grounding: bool = True
    # For a decoder trained with caption styles: the corpus whose style the captions take
    # ("flickr8k" is the photos' own), or "auto" (`captioning.predictor.AUTO_STYLE`); the
    # predictor checks the name. None: the photos' own.
    style: str | None = None
    # On a photo without people or dogs (Flickr8k's scenes), name the subject among the first
    # words and cut the caption before the first phrase after it holding a word the decoder
    # gave less than this probability (a guessed setting: "... in front of a waterfall");
    # with grounding, a setting without evidence is cut on every photo too ("in the snow");
    # 0: whole sentences everywhere.
    min_word_probability: float = DEFAULT_MIN_WORD_PROBABILITY
    # The model's longest caption: `max_length` may not exceed it. None: no model limit.
    length_limit: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.beam_size <= MAX_BEAM_SIZE:
            raise SearchSettingsError("beam_size", f"must be between 1 and {MAX_BEAM_SIZE}")
        if not 1 <= self.num_captions <= self.beam_size:
            raise SearchSettingsError(
                "num_captions", f"must not exceed beam_size ({self.beam_size}): one per beam"
            )
        if self.max_length < 1:
            raise SearchSettingsError("max_length", "must be at least 1")
        if self.length_limit is not None and self.max_length > self.length_limit:
            raise SearchSettingsError(
                "max_length", f"must be at most {self.length_limit}, the model's longest caption"
            )
        if self.no_repeat_ngram < 0:
            raise SearchSettingsError("no_repeat_ngram", "must be 0 (off) or more")
        if not 0.0 <= self.min_word_probability < 1.0:
            raise SearchSettingsError("min_word_probability", "must be at least 0 and below 1")

    def with_options(self, **options: Any) -> SearchSettings:
        """These settings with the given options (None: keep), checked; raises
        SearchSettingsError naming the first bad option, TypeError for an unknown one."""
        given = {name: value for name, value in options.items() if value is not None}
        return dataclasses.replace(self, **given) if given else self
