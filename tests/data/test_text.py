"""Intent templates, free-reading sentences, normalisation and the character vocabulary."""

from __future__ import annotations

import re

import numpy as np
import pytest

from smx.data.text import (
    _PATTERNS,
    _WORDS,
    DEFAULT_ALPHABET,
    INTENTS,
    SLOTS,
    CharVocab,
    free_sentences,
    intent_sentence,
    normalise_text,
)


def test_at_least_ten_intents_whose_slots_all_exist() -> None:
    assert len(INTENTS) >= 10
    for intent, templates in INTENTS.items():
        assert templates, intent
        for template in templates:
            for slot in re.findall(r"\{(\w+)\}", template):
                assert slot in SLOTS, (intent, template, slot)


def test_every_word_the_corpus_can_say_is_inside_the_default_alphabet() -> None:
    allowed = set(DEFAULT_ALPHABET)
    texts = [t for ts in INTENTS.values() for t in ts]
    texts += [v for vs in SLOTS.values() for v in vs]
    texts += [w for ws in _WORDS.values() for w in ws] + list(_PATTERNS)
    for text in texts:
        plain = re.sub(r"\{\w+\}", "", text)
        assert set(plain) <= allowed, text


def test_intent_sentences_fill_every_slot_and_are_deterministic() -> None:
    draws = [intent_sentence(np.random.default_rng([7, i])) for i in range(300)]
    again = [intent_sentence(np.random.default_rng([7, i])) for i in range(300)]
    assert draws == again
    assert {intent for intent, _ in draws} == set(INTENTS)
    for _, text in draws:
        assert "{" not in text and "  " not in text and text == text.strip()
        assert normalise_text(text) == (text, [])


def test_free_sentences_are_many_distinct_and_fixed() -> None:
    sentences = free_sentences(2000)
    assert len(set(sentences)) == 2000
    assert sentences == free_sentences(2000)
    assert free_sentences(300) == sentences[:300]  # one list, drawn in the same order
    assert not any(" a a" in s or re.search(r"(^| )a [aeiou]", s) for s in sentences)
    assert len({len(s.split()) for s in sentences}) > 3  # varied lengths


@pytest.mark.parametrize(
    ("raw", "clean", "outside"),
    [
        ("HELLO, World!", "hello world", []),
        ("naïve café", "naive cafe", []),
        ("it’s   twenty-one", "it's twenty one", []),
        ("room 101", "room 101", ["0", "1"]),
        ("price: 5€", "price 5€", ["5", "€"]),
        ("日本", "日本", ["日", "本"]),
        ("", "", []),
    ],
)
def test_normalise_text(raw: str, clean: str, outside: list[str]) -> None:
    assert normalise_text(raw) == (clean, outside)


def test_normalise_text_follows_an_upper_case_alphabet() -> None:
    assert normalise_text("Don't stop", "ABCDEFGHIJKLMNOPQRSTUVWXYZ' ") == ("DON'T STOP", [])


def test_char_vocab_round_trip_and_unknown_characters(tmp_path) -> None:
    vocab = CharVocab.from_texts(["the cat", None, "a hat"])
    assert vocab.chars == " aceht"
    assert vocab.tokens[:2] == ["<blank>", "<unk>"] and len(vocab) == 8
    ids = vocab.encode("the cat")
    assert ids == [2 + " aceht".index(c) for c in "the cat"]
    assert vocab.decode(ids) == "the cat"
    assert vocab.encode("dog") == [1, 1, 1]
    assert vocab.unknown_chars(["hat", "dog!"]) == {"d": 1, "o": 1, "g": 1, "!": 1}
    vocab.save(tmp_path / "vocab.json")
    assert CharVocab.load(tmp_path / "vocab.json") == vocab
