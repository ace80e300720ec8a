"""Reading answers: normalised text, the answer number, the chosen option, a judge's grade, and
the rough token count. One home for what grading (`eval/scorers`), fusion (`strategies/fuse`),
verifiers and the data loaders all need, so that a fuse vote counts keys the way the grader
scores them. Pure functions over strings; no duetto imports.

    normalise(text)              lower-case, no leading "The answer is", punctuation as spaces
    prompt_key(text)             a prompt's identity: white space folded, case folded
    extract_number(text)         the answer number (a last \\boxed{N}, after the last "####"/
                                 "answer is", else the last number)
    extract_boxed(text)          what the last \\boxed{...} holds
    json_object(text)            the JSON object a reply holds (bare or in a ``` fence)
    agreement(a, b)              do two closed-form answers agree (JSON fields, numbers, choice
                                 letters, short labels)? a score in [0, 1], None if open-ended
    extract_choice(text)         an option letter from free text ("(B)", "Answer: c")
    choice_index / pick_choice   which of a known list of options a reference / an output names
    parse_grade(text, top)       a judge's grade as a fraction in [0, 1]
    estimate_tokens(text)        ceil(characters / 4), when a server reports no usage
    degenerate(text)             why an answer is unusable whatever its score (loop, empty), or None

The vote keys of `Fuse` (`text_key`, `number_key`, `extract_choice`) return None to abstain.
"""

from __future__ import annotations

import json
import math
import re
import string
from typing import Any

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


def extract_boxed(text: str) -> str | None:
    """What the last `\\boxed{...}` holds (braces nested inside are kept), None without one."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def extract_number(text: str) -> float | None:
    """The answer number: the one in a last `\\boxed{N}`, else the first after the last '####'
    or 'answer:'/'answer is', else the last number in the text. Commas and '$' are dropped;
    'a/b' is a fraction; NaN for x/0."""
    tail: str | None = None
    boxed = extract_boxed(text)
    if boxed is not None and _NUMBER.search(boxed):
        tail = boxed
    elif "####" in text:
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


# --- JSON -------------------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a reply holds: the whole text, a ``` fence, or the outermost {...}."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first : last + 1])
    for c in candidates:
        if not c.startswith("{"):
            continue
        try:
            value = json.loads(c)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return normalise(a) == normalise(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return bool(a == b)


def json_agreement(candidate: dict[str, Any], reference: dict[str, Any]) -> float:
    """The share of the reference's fields the candidate gives the same value (strings
    normalised, numbers up to rounding); 1.0 for two empty objects."""
    if not reference:
        return 1.0 if not candidate else 0.0
    same = sum(k in candidate and _same_value(candidate[k], v) for k, v in reference.items())
    return same / len(reference)


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


# --- degenerate output ------------------------------------------------------------------------
# A small model that loops still gets a fair token confidence (each repeat is likely given the
# last one): `cascade-logprob` accepted a looping SmolLM2 answer at 0.52. These checks are about
# the text's shape only, so short valid answers ("42", an intent label) always pass.

_WORD = re.compile(r"\w+|[^\w\s]")
_CHAR_CYCLE = re.compile(r"(.{1,8}?)\1{11,}", re.DOTALL)  # a short unit 12+ times in a row
_LAYOUT = set(" \t\n-=_*#~.+|:")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _repeated_run(words: list[str]) -> tuple[int, int]:
    """(n, repeats) of the longest run (in words) of one n-gram (n ≤ 12) repeated back to
    back; units without a letter or digit (a markdown rule "-----") are not counted."""
    best = (0, 0)
    for n in range(1, min(12, len(words) // 2) + 1):
        i = 0
        while i + 2 * n <= len(words):
            unit = words[i : i + n]
            reps = 1
            while words[i + reps * n : i + (reps + 1) * n] == unit:
                reps += 1
            if reps > 1 and reps * n > best[0] * best[1] and any(w[0].isalnum() for w in unit):
                best = (n, reps)
            i += (reps - 1) * n if reps > 1 else 1
    return best


def degenerate(text: str) -> str | None:
    """Why `text` is not an answer whatever a verifier says ("empty", "loop", "repetition"),
    or None for a usable answer. Pure and cheap (a few hundred words, bounded loops).

    - empty: nothing but white space
    - loop: a short unit repeated back to back (a word 8+ times, a phrase of ≤ 12 words 4+
      times covering 12+ words, a few characters 12+ times)
    - repetition: one sentence or line of 3+ words said 4+ times as a third of the text (or 3
      times as half of it),
      or a long text (≥ 60 words) whose word 3-grams are mostly (70%) repeats
    """
    if not text.strip():
        return "empty"
    sample = text[-4000:]  # a loop runs to the end of the output; bounded work
    for cycle in _CHAR_CYCLE.finditer(sample):
        # white space, rules and table borders ("-----", "|---|") are not loops
        if len(cycle.group(0)) >= 24 and not set(cycle.group(1)) <= _LAYOUT:
            return "loop"
    words = [w.casefold() for w in _WORD.findall(sample)]
    n, reps = _repeated_run(words)
    if (n == 1 and reps >= 8) or (n > 1 and reps >= 4 and n * reps >= 12):
        return "loop"
    units = [" ".join(u.split()).casefold() for u in _SENTENCE_END.split(sample)]
    units = [u for u in units if len(u.split()) >= 3]
    if units:
        top = max(set(units), key=units.count)
        count, share = units.count(top), units.count(top) * len(top) / len(" ".join(units))
        # a worked answer may say "12 months in a year, so ..." three times: 4+ times, or 3
        # times as half the text
        if (count >= 4 and share >= 1 / 3) or (count >= 3 and share >= 1 / 2):
            return "repetition"
    prose = [w for w in words if w[0].isalnum()]  # JSON or code punctuation repeats legitimately
    if len(prose) >= 60:
        grams = list(zip(prose, prose[1:], prose[2:], strict=False))
        if len(set(grams)) < 0.3 * len(grams):
            return "repetition"
    return None


# --- agreement of closed-form answers ---------------------------------------------------------

SHORT_LABEL_WORDS = 6  # a reply of at most this many words can be a label (an intent, a class)


def agreement(candidate: str, reference: str) -> float | None:
    """Whether `candidate` gives the same closed-form answer as `reference`, judged by the
    reference's form: a JSON object (the share of its fields matched), a number (boxed, after
    '####'/'answer is', or the whole reply), an option letter, or a short label (normalised
    text). None when the reference is open-ended: agreement cannot say, a judge must."""
    ref_json = json_object(reference)
    if ref_json is not None:
        got = json_object(candidate)
        return json_agreement(got, ref_json) if got is not None else 0.0
    ref_norm = normalise(reference)
    numeric = (
        extract_boxed(reference) is not None
        or "####" in reference
        or bool(ANSWER_MARKER.search(reference) and _NUMBER.search(reference))
        or bool(ref_norm and _NUMBER.fullmatch(ref_norm.replace(" ", "")))
    )
    if numeric:
        want, got_key = number_key(reference), number_key(candidate)
        if want is not None:
            return 1.0 if got_key == want else 0.0
    letter = extract_choice(reference)
    if letter is not None and len(ref_norm.split()) <= SHORT_LABEL_WORDS:
        return 1.0 if extract_choice(candidate) == letter else 0.0
    if ref_norm and len(ref_norm.split()) <= SHORT_LABEL_WORDS:
        said = normalise(candidate)
        if said == ref_norm:
            return 1.0
        # a short reply that names the label ("The intent is card arrival.")
        short = len(said.split()) <= 2 * SHORT_LABEL_WORDS
        return 1.0 if short and re.search(phrase_pattern(ref_norm), said) else 0.0
    return None
