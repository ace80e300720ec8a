"""PII detection seam used by the privacy axis.

The default detector is a set of cheap, dependency-free patterns (e-mail, phone, card with Luhn,
IBAN, US SSN, IPv4) so that `import duetto` stays light and every report counts leaks. A stronger
detector (Presidio + NER) is installed with `set_detector`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entity:
    type: str
    start: int
    end: int
    text: str
    score: float = 1.0


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


# --- card numbers: the one home of every card rule ----------------------------------------------

_NON_DIGITS = re.compile(r"\D")
# Any 12-19 digit run, optionally grouped by spaces or dashes (typed when Luhn-valid).
_CARD_ANY = re.compile(r"(?<![\w+-])\d(?:[ -]?\d){11,18}(?![\w-])")
# Card shapes typed even when Luhn fails (a typo or a test number is still someone's card):
# 4-4-4-x or 4-6-5 groups with one separator, or 16 plain digits.
_CARD_GROUPED = re.compile(
    r"(?<![\w+.-])(?:\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5})(?![\w-]|[.,]\d)"
)
_CARD_PLAIN = re.compile(r"(?<![\w+.-])\d{16}(?![\w-]|[.,]\d)")
CARD_LUHN_SCORE = 0.9
CARD_SHAPE_SCORE = 0.5


def card_numbers(text: str, *, luhn_only: bool = False) -> list[Entity]:
    """Card numbers, recall first: a checksum raises the score, never gates a card shape.

    Any 12-19 digit number (spaces/dashes allowed) that passes Luhn scores 0.9; a card shape
    (16 digits, 4-4-4-x or 4-6-5 groups) that fails it still counts at 0.5, unless
    `luhn_only` (the seam's minimal detector). Numbers of one repeated digit
    (0000 0000 0000 0000) are placeholders, not cards.
    """
    found: dict[tuple[int, int], Entity] = {}
    for m in _CARD_ANY.finditer(text):
        digits = _NON_DIGITS.sub("", m.group())
        if 12 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits):
            found[m.span()] = Entity("CREDIT_CARD", m.start(), m.end(), m.group(), CARD_LUHN_SCORE)
    if not luhn_only:
        for pattern in (_CARD_GROUPED, _CARD_PLAIN):
            for m in pattern.finditer(text):
                digits = _NON_DIGITS.sub("", m.group())
                if m.span() in found or len(set(digits)) <= 1:
                    continue
                score = CARD_LUHN_SCORE if luhn_ok(digits) else CARD_SHAPE_SCORE
                found[m.span()] = Entity("CREDIT_CARD", m.start(), m.end(), m.group(), score)
    return sorted(found.values(), key=lambda e: e.start)


_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL_ADDRESS", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("IBAN_CODE", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    ("US_SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    (
        "IP_ADDRESS",
        re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    ),
    (
        "PHONE_NUMBER",
        re.compile(
            r"(?<![\w-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}\b"
        ),
    ),
]


def regex_detect(text: str) -> list[Entity]:
    """The seam's minimal detector: e-mail, Luhn-valid card, IBAN, US SSN, IPv4, phone."""
    email = _PATTERNS[0]
    found: list[Entity] = []
    taken: list[tuple[int, int]] = []

    def claim(e: Entity) -> None:
        if not any(e.start < t and s < e.end for s, t in taken):
            taken.append((e.start, e.end))  # an earlier (more specific) rule claimed it
            found.append(e)

    for m in email[1].finditer(text):
        claim(Entity(email[0], m.start(), m.end(), m.group()))
    for e in card_numbers(text, luhn_only=True):
        claim(Entity(e.type, e.start, e.end, e.text))
    for etype, pattern in _PATTERNS[1:]:
        for m in pattern.finditer(text):
            claim(Entity(etype, m.start(), m.end(), m.group()))
    return sorted(found, key=lambda e: e.start)


_detector: Callable[[str], list[Entity]] = regex_detect


def set_detector(detector: Callable[[str], list[Entity]]) -> None:
    """Install the process-wide PII detector (e.g. the Presidio-based one)."""
    global _detector
    _detector = detector


def detect(text: str) -> list[Entity]:
    return _detector(text) if text else []


def current_detector() -> Callable[[str], list[Entity]]:
    """The process-wide detector `detect` runs now."""
    return _detector


# duetto.scoring.redact's placeholders (<EMAIL_ADDRESS_1>): they hold no personal data, though
# an NER model may tag the word inside one (e.g. STREET_ADDRESS_1 as a LOCATION).
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")


def outside_placeholders(text: str, found: list[Entity]) -> list[Entity]:
    """The entities of `text` that are not inside one of duetto's placeholders."""
    if not found or "<" not in text:
        return found
    spans = [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]
    return [e for e in found if not any(s <= e.start and e.end <= end for s, end in spans)]


def count_pii(text: str, detector: Callable[[str], list[Entity]]) -> int:
    """The entities `detector` finds in `text` outside placeholders. The detector is an
    argument, not the process-wide one, so a count never depends on what an earlier caller
    installed; as a leaf's `pii_counter`: `partial(count_pii, detector=regex_detect)`."""
    return len(outside_placeholders(text, detector(text))) if text else 0
