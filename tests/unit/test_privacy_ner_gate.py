"""The NER gate: sentences that cannot hold a name are blanked before the NER, offsets kept."""

from __future__ import annotations

import pytest

pytest.importorskip("spacy")

from duetto.privacy.presidio import ner_text


def test_sentences_without_capitals_digits_or_listed_names_are_blanked() -> None:
    text = "my card was charged twice. Please ask Dorota about it.\nthe fee is fine."
    out = ner_text(text)
    assert out is not None and len(out) == len(text)
    assert "Please ask Dorota about it." in out
    assert "charged" not in out and "fee" not in out
    assert out.index("Please") == text.index("Please")  # offsets kept
    assert out.count("\n") == text.count("\n")  # lines stay lines


@pytest.mark.parametrize(
    "text",
    [
        "please loop in gretchen on this",  # a listed given name in lower case
        "send it to 12 rue des lilas",  # a digit: lower-case addresses and dates
        "what is my name again",  # a naming word the name rules use
        "we met Tuesday",  # a capital after the first word
    ],
)
def test_sentences_that_may_hold_a_name_are_kept(text: str) -> None:
    assert ner_text(text) == text


def test_nothing_to_read_gives_none() -> None:
    assert ner_text("the fee is fine. thanks a lot!") is None
    assert ner_text("The fee is fine.") is None  # a sentence-initial stop word only


def test_windows_keep_only_words_near_a_candidate() -> None:
    from duetto.privacy.ner_gate import ner_windows

    text = "the fee was charged twice on my account last week so please ask Dorota about it"
    out = ner_windows(text, window=2)
    assert out is not None and len(out) == len(text)
    assert "please ask Dorota about it" in out  # the candidate and two words each side
    assert "charged" not in out and "fee" not in out
    assert out.index("Dorota") == text.index("Dorota")


def test_windows_skip_sentence_initial_stop_words_and_the_pronoun_i() -> None:
    from duetto.privacy.ner_gate import ner_windows

    assert ner_windows("The fee is fine. I think so. When is it due?") is None
    assert ner_windows("we met Tuesday", window=1) == "   met Tuesday"
    text = "first line here\nSarah called"
    assert ner_windows(text, window=0) == "               \nSarah called"


def test_blank_spans_keeps_offsets_and_newlines() -> None:
    from duetto.privacy.ner_gate import blank_spans
    from duetto.scoring.pii import Entity

    text = "mail ana@x.org\nnow"
    out = blank_spans(text, [Entity("EMAIL_ADDRESS", 5, 16, text[5:16], 1.0)])
    assert out == "mail " + " " * 9 + "\n" + " ow"  # the span crosses the line end
    assert blank_spans(text, []) == text
