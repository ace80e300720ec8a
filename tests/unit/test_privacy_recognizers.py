"""The dependency-free recognizers and the overlap resolution."""

from __future__ import annotations

import pytest

from duetto.privacy.recognizers import phone_numbers, resolve_overlaps, street_addresses
from duetto.scoring.pii import Entity, card_numbers


def _texts(entities: list[Entity]) -> list[str]:
    return [e.text for e in entities]


def test_street_address_extends_over_town_and_postcode_lines() -> None:
    text = "Please return to 72134 Coronilla 3599\nNijmegen\n, GE\n Netherlands 62971 asap."
    found = street_addresses(text)
    assert len(found) == 1
    assert found[0].text.startswith("72134 Coronilla 3599")
    assert "Netherlands 62971" in found[0].text
    assert text[found[0].start : found[0].end] == found[0].text


def test_street_address_shapes_across_locales() -> None:
    for text, value in [
        ("I live at 90 Whitchurch Road now", "90 Whitchurch Road"),
        ("I live at 18 McPherson Rd. now", "18 McPherson Rd."),
        ("Office: Friedhofstrasse 33, Wien", "Friedhofstrasse 33"),
        ("send to ul. Słowicza 10 please", "ul. Słowicza 10"),
        ("It is in Suite 828 upstairs", "Suite 828"),
        ("ship to PSC 2721, Box 8637\nAPO AA 06259", "PSC 2721, Box 8637"),
    ]:
        found = _texts(street_addresses(text))
        assert any(value in f for f in found), (text, found)


def test_sentence_full_stop_is_not_part_of_the_address() -> None:
    assert _texts(street_addresses("I live at 90 Whitchurch Road.")) == ["90 Whitchurch Road"]


def test_weak_word_number_shape_needs_address_context() -> None:
    assert street_addresses("We shipped Windows 10 to everyone.") == []
    assert _texts(street_addresses("He lives at Golfskálinn 78")) == ["Golfskálinn 78"]


def test_phone_numbers_in_national_formats_but_not_dates_or_ssn() -> None:
    text = "Call 0688 872 49 99 or +41 (0)85 806 98 67, born 1980-07-28 19:49, ssn 460-89-9847"
    assert _texts(phone_numbers(text)) == ["0688 872 49 99", "+41 (0)85 806 98 67"]
    assert _texts(phone_numbers("Desk: +1-903-140-4508x769")) == ["+1-903-140-4508x769"]


@pytest.mark.parametrize(
    "value",
    [
        "001-748-088-2851x818",  # 13 digits + an extension: the extension is not counted
        "60-56-85-91",  # four pairs: not a date
        "03.93.92.16.85",
        "0393 1144137",  # trunk 0 + area code + 7-digit subscriber
        "06-10446904",
        "(030) 1234567",
        "+46 (0)8 928 571 38",  # one-digit area code after the country code
        "+49 30 12345678",
        "1-800-555-0199",
    ],
)
def test_phone_number_formats(value: str) -> None:
    assert _texts(phone_numbers(f"Call me on {value}, thanks")) == [value]


@pytest.mark.parametrize(
    "text", ["on 12.05.2021 at", "born 1980-07-28", "due 7/28/1980", "v 12 34 56"]
)
def test_dates_and_short_numbers_are_not_phone_numbers(text: str) -> None:
    assert phone_numbers(text) == []


def test_unshaped_card_numbers_need_the_luhn_checksum() -> None:
    # 19 digits: not a card shape, so only the checksum makes it a card
    assert _texts(card_numbers("card 4652943034623769885 ok")) == ["4652943034623769885"]
    assert card_numbers("card 4652943034623769886 ok") == []  # last digit off
    assert card_numbers("call +447700677662") == []  # a phone number, not a card
    assert card_numbers("id 0000 0000 0000 0000 ok") == []  # a placeholder


def test_card_shapes_are_cards_even_when_luhn_fails() -> None:
    good, bad = card_numbers("pay 4539 1488 0343 6467"), card_numbers("pay 4539-1488-0343-6468")
    assert [(e.text, e.score) for e in good] == [("4539 1488 0343 6467", 0.9)]
    assert [(e.text, e.score) for e in bad] == [("4539-1488-0343-6468", 0.5)]
    assert _texts(card_numbers("amex 3782 822463 10006")) == ["3782 822463 10006"]
    assert card_numbers("pay 4539-1488-0343-6468", luhn_only=True) == []  # the seam's mode


def test_resolve_overlaps_prefers_specific_types_and_keeps_uncovered_parts() -> None:
    text = "x 4111111111111111 y"
    card = Entity("CREDIT_CARD", 2, 18, text[2:18], 0.7)
    date = Entity("DATE_TIME", 2, 18, text[2:18], 0.85)
    assert resolve_overlaps([date, card]) == [card]
    text = "Ana Lopez, 90 Whitchurch Road"
    addr = Entity("STREET_ADDRESS", 11, 29, text[11:29], 0.6)
    org = Entity("ORGANIZATION", 4, 19, text[4:19], 0.85)  # sticks out to the left
    kept = resolve_overlaps([org, addr])
    assert [(e.type, e.text) for e in kept] == [
        ("ORGANIZATION", "Lopez"),
        ("STREET_ADDRESS", addr.text),
    ]
    assert resolve_overlaps([org], min_score=0.9) == []


def test_quantities_joined_by_a_connector_are_not_streets() -> None:
    assert street_addresses("una lesión de 5 y 4 cm, luego 7 x 10 mm; from 50 to 60 days") == []
    assert _texts(street_addresses("She moved to 4596 Tylova 285")) == ["4596 Tylova 285"]
