"""Identifiers by shape and by context, recall first: a checksum raises the score, never gates.

Under `redact` a miss is a leak and a false alarm costs a little quality, so:

- an IBAN shape is an IBAN_CODE whether or not it passes mod-97 (0.9 if it does, 0.5 if not);
  card shapes follow the same rule in their one home, `duetto.scoring.pii.card_numbers`;
- any `ddd-dd-dddd` is a US_SSN (the "invalid" 000/666/9xx areas are still someone's typo);
- masked and partial forms (`XXX-XX-2409`, `4532********7890`, `****1234`) keep their type;
- a value after a context word ("passport", "NHC:", "member ID", "username") gets that type;
- any other token with 6+ digits, or upper-case letters mixed with 2+ digits (grouped by
  spaces, dashes, dots or slashes), is a generic IDENTIFIER (python-stdnum's 118 formats share
  no other common shape). Amounts and version numbers are skipped; a calendar date inside
  such a token (with its time) is reported as DATE_TIME, a lone time is skipped.

Pure `re`; scores on Presidio's 0..1 scale (every rule here scores >= 0.4, the Presidio
detector's default floor).
"""

from __future__ import annotations

import re

from duetto.scoring.pii import Entity

_NON_ALNUM = re.compile(r"[^A-Za-z0-9]")


def iban_ok(value: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (separators ignored)."""
    s = _NON_ALNUM.sub("", value).upper()
    if len(s) < 15 or not s[:2].isalpha():
        return False
    digits = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(digits) % 97 == 1


# --- shapes ------------------------------------------------------------------------------------

_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,4})?(?![A-Za-z0-9])"
)
_SSN_ANY = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_MASK = r"[Xx*•#]{2,}"
_MASKED = re.compile(
    rf"(?<![\w*•#])(?:{_MASK}|\d{{1,6}})(?:[ -]?(?:{_MASK}|\d{{1,6}})){{1,5}}(?![\w*•#])"
)
_LAST_DIGITS = re.compile(
    r"\b(?:ending (?:in|with)|last (?:4|four|5|five) (?:digits )?(?:of [\w ]{1,20}? )?"
    r"(?:are|is|:)?)\s*(\d{4,5})\b",
    re.I,
)


def shaped_identifiers(text: str) -> list[Entity]:
    """IBANs, SSNs and masked forms by shape (checksums only raise the score).

    Card numbers by shape are `duetto.scoring.pii.card_numbers` (one home for every card rule).
    """
    found: list[Entity] = []
    for m in _IBAN.finditer(text):
        score = 0.9 if iban_ok(m.group()) else 0.5
        found.append(Entity("IBAN_CODE", m.start(), m.end(), m.group(), score))
    for m in _SSN_ANY.finditer(text):
        found.append(Entity("US_SSN", m.start(), m.end(), m.group(), 0.6))
    for m in _MASKED.finditer(text):
        masked = m.group()
        masks = sum(masked.count(c) for c in "Xx*•#")
        n_digits = sum(c.isdigit() for c in masked)
        if masks < 2 or n_digits < 2:
            continue
        if re.fullmatch(r"[Xx*•#\d]{3}-[Xx*•#\d]{2}-[Xx*•#\d]{4}", masked):
            etype = "US_SSN"
        elif 13 <= masks + n_digits <= 19:
            etype = "CREDIT_CARD"
        else:
            etype = "ACCOUNT_NUMBER"
        found.append(Entity(etype, m.start(), m.end(), masked, 0.6))
    for m in _LAST_DIGITS.finditer(text):
        found.append(Entity("ACCOUNT_NUMBER", m.start(1), m.end(1), m.group(1), 0.5))
    return found


# --- context words -----------------------------------------------------------------------------

# (type, keywords). A value follows the keyword, optionally after "number", "no.", "#", "ID",
# "is", ":" or "=". English, Spanish, French, German, Italian, Portuguese.
_CONTEXT: tuple[tuple[str, str], ...] = (
    ("PASSPORT", r"passport|pasaporte|passeport|reisepass|passaporto"),
    (
        "DRIVER_LICENSE",
        r"driver'?s? licen[cs]e|driving licen[cs]e|licen[cs]e|DL|permis de conduire|"
        r"licencia de conducir|carn[eé] de conducir|f[üu]hrerschein|patente",
    ),
    ("ROUTING_NUMBER", r"routing|ABA|sort code|BIC|SWIFT|BLZ|bank code|transit"),
    (
        "ACCOUNT_NUMBER",
        r"(?:bank |checking |savings |brokerage )?account|acct|a/c|cuenta|compte|konto|conto|"
        r"IBAN|CBU|CLABE",
    ),
    (
        "MEDICAL_ID",
        r"patient|MRN|medical record|health (?:card|number)|NHS|NHC|N\.H\.C\.?|"
        r"historia cl[ií]nica|CIPA|episodio|episode|encounter|admission",
    ),
    (
        "INSURANCE_ID",
        r"insurance|policy|NASS|NSS|N\.A\.S\.S\.?|seguridad social|afiliaci[oó]n|medicare|"
        r"medicaid|claim|subscriber|group",
    ),
    ("MEMBER_ID", r"member(?:ship)?|loyalty|customer|client|cliente|subscriber"),
    ("STUDENT_ID", r"student|matr[ií]cula|enrol(?:l)?ment"),
    ("EMPLOYEE_ID", r"employee|staff|badge|personnel"),
    (
        "PROFESSIONAL_ID",
        r"N[ºo°]\.? ?Col(?:egiado)?|colegiado|NPI|DEA|GMC|license (?:no|number)",
    ),
    (
        "NATIONAL_ID",
        r"SSN|social security|national (?:id|insurance|identity)|NINO|ID card|identity card|"
        r"DNI|NIE|NIF|CIF|CPF|CURP|RUT|RUN|PESEL|BSN|Aadhaar|personnummer|"
        r"tax|TIN|ITIN|EIN|VAT|TVA|IVA|USt-?IdNr|Steuer-?ID|codice fiscale|c[eé]dula|"
        r"carte d'identit[eé]|Personalausweis|documento|DUI|NIT|RFC|personal (?:id|number)",
    ),
    (
        "IDENTIFIER",
        r"ID|identifier|reference|ref|case|ticket|order|invoice|serial|tracking|"
        r"confirmation|booking|number|n[úu]mero|nummer|num[eé]ro|no|n[ºo°]|#",
    ),
)
_LINK = (
    r"(?![A-Za-z])(?:[ \t]*(?:number|num|no\.?|n[ºo°]\.?|#|id|code|c[oó]digo)(?![A-Za-z]))?"
    r"[ \t]*(?:is|was|:|=|#|-|es)?[ \t]*"
)
# A value: one token with a digit (or any identifier-like token after a strong keyword),
# continued by space-separated groups that hold a digit ("28 28 20943", "965 920 358 MVA").
_VALUE = r"[A-Za-z0-9][\w./\-]*(?:[ ](?=\S*\d|(?-i:[A-Z]{1,4}\b))[A-Za-z0-9][\w./\-]*){0,4}"
_CONTEXT_RE = [
    (etype, re.compile(rf"(?<![\w-])(?:{keys})\.?{_LINK}({_VALUE})", re.I))
    for etype, keys in _CONTEXT
]
# A username needs an explicit link ("username: ana_k", "my login is jdoe").
_USERNAME = re.compile(
    r"(?<![\w-])(?:user ?name|user ?id|login|handle|usuario|screen ?name|gamertag|nickname)"
    r"[ \t]*(?:is|was|:|=)[ \t]*(@?[A-Za-z0-9][\w.\-]{2,}[A-Za-z0-9_])",
    re.I,
)


def context_identifiers(text: str) -> list[Entity]:
    """A value after a context word takes that word's type ("NHC: 2569870" -> MEDICAL_ID)."""
    found: list[Entity] = []
    for etype, pattern in _CONTEXT_RE:
        for m in pattern.finditer(text):
            start, value = (
                m.start(1),
                _until_date(m.group(1), text[m.end(1) : m.end(1) + 3]).rstrip(".,;:-/"),
            )
            if not _weak_value(value, 4 if etype == "IDENTIFIER" else 3):
                found.append(Entity(etype, start, start + len(value), value, 0.6))
    for m in _USERNAME.finditer(text):
        if m.group(1).lower() not in _NOT_VALUES:
            found.append(Entity("USERNAME", m.start(1), m.end(1), m.group(1), 0.6))
    return found


def _until_date(value: str, rest: str) -> str:
    """The groups of a value before its first date or time ("55231 2020-06-20 14" -> "55231").

    `rest` is the text after the value: "12345678 10" before ":30" ends with an hour.
    """
    groups = value.split(" ")
    if len(groups) > 1 and re.fullmatch(r"\d{1,2}", groups[-1]) and re.match(r":[0-5]\d", rest):
        groups.pop()
    kept: list[str] = []
    for group in groups:
        if _DATE_GROUP.fullmatch(group):
            break
        kept.append(group)
    return " ".join(kept)


def _weak_value(value: str, min_digits: int) -> bool:
    digits = sum(c.isdigit() for c in value)
    return digits < min_digits or (not value.isdigit() and _skip(value))


_NOT_VALUE_WORDS = (
    "the and for you your our their this that with from not yes none null required here"
)
_NOT_VALUES = frozenset(_NOT_VALUE_WORDS.split())

# --- the generic rule ----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?<![\w@/:.,+-])[A-Za-z0-9](?:[A-Za-z0-9]|[./:-](?=[A-Za-z0-9])|,(?=\d{3}))*"
    r"(?:[ ](?=[A-Z0-9]*\d)[A-Z0-9](?:[A-Z0-9]|[./:-](?=[A-Z0-9]))*(?![\w])){0,5}"
)
# A calendar date (year first or last, valid month and day) with an optional "T" time, or a
# time: a group of these inside a token is a DATE_TIME, never part of an identifier.
_DAY, _MONTH = r"(?:0?[1-9]|[12]\d|3[01])", r"(?:0?[1-9]|1[0-2])"
_TIME = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?"
_DATE = (
    rf"(?:(?:19|20)\d\d([-./]){_MONTH}\1{_DAY}|{_DAY}([-./]){_MONTH}\2(?:19|20)?\d\d"
    rf"|{_MONTH}([-./]){_DAY}\3(?:19|20)?\d\d)(?:T{_TIME})?"
)
_DATE_GROUP = re.compile(_DATE)
_TIME_GROUP = re.compile(_TIME)
_DATE_OR_TIME = re.compile(
    r"\d{1,4}[-./]\d{1,2}[-./]\d{1,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?|\d{1,2}:\d{2}(?::\d{2})?"
    r"|(?:19|20)\d\d[-/–](?:19|20)?\d\d"
)
_AMOUNT = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d{1,2}")
_WORD_NUMBER = re.compile(r"[A-Z]{2,}[- ]\d{1,4}|[A-Z]{2,3}\d{1,2}")  # COVID-19, ISO 8601, MP3
_VERSION = re.compile(r"[vV]?\d{1,3}(?:\.\d{1,3}){1,3}")


def _skip(value: str) -> bool:
    """Dates, times, amounts, decimals and version numbers are not identifiers."""
    return any(p.fullmatch(value) for p in (_DATE_OR_TIME, _AMOUNT, _VERSION, _WORD_NUMBER))


def generic_identifiers(text: str) -> list[Entity]:
    """Tokens of identifier shape: 6+ digits, or upper-case letters with 2+ digits.

    Dates and times inside a token are cut out ("2020-06-20 14:11:22" is a DATE_TIME, and
    "AB-123456 2020-06-20" an identifier next to one).
    """
    found: list[Entity] = []
    for m in _TOKEN.finditer(text):
        value, start = m.group().rstrip(".,:-/"), m.start()
        while " " in value and _lead_word(value.split(" ", 1)[0]):
            cut = value.index(" ") + 1
            value, start = value[cut:], start + cut  # "card 4111 ...": the word is not part
        for offset, piece, is_date in _date_runs(value):
            s = start + offset
            if is_date:
                found.append(Entity("DATE_TIME", s, s + len(piece), piece, 0.4))
            elif _identifier_shaped(piece):
                found.append(Entity("IDENTIFIER", s, s + len(piece), piece, 0.4))
    return found


def _date_runs(value: str) -> list[tuple[int, str, bool]]:
    """`value`'s space-separated groups as runs (offset, text, is a date[-time]).

    A date group takes the time groups after it; a time with no date before it is dropped
    (neither a date nor part of an identifier).
    """
    runs: list[tuple[int, str, bool]] = []
    pos = 0
    for group in value.split(" "):
        end = pos + len(group)
        after_date = bool(runs) and runs[-1][2] and runs[-1][0] + len(runs[-1][1]) + 1 == pos
        if _DATE_GROUP.fullmatch(group) or (after_date and _TIME_GROUP.fullmatch(group)):
            kind = True
        elif _TIME_GROUP.fullmatch(group):
            pos = end + 1
            continue
        else:
            kind = False
        if runs and runs[-1][2] == kind and runs[-1][0] + len(runs[-1][1]) + 1 == pos:
            runs[-1] = (runs[-1][0], value[runs[-1][0] : end], kind)  # same kind, adjacent
        else:
            runs.append((pos, group, kind))
        pos = end + 1
    return runs


def _identifier_shaped(value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    if not digits or _skip(value):
        return False
    letters = [c for c in value if c.isalpha()]
    lower = sum(c.islower() for c in letters)
    alnum = digits + len(letters)
    if digits >= 6 and (lower == 0 or alnum >= 12):
        return True  # mostly digits: "4765849", "20-10123456-9", "0100112437011"
    if letters and alnum >= 6 and (lower == 0 or (alnum >= 16 and digits >= 3)):
        return True  # "MRTNTN23M02D969P", "A-700555-R", "A0ESSP", "16UwLL9Risc3Qf..."
    # "51-43-4", "156/141/14808"
    return digits >= 5 and not letters and sum(c in "-/" for c in value) >= 2


def _lead_word(group: str) -> bool:
    return not any(c.isdigit() for c in group) and len(group) > 1  # "SSN 219-09-9999"


# ISO 3166 alpha-2 codes (and XK): the country inside a BIC, the prefix of an ISIL.
_COUNTRIES = frozenset(
    " ".join(
        (
            "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN",
            "BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ",
            "DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL",
            "GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM",
            "JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME",
            "MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP",
            "NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD",
            "SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO",
            "TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW",
        )
    ).split()
)
_BIC = re.compile(r"(?<![\w-])[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?(?![\w-])")
_ISIL = re.compile(r"(?<![\w-])([A-Z]{2})-[A-Z0-9]{2,}(?:-[A-Z0-9]+)*(?![\w-])")


def bank_and_library_codes(text: str) -> list[Entity]:
    """BIC/SWIFT codes ("ABNANL2A": bank, country, place) and ISILs ("AT-FHK")."""
    found = [
        Entity("BANK_CODE", m.start(), m.end(), m.group(), 0.4)
        for m in _BIC.finditer(text)
        if m.group()[4:6] in _COUNTRIES
    ]
    found += [
        Entity("IDENTIFIER", m.start(), m.end(), m.group(), 0.4)
        for m in _ISIL.finditer(text)
        if m.group(1) in _COUNTRIES
    ]
    return found


def identifiers(text: str) -> list[Entity]:
    """Every identifier rule (overlaps resolved later by `resolve_overlaps`)."""
    return (
        shaped_identifiers(text)
        + context_identifiers(text)
        + generic_identifiers(text)
        + bank_and_library_codes(text)
    )
