"""Person-name rules on top of a small NER model.

spaCy's small English pipeline misses or mislabels many names, above all non-English ones (it
tags "Tomomi Nishiyama" as an organisation). These rules add PERSON spans from cues the model
ignores: an honorific ("Mrs. Diana Usamov"), a naming phrase ("my name is borna jerković"),
an organisation-labelled span shaped like "First [I.] Last" with no company word, and the other
members of a list that already holds a person. Works on any spaCy `Doc` (duck-typed, so this
module imports nothing heavy).
"""

from __future__ import annotations

import re
from typing import Any

from duetto.scoring.pii import Entity

HONORIFICS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "sir",
        "madam",
        "mister",
        "dame",
        "lady",
        "lord",
        "rev",
        "fr",
        "sr",
        "sra",
        "srta",
        "herr",
        "frau",
        "mme",
        "mlle",
        "m",
    }
)
# Phrases after which a name follows; lower-case names are accepted after these.
NAMING_CUES: tuple[tuple[str, ...], ...] = (
    ("name", "is"),
    ("name", "'s"),
    ("call", "me"),
    ("called",),
    ("named",),
    ("calls", "me"),
    ("i", "am"),
    ("i", "'m"),
    ("dear",),
    ("hi",),
    ("hello",),
    ("regards", ","),
    ("sincerely", ","),
    ("thanks", ","),
    ("signed",),
    ("contact",),
    ("ask", "for"),
    ("speak", "to"),
    ("talk", "to"),
    ("assistant", "to"),
    ("married", "to"),
    ("son",),
    ("daughter",),
    ("wife",),
    ("husband",),
    ("kid",),
    ("child",),
    ("partner", "'s", "name"),
    ("by",),
    ("with",),
    ("name", ":"),
    ("said",),
    ("told",),
    ("asked",),
    ("shouted", "at"),
    ("starring",),
    ("directed", "by"),
    ("last", "name", "?"),
    ("first", "name", "?"),
    ("user", ":"),
    ("follow", "up", "with"),
)
# Verbs that follow a person: "Jacob lives on ...", "Zak shouted at ...".
SUBJECT_CUES = frozenset(
    {
        "said",
        "says",
        "shouted",
        "lives",
        "lived",
        "told",
        "asked",
        "wrote",
        "replied",
        "began",
        "spent",
        "works",
        "worked",
        "married",
        "died",
        "smiled",
        "laughed",
        "cried",
        "thinks",
    }
)
# Field labels that look like a speaker ("Address: ...") but are not names.
FIELD_LABELS = frozenset(
    {
        "name",
        "address",
        "email",
        "e-mail",
        "phone",
        "mobile",
        "fax",
        "desk",
        "office",
        "user",
        "date",
        "time",
        "subject",
        "re",
        "to",
        "from",
        "cc",
        "note",
        "answer",
        "question",
        "title",
        "company",
        "website",
        "url",
        "tel",
        "dob",
        "age",
        "id",
        "account",
        "card",
        "iban",
        "ssn",
        "genre",
        "rating",
        "summary",
        "description",
        "status",
        "type",
        "location",
        "country",
        "city",
        "zip",
        "state",
        "street",
        "personal",
        "info",
        "contact",
        "q",
        "a",
        "p.s",
        "ps",
    }
)
# Words that make a span an organisation, not a person.
ORG_WORDS = frozenset(
    {
        "inc",
        "ltd",
        "llc",
        "llp",
        "corp",
        "co",
        "company",
        "group",
        "bank",
        "university",
        "college",
        "institute",
        "association",
        "foundation",
        "partners",
        "systems",
        "solutions",
        "technologies",
        "technology",
        "services",
        "international",
        "holdings",
        "labs",
        "gmbh",
        "ag",
        "sa",
        "plc",
        "and",
        "&",
        "of",
        "the",
        "for",
        "news",
        "media",
        "software",
        "network",
        "networks",
        "capital",
        "consulting",
        "health",
        "energy",
        "data",
        "magazine",
        "times",
        "club",
        "society",
        "agency",
        "department",
        "ministry",
        "council",
        "school",
        "hospital",
        "airlines",
        "motors",
        "pharma",
        "insurance",
        "studios",
        "records",
        "press",
        "games",
    }
)
_MAX_NAME_TOKENS = 4
_SPEAKER = re.compile(r"([A-ZÀ-ÖØ-Þ][^\W\d_]+) ?:(?: |\"|$)")  # 'Alice: "Who are you?"'
# "Misty's daughter": a possessive before a kinship word is a person.
KIN_WORDS = frozenset(
    {
        "daughter",
        "son",
        "kid",
        "kids",
        "child",
        "children",
        "wife",
        "husband",
        "mother",
        "father",
        "mom",
        "dad",
        "brother",
        "sister",
        "partner",
        "boyfriend",
        "girlfriend",
        "family",
    }
)


def _is_initial(tok: Any) -> bool:
    t: str = tok.text
    return (len(t) == 1 and t.isupper()) or (len(t) == 2 and t[0].isupper() and t[1] == ".")


def _name_like(tok: Any, allow_lower: bool) -> bool:
    t: str = tok.text
    if _is_initial(tok):
        return True
    if not tok.is_alpha or len(t) < 2 or t.lower() in ORG_WORDS:
        return False
    if t[0].isupper():
        return not t.isupper() or len(t) <= 3
    return allow_lower and not tok.is_stop


def _run(doc: Any, i: int, allow_lower: bool) -> int:
    """End (exclusive) of the run of name-like tokens starting at i, or i if there is none."""
    j = i
    while j < len(doc) and j - i < _MAX_NAME_TOKENS and _name_like(doc[j], allow_lower):
        if j > i and doc[j - 1].whitespace_ == "" and not _is_initial(doc[j - 1]):
            break  # names are space-separated
        if j > i and "\n" in doc[j - 1].whitespace_:
            break
        j += 1
    while j > i and _is_initial(doc[j - 1]):
        j -= 1  # a name does not end with an initial
    return j


def _span(doc: Any, i: int, j: int, score: float) -> Entity:
    start, end = doc[i].idx, doc[j - 1].idx + len(doc[j - 1].text)
    return Entity("PERSON", start, end, doc.text[start:end], score)


def person_names(doc: Any) -> list[Entity]:
    """PERSON spans from honorifics, naming phrases, mislabelled organisations and name lists."""
    found: list[Entity] = []
    lower = [t.lower_ for t in doc]
    for i, tok in enumerate(doc):
        word = lower[i].rstrip(".")
        dotted = lower[i].endswith(".") or (i + 1 < len(doc) and doc[i + 1].text == ".")
        if word in HONORIFICS and (tok.text[0].isupper() or dotted):
            k = i + 1 + (i + 1 < len(doc) and doc[i + 1].text == ".")
            j = _run(doc, k, allow_lower=False)
            if j > k:
                found.append(_span(doc, k, j, 0.7))
            continue
        for cue in NAMING_CUES:
            n = len(cue)
            if tuple(lower[i : i + n]) != cue:
                continue
            k = i + n
            while k < len(doc) and (doc[k].is_space or doc[k].text == ":"):
                k += 1  # "Name:    Iva D. Grusová", "Directed By:  Leena O Sasi"
            allow_lower = cue[0] in ("name", "call", "calls", "called", "named")
            j = _run(doc, k, allow_lower=allow_lower)
            if j > k:
                found.append(_span(doc, k, j, 0.6))
            break
        if (
            i + 1 < len(doc)
            and lower[i + 1] in SUBJECT_CUES
            and (i == 0 or doc[i - 1].is_punct or doc[i - 1].is_space)
        ):
            k = _run_back(doc, i)
            if k <= i:
                found.append(_span(doc, k, i + 1, 0.5))
        if lower[i] in ("'s", "’s") and i + 1 < len(doc) and lower[i + 1] in KIN_WORDS:
            k = _run_back(doc, i - 1) if i > 0 else i
            if k < i:
                found.append(_span(doc, k, i, 0.5))
    found.extend(_line_names(doc))
    for ent in doc.ents:
        if ent.label_ != "ORG" or not 2 <= len(ent) <= _MAX_NAME_TOKENS:
            continue
        toks = [t for t in ent if t.text not in ("'s", "’s")]
        if (
            len(toks) >= 2
            and all(_name_like(t, allow_lower=False) for t in toks)
            and not _is_initial(toks[0])
            and not _is_initial(toks[-1])
        ):
            found.append(_span(doc, toks[0].i, toks[-1].i + 1, 0.6))
    found.extend(_list_members(doc, found))
    return found


def _run_back(doc: Any, i: int) -> int:
    """Start of a 1-3 token name ending at token i (i + 1 when token i is not name-like)."""
    if not _name_like(doc[i], allow_lower=False) or _is_initial(doc[i]):
        return i + 1
    k = i
    while k > 0 and i - k < 2 and _name_like(doc[k - 1], False) and doc[k - 1].whitespace_ == " ":
        k -= 1
    return k


def _line_names(doc: Any) -> list[Entity]:
    """A line that is only "First [I.] Last" (signatures, contact blocks), or a speaker label."""
    out: list[Entity] = []
    text: str = doc.text
    pos = 0
    for line in text.split("\n"):
        start = pos
        pos += len(line) + 1
        body = line.lstrip(" >\t")
        offset = start + len(line) - len(body)
        body = body.rstrip()
        if not body:
            continue
        words = body.split(" ")
        m = _SPEAKER.match(body)
        if m and m.group(1).lower() not in FIELD_LABELS:
            out.append(Entity("PERSON", offset, offset + m.end(1), m.group(1), 0.45))
            continue
        if (
            2 <= len(words) <= 4
            and all(_word_like_name(w) for w in words)
            and not (_is_initial_word(words[0]) or _is_initial_word(words[-1]))
        ):
            out.append(Entity("PERSON", offset, offset + len(body), body, 0.45))
    return out


def _is_initial_word(w: str) -> bool:
    return (len(w) == 1 and w.isupper()) or (len(w) == 2 and w[0].isupper() and w[1] == ".")


def _word_like_name(w: str) -> bool:
    if _is_initial_word(w):
        return True
    return w.isalpha() and w[0].isupper() and not w.isupper() and w.lower() not in ORG_WORDS


def _list_members(doc: Any, persons: list[Entity]) -> list[Entity]:
    """In "Monjeau, Graves and Reed", if one member is a person, so are the others."""
    person_ents = [e for e in doc.ents if e.label_ == "PERSON"]
    starts = {e.start for e in persons} | {e.start_char for e in person_ents}
    out: list[Entity] = []
    i = 0
    while i < len(doc):
        members = []
        j = i
        while j < len(doc):
            e = _run(doc, j, allow_lower=False)
            if e == j:
                break
            members.append((j, e))
            if e < len(doc) and doc[e].text in (",", "and", "&"):
                j = e + 1
                if j < len(doc) and doc[j].text == "and":
                    j += 1
                continue
            break
        if len(members) >= 3 and any(doc[a].idx in starts for a, _ in members):
            out.extend(_span(doc, a, b, 0.5) for a, b in members)
        i = max(j, i + 1) if members else i + 1
    return out
