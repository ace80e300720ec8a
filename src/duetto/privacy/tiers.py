"""Risk tiers: every detected type belongs to one, and policy can act per tier.

- `secret`: credentials that grant access (passwords, API keys, tokens, private keys);
- `identifier`: a number or code that singles out a person or an account (SSN, card, IBAN,
  passport, tax and national IDs, patient / member / insurance IDs, usernames, IP addresses);
- `contact`: names and the ways to reach someone (e-mail, phone, street address);
- `quasi`: identifying only in combination (dates, places, ages, organisations, URLs, ...).

This is the one place that maps a type to its tier (`tier_of`); unknown types count as
`identifier` (a new detector's type is redacted as an identifier until it is listed here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from duetto.scoring.pii import Entity

Tier = Literal["secret", "identifier", "contact", "quasi"]
TIERS: tuple[Tier, ...] = ("secret", "identifier", "contact", "quasi")


def _types(text: str) -> frozenset[str]:
    return frozenset(text.split())


_BY_TIER: dict[Tier, frozenset[str]] = {
    "secret": _types(
        "SECRET PASSWORD API_KEY TOKEN ACCESS_TOKEN AUTH_TOKEN PRIVATE_KEY JWT CREDENTIAL"
        " CONNECTION_STRING AWS_KEY SSH_KEY"
    ),
    "identifier": _types(
        "US_SSN CREDIT_CARD IBAN_CODE IP_ADDRESS IDENTIFIER NATIONAL_ID TAX_ID PASSPORT"
        " DRIVER_LICENSE ACCOUNT_NUMBER ROUTING_NUMBER BANK_CODE MEDICAL_ID INSURANCE_ID"
        " MEMBER_ID STUDENT_ID EMPLOYEE_ID PROFESSIONAL_ID USERNAME VEHICLE_ID CRYPTO"
        " US_BANK_NUMBER US_DRIVER_LICENSE US_ITIN US_PASSPORT UK_NHS UK_NINO ES_NIF ES_NIE"
        " IT_FISCAL_CODE IT_DRIVER_LICENSE IT_VAT_CODE IT_PASSPORT IT_IDENTITY_CARD SG_NRIC_FIN"
        " AU_ABN AU_ACN AU_TFN AU_MEDICARE IN_PAN IN_AADHAAR IN_VEHICLE_REGISTRATION"
        " IN_VOTER IN_PASSPORT PL_PESEL FI_PERSONAL_IDENTITY_CODE MEDICAL_LICENSE"
        " KR_RRN TH_TNIN"
    ),
    "contact": _types("PERSON EMAIL_ADDRESS PHONE_NUMBER STREET_ADDRESS"),
    "quasi": _types(
        "DATE_TIME LOCATION NRP ORGANIZATION AGE SEX TITLE PROFESSION ZIP_CODE URL OTHER"
    ),
}
TYPE_TIER: dict[str, Tier] = {t: tier for tier, types in _BY_TIER.items() for t in types}


def tier_of(entity_type: str) -> Tier:
    """The risk tier of a detected (or labelled) type; unknown types are identifiers."""
    tier = TYPE_TIER.get(entity_type)
    if tier is not None:
        return tier
    upper = entity_type.upper()
    if any(w in upper for w in ("SECRET", "PASSWORD", "TOKEN", "API_KEY", "PRIVATE_KEY")):
        return "secret"
    return "identifier"


def in_tiers(
    detector: Callable[[str], list[Entity]], tiers: Iterable[str]
) -> Callable[[str], list[Entity]]:
    """`detector` reporting only the entities of `tiers` (e.g. what a redaction replaces)."""
    keep = frozenset(tiers)
    return lambda text: [e for e in detector(text) if tier_of(e.type) in keep]
