"""Person-name rules on spaCy tokens (a blank tokenizer: no model needed)."""

from __future__ import annotations

import pytest

spacy = pytest.importorskip("spacy")

from duetto.privacy.names import person_names  # noqa: E402


@pytest.fixture(scope="module")
def nlp():  # type: ignore[no-untyped-def]
    return spacy.blank("en")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("I'd like to join accounts with ms. Quinzia", "Quinzia"),
        ("Please ask Mrs. Diana Usamov to call", "Diana Usamov"),
        ("my name is borna jerković but everyone calls me Borna", "borna jerković"),
        ("Name:    Iva D. Grusová\nAddress: PSC 6695", "Iva D. Grusová"),
        ("Jacob lives on 90 Whitchurch Road", "Jacob"),
        ("> \n> Lina Artemova\n> Irecycle", "Lina Artemova"),
        ('Alice: "Who are you?"', "Alice"),
        ("I'm Misty's daughter.", "Misty"),
        ("Invite Mr. Monjeau, Graves and Reed to the call", "Reed"),  # list members
    ],
)
def test_rules_find_the_name(nlp, text: str, name: str) -> None:  # type: ignore[no-untyped-def]
    found = [e for e in person_names(nlp(text)) if e.type == "PERSON"]
    assert name in [e.text for e in found], found
    for e in found:
        assert text[e.start : e.end] == e.text


def test_no_names_in_plain_text(nlp) -> None:  # type: ignore[no-untyped-def]
    text = "The weather was fine and we walked to the station.\nAddress: unknown"
    assert person_names(nlp(text)) == []


def test_organisation_spans_shaped_like_a_name_become_persons(nlp) -> None:  # type: ignore[no-untyped-def]
    from spacy.tokens import Span

    doc = nlp("We met Tomomi Nishiyama and Acme Holdings yesterday.")
    doc.ents = [Span(doc, 2, 4, label="ORG"), Span(doc, 5, 7, label="ORG")]
    assert [e.text for e in person_names(doc)] == ["Tomomi Nishiyama"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Dwayne is out sick today, ask someone else.", "Dwayne"),  # given name, sentence start
        ("The quote came from Hoffman yesterday.", "Hoffman"),  # listed surname alone
        ("please loop in gretchen ostrowski on the thread", "gretchen ostrowski"),  # lower case
        ("cc: marvin j cole", "marvin"),  # lower case with an initial
        ("Kowalczyk and Hoffman signed the lease.", "Kowalczyk"),  # a pair with a listed name
    ],
)
def test_census_name_lists_find_names(nlp, text: str, name: str) -> None:  # type: ignore[no-untyped-def]
    found = [e.text for e in person_names(nlp(text))]
    assert any(name in f for f in found), found


@pytest.mark.parametrize(
    "text",
    [
        "We may grant you more time if the rose garden is closed.",  # names that are words
        "the weather in june was lovely and the bill was small",
    ],
)
def test_census_name_lists_skip_common_words(nlp, text: str) -> None:  # type: ignore[no-untyped-def]
    assert person_names(nlp(text)) == []


def test_census_names_the_ner_calls_a_place_stay_places(nlp) -> None:  # type: ignore[no-untyped-def]
    from spacy.tokens import Span

    doc = nlp("We moved to Austin last year.")
    assert [e.text for e in person_names(doc)] == ["Austin"]  # unlabelled: a listed name
    doc.ents = [Span(doc, 3, 4, label="GPE")]
    assert person_names(doc) == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Brynjolf is very dependable.", "Brynjolf"),  # weak verb after an unknown name
        ("Oksana had already left.", "Oksana"),
        ("Wenceslava, could you send the file?", "Wenceslava"),  # vocative
    ],
)
def test_clause_opening_names(nlp, text: str, name: str) -> None:  # type: ignore[no-untyped-def]
    assert name in [e.text for e in person_names(nlp(text))]


@pytest.mark.parametrize(
    "text",
    [
        "Transfer is still pending.",  # a common word, not a name
        "Hello, can you help me?",  # an interjection
        "This is fine.",  # a stop word
    ],
)
def test_clause_openers_that_are_not_names(nlp, text: str) -> None:  # type: ignore[no-untyped-def]
    assert person_names(nlp(text)) == []


def test_name_lists_ship_with_the_package_and_leave_out_common_words() -> None:
    from duetto.privacy.name_lists import common_words, given_names, surnames

    assert {"gretchen", "dwayne"} <= given_names() and "hoffman" in surnames()
    assert not {"may", "grace", "june", "hope"} & given_names()  # words and months
    assert "brown" not in surnames() and "transfer" in common_words()


@pytest.mark.parametrize(
    "text",
    [
        "Comment: The address on file is wrong, please fix it",
        "Request: I would like to close the savings account",
        "Reminder: the branch closes early on the holiday",
        "Feedback: Great service from the desk staff",
    ],
)
def test_field_labels_are_not_speakers(nlp, text: str) -> None:  # type: ignore[no-untyped-def]
    label = text.split(":")[0]
    assert label not in [e.text for e in person_names(nlp(text))]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Priya: did the refund arrive?", "Priya"),  # no list holds it: a speaker
        ("Gretchen: yes, on Monday", "Gretchen"),  # a listed given name
        ("Okonkwo: I will check", "Okonkwo"),
    ],
)
def test_speaker_labels_stay_names(nlp, text: str, name: str) -> None:  # type: ignore[no-untyped-def]
    assert name in [e.text for e in person_names(nlp(text))]


def test_label_words() -> None:
    from duetto.privacy.names import is_label_word

    assert is_label_word("Comment") and is_label_word("Subject")  # common word, listed label
    assert not is_label_word("Gretchen") and not is_label_word("Priya")


def test_a_common_word_speaks_in_a_transcript(nlp) -> None:  # type: ignore[no-untyped-def]
    text = "Priya: are you at the desk?\nSummer: yes, since nine\nPriya: good"
    assert "Summer" in [e.text for e in person_names(nlp(text))]


def test_field_labels_are_dropped_from_any_person_source() -> None:
    from duetto.privacy.names import drop_field_labels
    from duetto.scoring.pii import Entity

    text = "Name: Lotte Brink\nComment: call after five"
    ner = [  # what an NER may say: the labels as persons, and the real name
        Entity("PERSON", 0, 4, "Name", 0.85),
        Entity("PERSON", 6, 17, "Lotte Brink", 0.85),
        Entity("PERSON", 18, 25, "Comment", 0.85),
    ]
    assert [e.text for e in drop_field_labels(text, ner)] == ["Lotte Brink"]
    chat = "Priya: did it arrive?"
    kept = drop_field_labels(chat, [Entity("PERSON", 0, 5, "Priya", 0.85)])
    assert [e.text for e in kept] == ["Priya"]
