"""Identifier rules: shapes, checksums that raise the score, context words, masked forms."""

from __future__ import annotations

import pytest

from duetto.privacy.identifiers import (
    context_identifiers,
    generic_identifiers,
    iban_ok,
    identifiers,
    shaped_identifiers,
)
from duetto.privacy.recognizers import resolve_overlaps
from duetto.privacy.rules import rules_detect
from duetto.privacy.tiers import tier_of


def _typed(found: list) -> list[tuple[str, str]]:
    return [(e.type, e.text) for e in found]


def _resolved(text: str) -> list[tuple[str, str]]:
    return [(e.type, e.text) for e in rules_detect(text)]


def test_card_shape_failing_luhn_is_still_a_card_after_resolution() -> None:
    # cards have one home (scoring.pii.card_numbers); the rules path must still type them
    assert _resolved("card 5425233430109904 ok") == [("CREDIT_CARD", "5425233430109904")]
    assert _resolved("card 5425 2334 3010 9905 ok") == [("CREDIT_CARD", "5425 2334 3010 9905")]
    assert not [e for e in shaped_identifiers("pay 4539 1488 0343 6467") if e.type == "CREDIT_CARD"]


def test_iban_wrong_checksum_or_grouped_is_still_an_iban() -> None:
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82 WEST 1234 5698 7654 33")
    ok, bad = (
        shaped_identifiers(f"send it to {v} please")
        for v in ("GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765433")
    )
    assert [(e.type, e.score) for e in ok if e.type == "IBAN_CODE"] == [("IBAN_CODE", 0.9)]
    assert [(e.type, e.score) for e in bad if e.type == "IBAN_CODE"] == [("IBAN_CODE", 0.5)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SSN on file: XXX-XX-2409.", ("US_SSN", "XXX-XX-2409")),
        ("charged to 4532********7890 twice", ("CREDIT_CARD", "4532********7890")),
        ("account ****-**-1234 was closed", ("ACCOUNT_NUMBER", "****-**-1234")),
        ("the card ending in 4821 was declined", ("ACCOUNT_NUMBER", "4821")),
    ],
)
def test_masked_and_partial_forms(text: str, expected: tuple[str, str]) -> None:
    assert expected in _typed(shaped_identifiers(text))


def test_any_ddd_dd_dddd_is_an_ssn() -> None:
    assert _resolved("my SSN is 123-45-6789.") == [("US_SSN", "123-45-6789")]
    assert _resolved("old one 000-12-3456") == [("US_SSN", "000-12-3456")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My passport number is K7203418 for the visa.", ("PASSPORT", "K7203418")),
        ("driver's license: D123-4567-8901", ("DRIVER_LICENSE", "D123-4567-8901")),
        ("routing number 021000021 and", ("ROUTING_NUMBER", "021000021")),
        ("Patient ID: PT-88231 admitted", ("MEDICAL_ID", "PT-88231")),
        ("NHC: 7730215.", ("MEDICAL_ID", "7730215")),
        ("NASS: 12 48210933 07.", ("INSURANCE_ID", "12 48210933 07")),
        ("member ID W9921-0034 expired", ("MEMBER_ID", "W9921-0034")),
        ("student number 20231187", ("STUDENT_ID", "20231187")),
        ("Médico: Ana Ruiz NºCol: 46 46 10327.", ("PROFESSIONAL_ID", "46 46 10327")),
        ("DNI 48213377K caducado", ("NATIONAL_ID", "48213377K")),
        ("username: maria_k1990 here", ("USERNAME", "maria_k1990")),
    ],
)
def test_context_words_type_the_value(text: str, expected: tuple[str, str]) -> None:
    assert expected in _typed(context_identifiers(text))


@pytest.mark.parametrize(
    "text",
    [
        "Please use the handle on the left door.",  # "handle" without ":"/"is"
        "The account was opened in 2019.",  # a year is not an account number
        "Order 12 more boxes.",  # too few digits after a weak keyword
    ],
)
def test_context_words_without_a_value_find_nothing(text: str) -> None:
    assert context_identifiers(text) == []


@pytest.mark.parametrize(
    "value",
    ["20-10123456-9", "MRTNTN23M02D969P", "A-700555-R", "CHE-105.067.880", "0100112437011"],
)
def test_generic_identifier_shapes(value: str) -> None:
    found = generic_identifiers(f"Please check {value} before Friday.")
    assert _typed(found) == [("IDENTIFIER", value)]


@pytest.mark.parametrize(
    "text",
    [
        "The COVID-19 wave of 2020 ended on 10/10/2021 at 14:30.",
        "Version 3.11.2 costs 1,250,000.50 dollars.",
        "Take 500 mg twice a day for 10 days.",
        "I need to top up my card with 50 EUR.",
    ],
)
def test_dates_amounts_versions_and_prose_are_not_identifiers(text: str) -> None:
    assert [e for e in generic_identifiers(text) if e.type != "DATE_TIME"] == []
    assert [e for e in identifiers(text) if e.type not in ("US_SSN", "DATE_TIME")] == []


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("Logged: 2019-11-03 08:45:10 by the job", "2019-11-03 08:45:10"),
        ("Created 2024-02-29T23:05:59Z on the server", "2024-02-29T23:05:59Z"),
        ("Shipped 2023-07-14 09:30 from the depot", "2023-07-14 09:30"),
        ("Posted on 31/12/2022 17:02.", "31/12/2022 17:02"),
    ],
)
def test_iso_date_times_are_dates_not_identifiers(text: str, date: str) -> None:
    found = identifiers(text)
    assert [e.type for e in found] == ["DATE_TIME"], found
    assert found[0].text == date  # the whole date-time, the time not split


@pytest.mark.parametrize(
    ("text", "ident", "date"),
    [
        ("Parcel QX-448812 2021-05-06 11:20:00 left the hub", "QX-448812", "2021-05-06 11:20:00"),
        ("2021-05-06 11:20 RT7741902 scanned", "RT7741902", "2021-05-06 11:20"),
        ("ticket 5530912 2022-01-09 10:15 reopened", "5530912", "2022-01-09 10:15"),
        ("ref 88123450 18:40 today", "88123450", None),  # a lone time: neither
    ],
)
def test_an_identifier_next_to_a_date_is_still_one(text: str, ident: str, date: str | None) -> None:
    found = resolve_overlaps(identifiers(text))
    ids = [e.text for e in found if tier_of(e.type) == "identifier"]
    assert ids == [ident], found
    assert [e.text for e in found if e.type == "DATE_TIME"] == ([date] if date else [])


def test_bic_and_isil_need_a_real_country_code() -> None:
    assert ("BANK_CODE", "DEUTDEFF500") in _typed(identifiers("wire via DEUTDEFF500 today"))
    assert identifiers("wire via ABCDEQQX today") == []  # QQ is no country
    assert ("IDENTIFIER", "AT-FHK") in _typed(identifiers("library AT-FHK holds it"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("my ITIN is 912-70-1234 ok", "912-70-1234"),  # Presidio's US_ITIN
        ("the number 912803456 is on the booklet", "912803456"),  # US_PASSPORT shape
        ("ref 401 023 2137 today", "401 023 2137"),  # UK_NHS shape
        ("pay to GB82 WEST 1234 5698 7654 32 now", "GB82 WEST 1234 5698 7654 32"),
    ],
)
def test_rules_cover_the_presidio_recognizers_the_detector_skips(text: str, value: str) -> None:
    assert value in [v for _, v in _resolved(text)]
