"""Reading answers: normalised text, the answer number, the chosen option, a judge's grade, and
the rough token count. One home for what grading (`eval/scorers`), fusion (`strategies/fuse`),
verifiers and the data loaders all need, so that a fuse vote counts keys the way the grader
scores them. Pure functions over strings; no duetto imports.

    normalise(text)              lower-case, no leading "The answer is", punctuation as spaces
    prompt_key(text)             a prompt's identity: white space folded, case folded
    extract_number(text)         the answer number (after the last "####"/"answer is", else last)
    extract_choice(text)         an option letter from free text ("(B)", "Answer: c")
    choice_index / pick_choice   which of a known list of options a reference / an output names
    parse_grade(text, top)       a judge's grade as a fraction in [0, 1]
    estimate_tokens(text)        ceil(characters / 4), when a server reports no usage

The vote keys of `Fuse` (`text_key`, `number_key`, `extract_choice`) return None to abstain.
"""

from __future__ import annotations

import math
import re
import string

CHARS_PER_TOKEN = 4

# "The answer is", "Final answer:", "answer =" … : what follows is the answer.
ANSWER_MARKER = re.compile(
    r"\b(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is\b|:|=)\s*", re.IGNORECASE
)
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def estimate_tokens(text: str | int) -> int:
    """Tokens of `text` (or of that many characters) by the usual 4-characters-a-token rule,
    rounded up: 0 for nothing, at least 1 for any text."""
    n = text if isinstance(text, int) else len(text)
    return math.ceil(n / CHARS_PER_TOKEN) if n > 0 else 0


# --- text -------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower-case, no leading "The answer is", punctuation as spaces, single spaces."""
    text = text.strip()
    m = ANSWER_MARKER.match(text)
    if m:
        text = text[m.end() :]
    return " ".join(text.lower().translate(_PUNCT).split())


def prompt_key(text: str) -> str:
    """Prompts equal up to white space and case get the same key (dedupe, grouping)."""
    return " ".join(text.split()).casefold()


def text_key(text: str) -> str | None:
    """A vote key: the normalised answer, None (abstain) when nothing is left."""
    return normalise(text) or None


# --- numbers ----------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"(?<![\d/])-?\d+/\d+(?![\d/])"  # a fraction, not a date
    r"|-?\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?"  # 1,234.5
    r"|-?\$?\d+(?:\.\d+)?"
    r"|-?\$?\.\d+"
)


def _to_float(token: str) -> float:
    token = token.replace(",", "").replace("$", "")
    if "/" in token:
        num, den = token.split("/")
        return float(num) / float(den) if float(den) else math.nan
    return float(token)


def extract_number(text: str) -> float | None:
    """The answer number: the first after the last '####' or 'answer:'/'answer is', else the
    last number in the text. Commas and '$' are dropped; 'a/b' is a fraction; NaN for x/0."""
    tail: str | None = None
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
    else:
        markers = list(ANSWER_MARKER.finditer(text))
        if markers:
            tail = text[markers[-1].end() :]
    if tail is not None:
        m = _NUMBER.search(tail)
        if m:
            return _to_float(m.group())
    found = _NUMBER.findall(text)
    return _to_float(found[-1]) if found else None


def number_key(text: str) -> str | None:
    """A vote key: the answer number as the grader reads it; '3.0' and '3' are one key."""
    value = extract_number(text)
    if value is None or math.isnan(value):
        return None
    return str(int(value)) if value.is_integer() else str(value)


# --- choices ----------------------------------------------------------------------------------


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
    """An option letter from free text when the options are not known: 'B', '(B)', 'B)',
    'Answer: B', 'The answer is b.' (a vote key; see `pick_choice` to grade against options)."""
    m = re.search(rf"(?:answer\s*(?:is)?\s*[:\-]?\s*)\(?([{letters}])\b", text, re.I)
    if m:
        return m.group(1).upper()
    m = re.match(rf"\s*\(?([{letters}])(?:[).:\s]|$)", text)
    return m.group(1) if m else None


def phrase_pattern(phrase: str) -> str:
    """A regex for `phrase`: flexible spaces/underscores/hyphens, no partial-word matches."""
    tokens = re.split(r"[\s_\-]+", phrase.strip())
    body = r"[\s_\-]+".join(re.escape(t) for t in tokens if t)
    head = r"(?<!\w)" if re.match(r"\w", phrase.strip()) else ""
    tail = r"(?!\w)" if re.search(r"\w$", phrase.strip()) else ""
    return head + body + tail


def choice_index(reference: str, choices: tuple[str, ...] | list[str]) -> int | None:
    """Which choice a reference names: its option text (normalised) or its letter label."""
    ref = normalise(reference)
    for i, c in enumerate(choices):
        if normalise(c) == ref:
            return i
    r = reference.strip().strip("()[].:").strip()
    if len(r) == 1 and r.isalpha():
        i = ord(r.upper()) - ord("A")
        if 0 <= i < len(choices):
            return i
    return None


def _letter_hits(text: str, n: int) -> list[tuple[int, int, int]]:
    """(position, -length, index) of letter labels in `text`, for choices 0..n-1."""
    patterns = [
        r"^\s*[\(\[]?([A-Za-z])[\)\]](?!\w)",  # "b)" "(B)" at the start
        r"^\s*([A-Z])(?:[\.:,]|\s*$)",  # "B." "B" at the start
        r"[\(\[]([A-Z])[\)\]]",  # "(B)" anywhere
        r"\b(?i:option|choice|letter)\s*[\(\[]?([A-Za-z])\b",  # "Option b"
        r"(?<![\w'])([A-Z])(?:\)|[\.:,]?\s*$|,)",  # "…is B." at the end, "B)" anywhere
    ]
    hits: list[tuple[int, int, int]] = []
    for pat in patterns:
        for m in re.finditer(pat, text):
            i = ord(m.group(1).upper()) - ord("A")
            if 0 <= i < n:
                hits.append((m.start(), -(m.end() - m.start()), i))
    return hits


def _first_choice(text: str, choices: tuple[str, ...], letters: bool) -> int | None:
    hits = _letter_hits(text, len(choices)) if letters else []
    if letters:
        # "B Paris": a bare leading letter counts when its own option text follows.
        m = re.match(r"\s*([A-Z])\s+", text)
        if m:
            i = ord(m.group(1)) - ord("A")
            if 0 <= i < len(choices) and re.match(
                phrase_pattern(choices[i]), text[m.end() :], re.IGNORECASE
            ):
                hits.append((m.start(), -len(text), i))
    for i, c in enumerate(choices):
        m2 = re.search(phrase_pattern(c), text, re.IGNORECASE)
        if m2:
            hits.append((m2.start(), -(m2.end() - m2.start()), i))
    return min(hits)[2] if hits else None


def pick_choice(output: str, choices: tuple[str, ...], letters: bool = True) -> int | None:
    """The choice an output gives: the first label or option text mentioned, looking first
    after the last "the answer is"/"answer:" marker. None when no choice is mentioned, or when
    the output only echoes the lettered options one per line."""
    markers = list(ANSWER_MARKER.finditer(output))
    if markers:
        found = _first_choice(output[markers[-1].end() :], choices, letters)
        if found is not None:
            return found
    if letters and _lists_options(output, len(choices)):
        return None  # the options echoed back one per line: no choice was made
    return _first_choice(output, choices, letters)


def _lists_options(output: str, n: int) -> bool:
    """Does the output list two or more different option labels at line starts ("A) …\nB) …")?"""
    labels = {m.group(1) for m in re.finditer(r"(?m)^\s*[\(\[]?([A-Z])[\)\.:\]]", output)}
    return len({c for c in labels if ord(c) - ord("A") < n}) >= 2


# --- a judge's grade --------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You grade answers. Reply with a grade from 0 (wrong) to {top} (fully correct) as "
    "'Grade: N', and nothing else."
)
JUDGE_TEMPLATE = "Question:\n{question}\n\n{reference_block}Answer to grade:\n{output}\n"


def judge_prompt(question: str, output: str, reference: str | None = None) -> str:
    """The user message that asks a judge to grade `output` (against `reference` if given)."""
    ref = f"Reference answer:\n{reference}\n\n" if reference else ""
    return JUDGE_TEMPLATE.format(question=question, reference_block=ref, output=output)


def parse_grade(text: str, top: float = 10) -> float | None:
    """A grade as a fraction in [0, 1] from a judge's reply on a 0..`top` scale: "7/10",
    "Grade: 7", "7", or yes/no. None when the reply holds no grade."""
    scale = re.escape(f"{top:g}")
    m = re.search(rf"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*{scale}\b", text, re.IGNORECASE)
    if not m:
        m = re.search(
            r"\b(?:grade|score|rating)\b\s*(?:is|:|=)?\s*(\d+(?:\.\d+)?)", text, re.IGNORECASE
        )
    if not m:
        m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d.])", text)
        if m and float(m.group(1)) > top:
            m = None
    if m:
        return min(max(float(m.group(1)), 0.0), top) / top
    verdict = re.search(r"\b(yes|correct|right|no|incorrect|wrong)\b", text, re.IGNORECASE)
    if verdict:
        return 1.0 if verdict.group(1).lower() in ("yes", "correct", "right") else 0.0
    return None


# --- agreement --------------------------------------------------------------------------------


def agreement(
    a: str, b: str, scorer: str, choices: tuple[str, ...] | list[str] = ()
) -> float | None:
    """1.0 when two answers give the same closed-form answer (the same option, the same number,
    the same normalised text), 0.0 when they differ; None when the answer is not closed-form
    (`scorer` "contains", "judge", "none") or when `b` (the reference side) gives none."""
    if scorer == "choice" and choices:
        opts = tuple(choices)
        kb = pick_choice(b, opts, letters=False)
        if kb is None:
            return None
        return 1.0 if pick_choice(a, opts, letters=False) == kb else 0.0
    if scorer == "numeric":
        nb = number_key(b)
        if nb is None:
            return None
        return 1.0 if number_key(a) == nb else 0.0
    if scorer == "exact":
        tb = text_key(b)
        if tb is None:
            return None
        return 1.0 if text_key(a) == tb else 0.0
    return None
