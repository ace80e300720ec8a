"""Scorers: how good one output is for one work item, as a number in [0, 1].

Pure functions per scorer kind (exact, choice, numeric, contains) plus `JudgeScorer`, which asks
a ChatModel to grade. A scorer only measures; deciding what a score means is a policy's job.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable
from typing import TYPE_CHECKING

from duetto.errors import UserError
from duetto.messages import ChatRequest
from duetto.usage import Usage

if TYPE_CHECKING:
    from duetto.eval.workload import WorkItem
    from duetto.models.base import ChatModel

# "The answer is", "Final answer:", "answer =" … : what follows is the answer.
_ANSWER_MARKER = re.compile(
    r"\b(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is\b|:|=)\s*", re.IGNORECASE
)
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


# --- exact ------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Lower-case, no leading "The answer is", punctuation as spaces, single spaces."""
    text = text.strip()
    m = _ANSWER_MARKER.match(text)
    if m:
        text = text[m.end() :]
    return " ".join(text.lower().translate(_PUNCT).split())


def _alternatives(reference: str) -> list[str]:
    return [a.strip() for a in reference.split("|") if a.strip()]


def score_exact(reference: str, output: str) -> float:
    """1.0 when the normalised output equals the reference (or one of its `|` alternatives)."""
    got = normalize(output)
    return 1.0 if any(got == normalize(alt) for alt in _alternatives(reference)) else 0.0


# --- contains ---------------------------------------------------------------------------------


def _phrase_pattern(phrase: str) -> str:
    """A regex for `phrase`: flexible spaces/underscores/hyphens, no partial-word matches."""
    tokens = re.split(r"[\s_\-]+", phrase.strip())
    body = r"[\s_\-]+".join(re.escape(t) for t in tokens if t)
    head = r"(?<!\w)" if re.match(r"\w", phrase.strip()) else ""
    tail = r"(?!\w)" if re.search(r"\w$", phrase.strip()) else ""
    return head + body + tail


def score_contains(reference: str, output: str) -> float:
    """1.0 when the output mentions the reference (or one of its `|` alternatives)."""
    for alt in _alternatives(reference):
        if re.search(_phrase_pattern(alt), output, re.IGNORECASE):
            return 1.0
    return 0.0


# --- numeric ----------------------------------------------------------------------------------

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
    """The answer number: first after the last '####' or 'answer:'/'answer is', else the last."""
    tail: str | None = None
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
    else:
        markers = list(_ANSWER_MARKER.finditer(text))
        if markers:
            tail = text[markers[-1].end() :]
    if tail is not None:
        m = _NUMBER.search(tail)
        if m:
            return _to_float(m.group())
    found = _NUMBER.findall(text)
    return _to_float(found[-1]) if found else None


def score_numeric(reference: str, output: str, rel_tol: float = 1e-6) -> float:
    ref = extract_number(reference)
    if ref is None:
        raise UserError(f"numeric reference {reference!r} holds no number")
    got = extract_number(output)
    if got is None or math.isnan(got):
        return 0.0
    return 1.0 if math.isclose(got, ref, rel_tol=rel_tol, abs_tol=1e-9) else 0.0


# --- choice -----------------------------------------------------------------------------------


def _label(i: int) -> str:
    return chr(ord("A") + i)


def choice_index(reference: str, choices: tuple[str, ...] | list[str]) -> int | None:
    """Which choice a reference names: its option text (normalised) or its letter label."""
    ref = normalize(reference)
    for i, c in enumerate(choices):
        if normalize(c) == ref:
            return i
    r = reference.strip().strip("()[].:").strip()
    if len(r) == 1 and r.isalpha():
        i = ord(r.upper()) - ord("A")
        if 0 <= i < len(choices):
            return i
    return None


def uses_letters(item: WorkItem) -> bool:
    """Are options labelled A, B, C…? Yes when the reference is a letter or the prompt lists
    the first option as "A) …" / "A. …" / "(A) …"."""
    if not item.choices:
        return False
    r = (item.reference or "").strip().strip("()[].:").strip()
    if len(r) == 1 and r.isalpha() and normalize(r) not in {normalize(c) for c in item.choices}:
        return True
    listed = r"(?:^|\s)[\(\[]?A[\)\]\.:]\s*" + re.escape(item.choices[0].strip())
    return re.search(listed, item.request.text, re.IGNORECASE) is not None


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
                _phrase_pattern(choices[i]), text[m.end() :], re.IGNORECASE
            ):
                hits.append((m.start(), -len(text), i))
    for i, c in enumerate(choices):
        m2 = re.search(_phrase_pattern(c), text, re.IGNORECASE)
        if m2:
            hits.append((m2.start(), -(m2.end() - m2.start()), i))
    return min(hits)[2] if hits else None


def pick_choice(output: str, choices: tuple[str, ...], letters: bool = True) -> int | None:
    """The choice an output gives: the first label or option text mentioned, looking first
    after the last "the answer is"/"answer:" marker. None when no choice is mentioned, or when
    the output only echoes the lettered options one per line."""
    markers = list(_ANSWER_MARKER.finditer(output))
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


def score_choice(item: WorkItem, output: str) -> float:
    ref = choice_index(item.reference or "", item.choices)
    if ref is None:
        raise UserError(f"item {item.id}: reference {item.reference!r} is not one of its choices")
    return 1.0 if pick_choice(output, item.choices, uses_letters(item)) == ref else 0.0


# --- dispatch ---------------------------------------------------------------------------------

SCORE_FUNCTIONS: dict[str, Callable[[WorkItem, str], float]] = {
    "exact": lambda item, out: score_exact(item.reference or "", out),
    "contains": lambda item, out: score_contains(item.reference or "", out),
    "numeric": lambda item, out: score_numeric(item.reference or "", out),
    "choice": score_choice,
}


def score(item: WorkItem, output: str) -> float:
    """The score of `output` for `item` in [0, 1]; NaN for scorer "none" (nothing to score).
    Judge items need `JudgeScorer` (a model call): see `score_async`."""
    if item.scorer == "none":
        return math.nan
    if item.scorer == "judge":
        raise UserError(f"item {item.id} is scored by a judge model: use JudgeScorer/score_async")
    fn = SCORE_FUNCTIONS.get(item.scorer)
    if fn is None:
        raise UserError(f"item {item.id}: unknown scorer {item.scorer!r}")
    return fn(item, output)


async def score_async(item: WorkItem, output: str, judge: JudgeScorer | None = None) -> float:
    """Like `score`, and grades judge items with `judge`."""
    if item.scorer == "judge":
        if judge is None:
            raise UserError(f"item {item.id} is scored by a judge: pass a JudgeScorer")
        return await judge.score(item, output)
    return score(item, output)


# --- judge ------------------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You grade answers. Reply with a grade from 0 (wrong) to 10 (fully correct) as "
    "'Grade: N', and nothing else."
)
JUDGE_TEMPLATE = "Question:\n{question}\n\n{reference_block}Answer to grade:\n{output}\n"


def parse_grade(text: str) -> float | None:
    """A grade in [0, 1] from a judge's reply: "7/10", "Grade: 7", "7", or yes/no."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", text, re.IGNORECASE)
    if not m:
        m = re.search(
            r"\b(?:grade|score|rating)\b\s*(?:is|:|=)?\s*(\d+(?:\.\d+)?)", text, re.IGNORECASE
        )
    if not m:
        m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d.])", text)
        if m and float(m.group(1)) > 10:
            m = None
    if m:
        return min(max(float(m.group(1)), 0.0), 10.0) / 10.0
    verdict = re.search(r"\b(yes|correct|right|no|incorrect|wrong)\b", text, re.IGNORECASE)
    if verdict:
        return 1.0 if verdict.group(1).lower() in ("yes", "correct", "right") else 0.0
    return None


class JudgeScorer:
    """Grades an answer against the reference by asking a ChatModel; unparseable → 0.0.

    The judge's own usage (tokens, cost, latency) adds up in `usage`, apart from the strategy's.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        max_tokens: int = 16,
        system: str = JUDGE_SYSTEM,
        template: str = JUDGE_TEMPLATE,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.system = system
        self.template = template
        self.usage = Usage()
        self.unparsed = 0  # replies with no readable grade

    def request(self, item: WorkItem, output: str) -> ChatRequest:
        ref = f"Reference answer:\n{item.reference}\n\n" if item.reference else ""
        prompt = self.template.format(
            question=item.request.last_user, reference_block=ref, output=output
        )
        return ChatRequest.of(
            prompt, system=self.system, max_tokens=self.max_tokens, temperature=0.0, task="judge"
        )

    async def score(self, item: WorkItem, output: str) -> float:
        response = await self.model.complete(self.request(item, output))
        self.usage = self.usage + response.usage
        grade = parse_grade(response.text)
        if grade is None:
            self.unparsed += 1
            return 0.0
        return grade

    __call__ = score
