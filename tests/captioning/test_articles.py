"""Every caption's articles agree with the word after them, whatever wrote it."""

import pytest

from captioning.subjects import agree_articles


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("a man is riding a atv on a dirt track", "a man is riding an atv on a dirt track"),
        ("an dog with an hour glass", "a dog with an hour glass"),
        ("an unicorn and a one way sign", "a unicorn and a one way sign"),
        ("a", "a"),
    ],
)
def test_articles_agree_with_the_next_word(words, expected) -> None:
    assert " ".join(agree_articles(words.split())) == expected
