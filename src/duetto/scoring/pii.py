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


_PATTERNS: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]] = [
    ("EMAIL_ADDRESS", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), None),
    (
        "CREDIT_CARD",
        re.compile(r"\b(?:\d[ -]?){12,18}\d\b"),
        lambda s: luhn_ok(re.sub(r"\D", "", s)),
    ),
    ("IBAN_CODE", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), None),
    ("US_SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"), None),
    (
        "IP_ADDRESS",
        re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
        None,
    ),
    (
        "PHONE_NUMBER",
        re.compile(
            r"(?<![\w-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}\b"
        ),
        None,
    ),
]


def regex_detect(text: str) -> list[Entity]:
    found: list[Entity] = []
    taken: list[tuple[int, int]] = []
    for etype, pattern, check in _PATTERNS:
        for m in pattern.finditer(text):
            if check and not check(m.group()):
                continue
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue  # an earlier (more specific) pattern already claimed this span
            taken.append((m.start(), m.end()))
            found.append(Entity(etype, m.start(), m.end(), m.group()))
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


def count_pii(text: str) -> int:
    return len(outside_placeholders(text, detect(text)))
