import os
import pickle

import pytest

from captioning.text import (
    END_ID,
    SPECIAL_TOKENS,
    START_ID,
    UNKNOWN_ID,
    Vocabulary,
    normalize_caption,
    safe_unpickle,
)


def test_normalize_keeps_a_and_drops_punctuation_and_digits():
    assert normalize_caption("A dog's 2 T-shirts, in a field!") == [
        "a", "dogs", "t", "shirts", "in", "a", "field",
    ]  # fmt: skip


def test_vocabulary_keeps_frequent_words_and_maps_the_rest_to_unknown():
    captions = [["a", "dog", "runs"], ["a", "dog", "sits"], ["a", "cat"]]
    vocabulary = Vocabulary.build(captions, min_count=2)
    assert vocabulary.words[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert set(vocabulary.words[len(SPECIAL_TOKENS) :]) == {"a", "dog"}
    ids = vocabulary.encode(["a", "cat"])
    assert ids[0] == START_ID and ids[-1] == END_ID and ids[2] == UNKNOWN_ID
    assert vocabulary.decode([*vocabulary.encode(["a", "dog"]), 5, 5]) == ["a", "dog"]


def test_tokenizer_file_round_trip(tmp_path):
    vocabulary = Vocabulary.build([["a", "b"], ["a"]], min_count=1)
    vocabulary.save(tmp_path / "tokenizer.p")
    assert Vocabulary.load(tmp_path / "tokenizer.p") == vocabulary


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_tokenizer_pickle_is_refused(tmp_path):
    path = tmp_path / "tokenizer.p"
    path.write_bytes(pickle.dumps({"format": "captioner-vocabulary/1", "words": _RunsCode()}))
    with pytest.raises(pickle.UnpicklingError, match=r"posix\.system|os\.system|plain data"):
        Vocabulary.load(path)


def test_unpickler_accepts_plain_data_only():
    assert safe_unpickle(pickle.dumps({"a": [1, 2.5, "x", None, True]})) == {
        "a": [1, 2.5, "x", None, True]
    }
    with pytest.raises(pickle.UnpicklingError):
        safe_unpickle(pickle.dumps({1, 2}.__class__))  # a global reference (builtins.set)


def test_vocabulary_file_with_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "tokenizer.p"
    path.write_bytes(pickle.dumps(["just", "a", "list"]))
    with pytest.raises(ValueError, match="not a Captioner vocabulary"):
        Vocabulary.load(path)
