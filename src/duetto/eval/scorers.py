"""Scorers: how good one output is for one work item, as a number in [0, 1].

Pure functions per scorer kind (exact, choice, numeric, contains) plus `JudgeScorer`, which asks
a ChatModel to grade. A scorer only measures; deciding what a score means is a policy's job.
How an answer is read (normalised text, the answer number, the chosen option, a judge's grade)
lives in `duetto.answers`, shared with fusion and the verifiers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from duetto.answers import (
    JUDGE_SYSTEM,
    JUDGE_TEMPLATE,
    choice_index,
    extract_number,
    normalise,
    parse_grade,
    phrase_pattern,
    pick_choice,
)
from duetto.errors import UserError
from duetto.messages import ChatRequest
from duetto.usage import Usage

if TYPE_CHECKING:
    from duetto.eval.workload import WorkItem
    from duetto.models.base import ChatModel

# --- exact ------------------------------------------------------------------------------------


def _alternatives(reference: str) -> list[str]:
    return [a.strip() for a in reference.split("|") if a.strip()]


def score_exact(reference: str, output: str) -> float:
    """1.0 when the normalised output equals the reference (or one of its `|` alternatives)."""
    got = normalise(output)
    return 1.0 if any(got == normalise(alt) for alt in _alternatives(reference)) else 0.0


# --- contains ---------------------------------------------------------------------------------


def score_contains(reference: str, output: str) -> float:
    """1.0 when the output mentions the reference (or one of its `|` alternatives)."""
    for alt in _alternatives(reference):
        if re.search(phrase_pattern(alt), output, re.IGNORECASE):
            return 1.0
    return 0.0


# --- numeric ----------------------------------------------------------------------------------


def score_numeric(reference: str, output: str, rel_tol: float = 1e-6) -> float:
    ref = extract_number(reference)
    if ref is None:
        raise UserError(f"numeric reference {reference!r} holds no number")
    got = extract_number(output)
    if got is None or math.isnan(got):
        return 0.0
    return 1.0 if math.isclose(got, ref, rel_tol=rel_tol, abs_tol=1e-9) else 0.0


# --- choice -----------------------------------------------------------------------------------


def uses_letters(item: WorkItem) -> bool:
    """Are options labelled A, B, C…? Yes when the reference is a letter or the prompt lists
    the first option as "A) …" / "A. …" / "(A) …"."""
    if not item.choices:
        return False
    r = (item.reference or "").strip().strip("()[].:").strip()
    if len(r) == 1 and r.isalpha() and normalise(r) not in {normalise(c) for c in item.choices}:
        return True
    listed = r"(?:^|\s)[\(\[]?A[\)\]\.:]\s*" + re.escape(item.choices[0].strip())
    return re.search(listed, item.request.text, re.IGNORECASE) is not None


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


class JudgeScorer:
    """Grades an answer against the reference by asking a ChatModel; unparseable → 0.0.

    The judge's own usage (tokens, cost, latency) adds up in `usage`, apart from the strategy's.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        max_tokens: int = 16,
        system: str = JUDGE_SYSTEM.format(top=10),
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
