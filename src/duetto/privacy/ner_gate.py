"""What the NER reads: the text with everything that cannot hold a name blanked, offsets kept.

spaCy's NER costs about its number of tokens (~80 µs CPU per token here), and a run of blanks
is one whitespace token, so blanking what the NER cannot use is the cheap way to make it
faster. Two gates:

- `ner_text` (sentences): a sentence is kept whole when it may hold a name.
- `ner_windows` (the default): only the words around a name candidate are kept, ± `window`
  words of context — the small pipeline's tok2vec sees four tokens each side, and the
  person-name rules (`duetto.privacy.names`) read cue words just before a name.

A name candidate is a word with a digit (lower-case addresses and dates, which the NER tags),
a capitalised word (besides a sentence-initial stop word, "The", "When", and the pronoun "I"),
a listed given name or surname in lower case ("follow up with patricia"), or a naming word
("name", "call", "named", ...: the person-name rules' cues). Text without any of these is
plain prose where the NER found nothing the rules and the other recognizers need (it may tag
"two days ago" as a date: a quasi-identifier, and a common false alarm on bank queries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from duetto.privacy.name_lists import given_names, surnames
from duetto.scoring.pii import Entity

_SENTENCE = re.compile(r"[^.!?\n]+[.!?\n]*")
_WORD = re.compile(r"[^\W\d_][^\W_]*(?:['’][^\W\d_]+)?")
_DIGIT = re.compile(r"\d")
_NOT_NEWLINE = re.compile(r"[^\n]")
_TOKEN = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?]['\"’”)]*$")
_NAMING_WORDS = frozenset(("name", "named", "call", "calls", "called", "i'm", "im"))
_PRONOUN_I = frozenset(("i", "i'm", "i’m", "i'd", "i’d", "i'll", "i’ll", "i've", "i’ve"))
# Words of context kept each side of a candidate (see the module docstring; measured in
# docs/privacy.md, Latency: recall unchanged on every set at 4).
DEFAULT_WINDOW = 4


@cache
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def _candidate(word: str, initial: bool, stop: frozenset[str]) -> bool:
    """Whether one word (letters, digits and apostrophes; no punctuation) may start a name."""
    low = word.lower()
    if word[0].isupper():
        if low in _PRONOUN_I:
            return False
        return not initial or low not in stop
    return low in given_names() or low in surnames() or low in _NAMING_WORDS


def ner_windows(text: str, window: int = DEFAULT_WINDOW) -> str | None:
    """`text` with every word farther than `window` words from a name candidate blanked
    (offsets and newlines kept), or None when it holds no candidate."""
    stop = _stop_words()
    tokens = list(_TOKEN.finditer(text))
    hits: list[int] = []
    initial = True
    pos = 0
    for i, tok in enumerate(tokens):
        if "\n" in text[pos : tok.start()]:
            initial = True
        s = tok.group()
        if _DIGIT.search(s):
            hits.append(i)
        else:
            word = _WORD.search(s)
            if word is not None and _candidate(word.group(), initial, stop):
                hits.append(i)
        initial = _SENTENCE_END.search(s) is not None
        pos = tok.end()
    if not hits:
        return None
    keep = [False] * len(tokens)
    for i in hits:
        for j in range(max(0, i - window), min(len(tokens), i + window + 1)):
            keep[j] = True
    if all(keep):
        return text
    parts: list[str] = []
    pos = 0
    for tok, k in zip(tokens, keep, strict=True):
        if not k:
            parts.append(text[pos : tok.start()])
            parts.append(" " * (tok.end() - tok.start()))
            pos = tok.end()
    parts.append(text[pos:])
    return "".join(parts)


def blank_spans(text: str, spans: Iterable[Entity]) -> str:
    """`text` with the characters of `spans` blanked, newlines and offsets kept."""
    chars: list[str] | None = None
    for e in spans:
        if chars is None:
            chars = list(text)
        for i in range(e.start, e.end):
            if chars[i] != "\n":
                chars[i] = " "
    return text if chars is None else "".join(chars)


def ner_text(text: str) -> str | None:
    """`text` with the sentences that hold no name candidate blanked (offsets kept), or None."""
    stop = _stop_words()
    given, family = given_names(), surnames()
    parts: list[str] = []
    pos = 0
    kept = False
    for sentence in _SENTENCE.finditer(text):
        s = sentence.group()
        keep = _DIGIT.search(s) is not None  # addresses, dates: the NER tags them in any case
        for i, w in enumerate(() if keep else _WORD.finditer(s)):
            word = w.group()
            low = word.lower()
            if word[0].isupper():
                if i > 0 or low not in stop:
                    keep = True
                    break
            elif low in given or low in family or low in _NAMING_WORDS:
                keep = True
                break
        kept |= keep
        parts.append(text[pos : sentence.start()])  # punctuation between sentences
        parts.append(s if keep else _NOT_NEWLINE.sub(" ", s))  # lines stay lines
        pos = sentence.end()
    if not kept:
        return None
    parts.append(text[pos:])
    return "".join(parts)
