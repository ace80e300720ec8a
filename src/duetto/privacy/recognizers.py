"""Dependency-free recognizers that fill Presidio's gaps, and the overlap resolution.

Presidio has no street-address recognizer and its phone recognizer only knows a handful of
regions (card numbers have one home: `duetto.scoring.pii.card_numbers`). These run on plain
text with `re` only, so they also serve without Presidio. Scores follow Presidio's scale (0..1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from duetto.scoring.pii import Entity

# --- street addresses -------------------------------------------------------------------------

# Street-type words that follow the street name ("90 Whitchurch Road").
_SUFFIX_TYPES = (
    r"Street|St|Road|Rd|Avenue|Ave|Av|Drive|Dr|Lane|Ln|Way|Court|Ct|Boulevard|Blvd|Place|Pl|"
    r"Terrace|Square|Sq|Crescent|Close|Grove|Gardens|Parkway|Pkwy|Highway|Hwy|Circle|Cir|"
    r"Trail|Row|Walk|Hill|Park|Flats|Mews|Rise|Vale|View|Green|Heights|Plaza|Loop|Pike|"
    r"Alley|Path|Estate|Quay|Wharf|Track|Route|Passage|Bypass|Cove|Coves|Mill|Mills|Turnpike|"
    r"Union|Junction|Crossing|Ridge|Ford|Forge|Fork|Glen|Harbor|Harbour|Haven|Hollow|Knoll|"
    r"Landing|Manor|Meadow|Meadows|Orchard|Oval|Overpass|Ranch|Skyway|Spring|Springs|Summit|"
    r"Trace|Valley|Vista|Expressway|Freeway|Causeway|Str\.?|str\.?|Ville|Village|Crest|Dale"
)
# Street words that come first (Romance, Slavic, Greek, ...): "Rua Igreja 25", "ul. Słowicza 10".
_PREFIX_TYPES = (
    r"Rua|Rúa|Via|Viale|Vicolo|Piazza|Corso|Largo|Calle|Carrer|Avenida|Avda\.?|Av\.|Paseo|"
    r"Plaza|Camino|Travessa|Praça|Estrada|Rue|Boulevard|Bd\.?|Chemin|Allée|Impasse|Quai|"
    r"Place|ul\.|ulica|trg|Λ\.|Οδός|Strada|Calea|Aleea|Str\."
)
# Compound endings of Germanic, Nordic, Dutch, Finnish, Hungarian street names.
_COMPOUND_ENDINGS = (
    r"stra(?:ss|ß)e|str\.|gasse|weg|allee|platz|ring|damm|ufer|katu|tie|kuja|polku|väylä|"
    r"vej|gade|gata|gatan|vägen|veien|vegur|braut|stræti|straeti|laan|straat|plein|gracht|"
    r"dreef|kade|steeg|singel|utca|út|tér|körút|sor"
)
_WORD = r"[^\W\d_][\w'’.-]*"
_NUM = r"\d{1,5}[A-Za-z]?"

_ADDRESS_CORES: list[tuple[re.Pattern[str], float]] = [
    # [number] Name(s) Suffix [number]: "1317 Kimberly Way", "18 McPherson Road"
    (re.compile(rf"\b(?:{_NUM} )?(?:{_WORD} ){{1,3}}(?:{_SUFFIX_TYPES})\b\.?(?: {_NUM}\b)?"), 0.6),
    # Prefix-type street: "Rua Cyro Schmutzer Franco 1213", "Via Roma 131", "ul. Słowicza 10"
    (re.compile(rf"(?<!\w)(?:{_PREFIX_TYPES}) (?:{_WORD} ){{0,4}}{_WORD},? {_NUM}\b", re.I), 0.6),
    # Compound street name + number: "Friedhofstrasse 33", "Kiannonkatu 98", "hegyalja út 98."
    # The lookahead (implied by the rest) skips words not followed by a number before trying
    # the 40 endings at every position inside them: same matches, a sixth of the time.
    (
        re.compile(
            rf"\b(?=(?:{_WORD} )?[\w.]*,? \d)(?:{_WORD} )?\w*(?:{_COMPOUND_ENDINGS}),? {_NUM}\b\.?",
            re.I,
        ),
        0.6,
    ),
    # Number + capitalised word(s) + number: "4596 Tylova 285", "947 trg revolucije 17"
    (re.compile(rf"\b\d{{1,6}} (?:{_WORD} ){{1,4}}{_NUM}\b"), 0.5),
    # Capitalised word(s) + house number, weakest: "Golfskálinn 78", "Peter Zuidhove 188"
    (
        re.compile(
            r"\b[A-ZÀ-ÖØ-Þ][^\W\d_]{3,}(?: [A-ZÀ-ÖØ-Þ][^\W\d_]+)? \d{1,4}[A-Za-z]?\b(?![.,:/-]\d)"
        ),
        0.35,
    ),
    # Secondary units and postal boxes: "Apt. 425", "Suite 828", "P.O. Box 242", "Postbox 53"
    (
        re.compile(
            r"\b(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|Room|Floor|P\.? ?O\.? Box|Postbox|"
            r"Box|PO Box)\s?#?\d{1,6}\b",
            re.I,
        ),
        0.6,
    ),
    # US military addresses: "PSC 3294, Box 9168\nAPO AA 61487", "USNS Bergman\nFPO AP 93757"
    (re.compile(r"\b(?:PSC|CMR|Unit) \d{3,5},? Box \d{3,5}\b", re.I), 0.7),
    (re.compile(r"\b(?:USNS|USNV|USS|USCGC) [A-Z][a-z]+\b"), 0.6),
    (re.compile(r"\b[AFD]PO A[AEP] \d{5}\b", re.I), 0.7),
]
# Words that join two quantities ("5 y 4", "7 x 10", "1 cada 8", "50 to 60"): the
# number-words-number shape with one of them is a measurement, not a street.
_CONNECTOR = re.compile(
    r"(?<!\S)(?:x|X|y|e|o|a|and|or|to|by|of|per|times|en|el|la|de|por|cada|con|vez|veces|"
    r"al|durante|entre|et|und|bis|mg|g|gr|gramos|ml|cm|mm|kg|Gy|h|min)(?!\S)"
)
# A following line or comma part that still belongs to an address: a town, "ST 12345", a
# country with a postcode. Short, no sentence punctuation, starts with a capital or a digit.
_CONTINUATION = re.compile(
    r"(?:[ \t]*(?:,[ \t]*|\n[ \t]*(?:,[ \t]*)?)|[ \t]+)"
    r"(?:(?:Apt\.?|Suite|Unit|Box) ?\d{1,6}"
    r"|[A-ZÀ-ÖØ-ÞΑ-Ω][\w'’.() -]{0,38}?(?: \d{4,6}(?:-\d{3,4})?)?"
    r"|\d{4,6}(?:-\d{3,4})?)(?=[ \t]*(?:\n|,|$))"
)
_ADDRESS_CONTEXT = re.compile(
    r"(?:address|live[sd]? (?:at|on|in)|located (?:at|on)|send\b.*\bto|ship\b.*\bto|"
    r"meet me at|deliver\w* to|return to|\bat|\bon)\s*:?\s*$",
    re.I,
)


def street_addresses(text: str) -> list[Entity]:
    """Street addresses, extended over the town/postcode/country lines that follow them."""
    found: list[Entity] = []
    for pattern, score in _ADDRESS_CORES:
        for m in pattern.finditer(text):
            start, end = m.start(), m.end()
            if score == 0.5 and _CONNECTOR.search(m.group()):
                continue  # "5 y 4", "11 x 3", "between 5 and 10": a count, not a street
            # A leading house or building number on the same line belongs to the address.
            lead = re.search(r"\d{1,6}[ \t]+$", text[max(0, start - 8) : start])
            if lead:
                start -= len(lead.group())
            if score < 0.5:
                if not _ADDRESS_CONTEXT.search(text[max(0, start - 40) : start]) and not lead:
                    continue  # the weak "Word 12" shape needs an address context
                score = 0.5
            end = _extend(text, end)
            if re.search(r"[^\W\d_]{4,}\.$", text[start:end]):
                end -= 1  # a sentence's full stop after "Road", not an abbreviation's dot
            found.append(Entity("STREET_ADDRESS", start, end, text[start:end], score))
    return _merge_same_type(found)


def _extend(text: str, end: int, max_parts: int = 4) -> int:
    for _ in range(max_parts):
        m = _CONTINUATION.match(text, end)
        if not m or "\n\n" in m.group():
            break
        end = m.end()
    return end


def _merge_same_type(entities: list[Entity]) -> list[Entity]:
    """Union overlapping spans of one type into one span (keeps the best score)."""
    merged: list[Entity] = []
    for e in sorted(entities, key=lambda x: (x.start, -x.end)):
        if merged and e.start <= merged[-1].end and e.type == merged[-1].type:
            last = merged[-1]
            end = max(last.end, e.end)
            text = last.text + e.text[last.end - e.start :] if end > last.end else last.text
            merged[-1] = Entity(last.type, last.start, end, text, max(last.score, e.score))
        else:
            merged.append(e)
    return merged


# --- phone numbers ----------------------------------------------------------------------------

_PHONE_END = r"(?:x\d{1,5})?(?!\w|/|[-:.]\d)"  # an optional extension, then no more digits
_PHONE = re.compile(
    r"(?<![\w+./-])(?:"
    # Country code, then groups; the area code may be one digit and the subscriber number up
    # to 8 digits: "+46 (0)8 928 571 38", "+49 30 12345678", "+972-3-1234567".
    r"\+\d{1,3}[ .-]?(?:\(0\)[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:[ .-]\d{2,8}){1,4}"
    # Groups of 2-6 digits, optionally after an area code in brackets: "(555) 123-4567",
    # "0688 872 49 99", "60-56-85-91"; a trunk "1"/"8" may lead: "1-800-555-0199".
    r"|(?:[18][ .-]?(?=\(\d{3}\)|\d{3}[ .-]\d{3}[ .-]\d{4}))?"
    r"(?:\(\d{1,5}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,6}){1,4}"
    # National format: trunk 0, area code, 5-8 digit subscriber: "0393 1144137", "06-10446904",
    # "(030) 1234567", "098765 43210".
    r"|(?:0\d{1,5}|\(0\d{1,4}\))[ .-]?\d{6,8}|0\d{4,5}[ .-]\d{5}"
    # Digits only: "5551234567", "+447700677662".
    r"|\+?\d{9,13}"
    rf"){_PHONE_END}"
)
# A whole value shaped like a date: "1980-07-28", "28.07.1980", "7/28/80".
_DATE_SHAPE = re.compile(
    r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})|(\d{1,2})[-./](\d{1,2})[-./](\d{2,4})"
)
_NON_DIGITS = re.compile(r"\D")
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")


def _is_date(value: str) -> bool:
    m = _DATE_SHAPE.fullmatch(value)
    if not m:
        return False
    if m.group(1):
        month, day = int(m.group(2)), int(m.group(3))
        return 1 <= month <= 12 and 1 <= day <= 31
    a, b = int(m.group(4)), int(m.group(5))
    return (1 <= a <= 31 and 1 <= b <= 12) or (1 <= a <= 12 and 1 <= b <= 31)


def phone_numbers(text: str) -> list[Entity]:
    """International phone numbers in the common national formats (7 to 15 digits).

    The digit count (E.164 allows at most 15) excludes an extension ("x818"); a value is
    rejected as a date only when all of it is a valid date ("1980-07-28", not "60-56-85-91").
    """
    found: list[Entity] = []
    for m in _PHONE.finditer(text):
        value = m.group()
        digits = _NON_DIGITS.sub("", value.split("x", 1)[0])
        if not 7 <= len(digits) <= 15 or _is_date(value):
            continue
        if _SSN_SHAPE.fullmatch(value):
            continue  # SSN shape
        score = 0.6 if (value.startswith("+") or "(" in value or len(digits) >= 9) else 0.45
        found.append(Entity("PHONE_NUMBER", m.start(), m.end(), value, score))
    return found


# --- overlap resolution ----------------------------------------------------------------------

# Which type wins when two detections overlap: checksummed and structured types first, then the
# fuzzier ones. Types not listed rank after all listed ones.
TYPE_PRIORITY = (
    "PRIVATE_KEY",
    "JWT",
    "CONNECTION_STRING",
    "API_KEY",
    "PASSWORD",
    "SECRET",
    "EMAIL_ADDRESS",
    "URL",
    "IBAN_CODE",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "PASSPORT",
    "DRIVER_LICENSE",
    "NATIONAL_ID",
    "MEDICAL_ID",
    "INSURANCE_ID",
    "PROFESSIONAL_ID",
    "MEMBER_ID",
    "STUDENT_ID",
    "EMPLOYEE_ID",
    "ROUTING_NUMBER",
    "ACCOUNT_NUMBER",
    "USERNAME",
    "STREET_ADDRESS",
    "PHONE_NUMBER",
    "PERSON",
    "IDENTIFIER",
    "DATE_TIME",
    "LOCATION",
    "ORGANIZATION",
    "NRP",
)
_RANK = {t: i for i, t in enumerate(TYPE_PRIORITY)}


def resolve_overlaps(entities: Iterable[Entity], min_score: float = 0.0) -> list[Entity]:
    """One entity per stretch of text: the higher-priority type, then the longer span, wins.

    A loser that sticks out of the winner keeps its uncovered part, so resolution never
    un-redacts characters that some detector flagged.
    """
    pool = [e for e in entities if e.score >= min_score and e.end > e.start]
    pool.sort(key=lambda e: (_RANK.get(e.type, len(_RANK)), -(e.end - e.start), -e.score))
    kept: list[Entity] = []
    for e in pool:
        for part in _subtract(e, kept):
            if part.text.strip():
                kept.append(part)
    return sorted(kept, key=lambda e: e.start)


def _subtract(e: Entity, kept: list[Entity]) -> list[Entity]:
    pieces = [(e.start, e.end)]
    for k in kept:
        nxt: list[tuple[int, int]] = []
        for s, t in pieces:
            if k.end <= s or t <= k.start:
                nxt.append((s, t))
                continue
            if s < k.start:
                nxt.append((s, k.start))
            if k.end < t:
                nxt.append((k.end, t))
        pieces = nxt
    out = []
    for s, t in pieces:
        if (s, t) == (e.start, e.end):
            out.append(e)
            continue
        # Trim whitespace/punctuation left at the cut so a fragment stays a clean span.
        frag = e.text[s - e.start : t - e.start]
        lstrip = len(frag) - len(frag.lstrip(" \t\n,.;:-"))
        rstrip = len(frag) - len(frag.rstrip(" \t\n,;:-"))
        s2, t2 = s + lstrip, t - rstrip
        if t2 - s2 >= 2:
            out.append(Entity(e.type, s2, t2, e.text[s2 - e.start : t2 - e.start], e.score))
    return out
