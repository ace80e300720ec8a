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

from duetto.privacy.name_lists import common_words, given_names, surnames
from duetto.scoring.pii import Entity


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _phrases(text: str) -> list[str]:
    return text.split("|")


HONORIFICS = _words(
    "mr mrs ms miss mx dr prof sir madam mister dame lady lord rev fr sr sra srta herr"
    " frau mme mlle m"
)
# Phrases after which a name follows; lower-case names are accepted after these.
NAMING_CUES: tuple[tuple[str, ...], ...] = tuple(
    tuple(cue.split())
    for cue in _phrases(
        "name is|name 's|call me|called|named|calls me|i am|i 'm|dear|hi|hello|regards ,|"
        "sincerely ,|thanks ,|signed|contact|ask for|speak to|talk to|assistant to|"
        "married to|son|daughter|wife|husband|kid|child|partner 's name|by|with|name :|"
        "said|told|asked|shouted at|starring|directed by|last name ?|first name ?|user :|"
        "follow up with"
    )
)
# Verbs that follow a person: "Jacob lives on ...", "Zak shouted at ...".
SUBJECT_CUES = _words(
    "said says shouted lives lived told asked wrote replied began spent works worked"
    " married died smiled laughed cried thinks"
)
# Field labels that look like a speaker ("Address: ...") but are not names.
FIELD_LABELS = _words(
    "name address email e-mail phone mobile fax desk office user date time subject re to"
    " from cc note answer question title company website url tel dob age id account card"
    " iban ssn genre rating summary description status type location country city zip"
    " state street personal info contact q a p.s ps bot assistant agent system support when"
    " where what who why how you he she we they it"
)
# Words that make a span an organisation, not a person.
ORG_WORDS = _words(
    "inc ltd llc llp corp co company group bank university college institute association"
    " foundation partners systems solutions technologies technology services international"
    " holdings labs gmbh ag sa plc and & of the for news media software network networks"
    " capital consulting health energy data magazine times club society agency department"
    " ministry council school hospital airlines motors pharma insurance studios records"
    " press games"
)
_MAX_NAME_TOKENS = 4
_SPEAKER = re.compile(r"([A-ZÀ-ÖØ-Þ][^\W\d_]+) ?:(?: |\"|$)")  # 'Alice: "Who are you?"'
_LINE_LABEL = re.compile(r"^[ \t>]*" + _SPEAKER.pattern, re.M)
# "Misty's daughter": a possessive before a kinship word is a person.
KIN_WORDS = _words(
    "daughter son kid kids child children wife husband mother father mom dad brother"
    " sister partner boyfriend girlfriend family"
)


# Naming cues by first word, in NAMING_CUES order (the first cue that matches wins).
_CUES_BY_FIRST: dict[str, list[tuple[str, ...]]] = {}
for _cue in NAMING_CUES:
    _CUES_BY_FIRST.setdefault(_cue[0], []).append(_cue)


class _Tokens:
    """The token attributes the rules read, pulled out of a spaCy `Doc` once.

    Indexing a `Doc` builds a new `Token` object per access; the rules look at each token
    many times, so plain lists keep them cheap.
    """

    __slots__ = (
        "doc_text",
        "ent",
        "idx",
        "initial",
        "lower",
        "n",
        "name_lower",
        "name_upper",
        "punct_or_space",
        "space",
        "stop",
        "text",
        "ws",
    )

    def __init__(self, doc: Any) -> None:
        self.doc_text: str = doc.text
        toks = list(doc)
        self.n = len(toks)
        self.text: list[str] = [t.text for t in toks]
        self.lower: list[str] = [t.lower_ for t in toks]
        self.ws: list[str] = [t.whitespace_ for t in toks]
        self.idx: list[int] = [t.idx for t in toks]
        self.space: list[bool] = [t.is_space for t in toks]
        self.punct_or_space: list[bool] = [t.is_punct or t.is_space for t in toks]
        self.stop: list[bool] = [t.is_stop for t in toks]
        self.ent: list[str] = [t.ent_type_ for t in toks]
        self.initial: list[bool] = [_is_initial_word(w) for w in self.text]
        # _name_like with allow_lower False / True
        self.name_upper: list[bool] = []
        self.name_lower: list[bool] = []
        for tok, w, initial in zip(toks, self.text, self.initial, strict=True):
            if initial:
                upper = lower = True
            elif not tok.is_alpha or len(w) < 2 or w.lower() in ORG_WORDS:
                upper = lower = False
            elif w[0].isupper():
                upper = lower = not w.isupper() or len(w) <= 3
            else:
                upper, lower = False, not tok.is_stop
            self.name_upper.append(upper)
            self.name_lower.append(lower)


def _run(t: _Tokens, i: int, allow_lower: bool) -> int:
    """End (exclusive) of the run of name-like tokens starting at i, or i if there is none."""
    name_like = t.name_lower if allow_lower else t.name_upper
    j = i
    while j < t.n and j - i < _MAX_NAME_TOKENS and name_like[j]:
        if j > i and t.ws[j - 1] == "" and not t.initial[j - 1]:
            break  # names are space-separated
        if j > i and "\n" in t.ws[j - 1]:
            break
        j += 1
    while j > i and t.initial[j - 1]:
        j -= 1  # a name does not end with an initial
    return j


def _span(t: _Tokens, i: int, j: int, score: float) -> Entity:
    start, end = t.idx[i], t.idx[j - 1] + len(t.text[j - 1])
    return Entity("PERSON", start, end, t.doc_text[start:end], score)


def person_names(doc: Any) -> list[Entity]:
    """PERSON spans from honorifics, naming phrases, mislabelled organisations and name lists."""
    found: list[Entity] = []
    t = _Tokens(doc)
    lower, text, n = t.lower, t.text, t.n
    for i in range(n):
        low = lower[i]
        word = low.rstrip(".")
        if word in HONORIFICS:
            dotted = low.endswith(".") or (i + 1 < n and text[i + 1] == ".")
            if text[i][0].isupper() or dotted:
                k = i + 1 + (i + 1 < n and text[i + 1] == ".")
                j = _run(t, k, allow_lower=False)
                if j > k:
                    found.append(_span(t, k, j, 0.7))
                continue
        for cue in _CUES_BY_FIRST.get(low, ()):
            m = len(cue)
            if tuple(lower[i : i + m]) != cue:
                continue
            k = i + m
            while k < n and (t.space[k] or text[k] == ":"):
                k += 1  # "Name:    Iva D. Grusová", "Directed By:  Leena O Sasi"
            allow_lower = cue[0] in ("name", "call", "calls", "called", "named")
            j = _run(t, k, allow_lower=allow_lower)
            if j > k:
                found.append(_span(t, k, j, 0.6))
            break
        if i + 1 < n and lower[i + 1] in SUBJECT_CUES and (i == 0 or t.punct_or_space[i - 1]):
            k = _run_back(t, i)
            if k <= i:
                found.append(_span(t, k, i + 1, 0.5))
        if (i == 0 or t.punct_or_space[i - 1]) and _clause_subject(t, i):
            found.append(_span(t, i, i + 1, 0.45))
        if low in ("'s", "’s") and i + 1 < n and lower[i + 1] in KIN_WORDS:
            k = _run_back(t, i - 1) if i > 0 else i
            if k < i:
                found.append(_span(t, k, i, 0.5))
    found.extend(_line_names(doc))
    ents = [(e.label_, e.start, e.end, e.start_char) for e in doc.ents]
    for label, s, e, _ in ents:
        if label != "ORG" or not 2 <= e - s <= _MAX_NAME_TOKENS:
            continue
        toks = [k for k in range(s, e) if text[k] not in ("'s", "’s")]
        if (
            len(toks) >= 2
            and all(t.name_upper[k] for k in toks)
            and not t.initial[toks[0]]
            and not t.initial[toks[-1]]
        ):
            found.append(_span(t, toks[0], toks[-1] + 1, 0.6))
    found.extend(_listed_names(t))
    person_starts = {start_char for label, _, _, start_char in ents if label == "PERSON"}
    found.extend(_list_members(t, found, person_starts))
    return found


# NER labels a listed name may carry: none, PERSON, or ORG (the small model tags many foreign
# names as organisations, "Usamov and Bowers"; ORGANIZATION is not reported by default).
_NAME_LIST_LABELS = ("", "PERSON", "ORG")


def _listed_names(t: _Tokens) -> list[Entity]:
    """Tokens in the census name lists (`duetto.privacy.name_lists`) that the NER left unlabelled.

    A capitalised given name or surname ("Scott is very reliable", "Usamov and Bowers") starts
    a PERSON span over the capitalised words after it; a lower-case given name ("follow up with
    patricia desrosiers") takes up to two following lower-case words that are not stop words
    (or one-letter initials between them). Tokens the NER labelled as a place, nationality,
    date, ... ("Paris" GPE, "English" NORP, "April" DATE) are left alone.
    """
    given, family = given_names(), surnames()
    out: list[Entity] = []
    i = 0
    while i < t.n:
        low, word = t.lower[i], t.text[i]
        listed = low in given or low in family
        if not listed or t.stop[i] or t.ent[i] not in _NAME_LIST_LABELS:
            i += 1
            continue
        if t.name_upper[i] and not t.initial[i]:
            j = max(_run(t, i, allow_lower=False), i + 1)
            out.append(_span(t, i, j, 0.5))
            i = j
            continue
        if word.islower() and low in given:
            j = i + 1
            while j < t.n and j - i <= 2 and t.ws[j - 1] == " " and _lower_name_part(t, j):
                j += 1
            while j > i + 1 and len(t.text[j - 1]) == 1:
                j -= 1  # a name does not end with an initial
            out.append(_span(t, i, j, 0.45))
            i = j
            continue
        i += 1
    return out


def _lower_name_part(t: _Tokens, j: int) -> bool:
    w = t.text[j]
    if len(w) == 1:
        return w.isalpha() and j + 1 < t.n and t.text[j + 1].isalpha()  # "benjamin a seiler"
    return w.isalpha() and w.islower() and not t.stop[j] and t.ent[j] in _NAME_LIST_LABELS


# Weaker cues than SUBJECT_CUES: "Ari is very reliable", "Hakuba had given ..."; and a
# vocative "Aloisia, can I ...". Only for one unlabelled capitalised word opening a clause.
WEAK_SUBJECT_CUES = _words("is was had has began")
VOCATIVE_NEXT = _words("can could would will i you we please do did are is")
INTERJECTIONS = _words(
    "hello hi hey thanks thank sorry yes yeah no well ok okay please dear sure great oh wow"
    " excuse welcome congratulations cheers good right fine note"
)


def _clause_subject(t: _Tokens, i: int) -> bool:
    """One capitalised non-stop word opening a clause, then a weak verb cue or a vocative comma."""
    if i + 2 >= t.n or not t.name_upper[i] or t.initial[i] or t.stop[i]:
        return False
    if t.ent[i] not in _NAME_LIST_LABELS or t.lower[i] in INTERJECTIONS or t.ws[i] == "\n":
        return False
    if t.lower[i] in common_words():
        return False  # "Transfer is pending", "Python is great": a word, not a name
    nxt = t.lower[i + 1]
    if nxt in WEAK_SUBJECT_CUES:
        return True
    return nxt == "," and t.lower[i + 2] in VOCATIVE_NEXT


def _run_back(t: _Tokens, i: int) -> int:
    """Start of a 1-3 token name ending at token i (i + 1 when token i is not name-like)."""
    if not t.name_upper[i] or t.initial[i]:
        return i + 1
    k = i
    while k > 0 and i - k < 2 and t.name_upper[k - 1] and t.ws[k - 1] == " ":
        k -= 1
    return k


def _line_names(doc: Any) -> list[Entity]:
    """A line that is only "First [I.] Last" (signatures, contact blocks), or a speaker label."""
    out: list[Entity] = []
    text: str = doc.text
    labels = field_labels(text)
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
        if m and (offset, offset + m.end(1)) not in labels:
            out.append(Entity("PERSON", offset, offset + m.end(1), m.group(1), 0.45))
            continue
        if (
            2 <= len(words) <= 4
            and all(_word_like_name(w) for w in words)
            and not (_is_initial_word(words[0]) or _is_initial_word(words[-1]))
        ):
            out.append(Entity("PERSON", offset, offset + len(body), body, 0.45))
    return out


def field_labels(text: str) -> set[tuple[int, int]]:
    """Spans of the line-opening words before ':' that label a field ("Message:"), not a speaker.

    A listed field label always; a label word (`is_label_word`) unless another line of the
    text opens with a speaker ("Ella: …\nDestiny: …": a transcript, so Destiny speaks too).
    """
    found = [(m.start(1), m.end(1), m.group(1)) for m in _LINE_LABEL.finditer(text)]
    transcript = any(not is_label_word(word) for _, _, word in found)
    return {
        (start, end)
        for start, end, word in found
        if word.lower() in FIELD_LABELS or (not transcript and is_label_word(word))
    }


def drop_field_labels(text: str, found: list[Entity]) -> list[Entity]:
    """`found` without PERSON spans that are exactly a field label (the NER tags "Name:" too)."""
    labels = field_labels(text)
    if not labels:
        return found
    return [e for e in found if e.type != "PERSON" or (e.start, e.end) not in labels]


def is_label_word(word: str) -> bool:
    """A word before ':' that labels a field ("Message:", "Subject:"), not a speaker ("Anna:").

    A field label, or a word common in English text that the census lists do not hold as a name.
    """
    low = word.lower()
    if low in FIELD_LABELS:
        return True
    return low in common_words() and low not in given_names() and low not in surnames()


def _is_initial_word(w: str) -> bool:
    return (len(w) == 1 and w.isupper()) or (len(w) == 2 and w[0].isupper() and w[1] == ".")


def _word_like_name(w: str) -> bool:
    if _is_initial_word(w):
        return True
    return w.isalpha() and w[0].isupper() and not w.isupper() and w.lower() not in ORG_WORDS


def _list_members(t: _Tokens, persons: list[Entity], person_starts: set[int]) -> list[Entity]:
    """In "Monjeau, Graves and Reed" or "Usamov and Bowers", if one member is a person, so are
    the others (a list of three or more, or two joined by "and")."""
    starts = {e.start for e in persons} | person_starts
    out: list[Entity] = []
    i = 0
    while i < t.n:
        members = []
        j = i
        while j < t.n:
            e = _run(t, j, allow_lower=False)
            if e == j:
                break
            members.append((j, e))
            if e < t.n and t.text[e] in (",", "and", "&"):
                j = e + 1
                if j < t.n and t.text[j] == "and":
                    j += 1
                continue
            break
        # "Usamov and Bowers"; not "Nishiyama and Acme Holdings" (a company word follows)
        pair = (
            len(members) == 2
            and t.text[members[0][1]] in ("and", "&")
            and (members[1][1] >= t.n or not t.text[members[1][1]][:1].isupper())
        )
        if (len(members) >= 3 or pair) and any(t.idx[a] in starts for a, _ in members):
            out.extend(_span(t, a, b, 0.5) for a, b in members)
        i = max(j, i + 1) if members else i + 1
    return out
