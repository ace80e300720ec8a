"""Labels from four sources, as pure functions (no I/O; the worker and the routes store them):

    agreement   two closed-form answers agree (duetto.answers.agreement: JSON fields, numbers,
                option letters, short labels); free, so every pair that has a closed form gets one
    judge       an LLM grades the candidate's answer against the served one, pairwise ("is it
                as good?"), on a sampled share of the pairs (the only label of an open-ended
                one); billed
    feedback    the client's score of the answer it got (POST /v1/feedback)
    gold        a human-labelled audit file: a gold answer (scored like agreement) or a score

A label scores one model's answer to one stored request, in [0, 1].
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from duetto.answers import JUDGE_SYSTEM, agreement, judge_prompt, normalise, parse_grade
from duetto.loop.store import Label
from duetto.messages import ChatRequest, ChatResponse
from duetto.scoring.verifiers import render_question

JUDGE_TOP = 10
PAIRWISE_NOTE = (
    " The reference answer was written by another model, not by an expert: give {top} when "
    "the answer to grade is as good as the reference or better, 0 when it is wrong where the "
    "reference is right."
)
THUMBS = {"up": 1.0, "down": 0.0, "thumbs_up": 1.0, "thumbs_down": 0.0, "👍": 1.0, "👎": 0.0}


def agreement_label(
    trace_id: str,
    candidate: str,
    candidate_text: str,
    reference_text: str,
    *,
    strategy: str | None,
    kind: str,
    reference_by: str | None = None,
) -> Label | None:
    """An agreement label on `candidate`'s answer against the reference answer, or None when
    the reference is open-ended (a judge must decide)."""
    score = agreement(candidate_text, reference_text)
    if score is None:
        return None
    return Label(
        trace_id,
        candidate,
        "agreement",
        score,
        strategy=strategy,
        kind=kind,
        detail={"reference_by": reference_by},
    )


def wants_judge(judge_share: float, draw: float) -> bool:
    """Judge a `judge_share` sample (`draw` uniform in [0, 1)) of the pairs, open-ended or
    not: each judgement is an LLM call on the background path, so the share bounds them (on
    the pairs agreement labelled it also measures how far agreement tracks the judge)."""
    return draw < judge_share


def judge_request(request: ChatRequest, candidate_text: str, reference_text: str) -> ChatRequest:
    """The pairwise judge's request: grade the candidate against the served (reference) one."""
    system = JUDGE_SYSTEM.format(top=JUDGE_TOP) + PAIRWISE_NOTE.format(top=JUDGE_TOP)
    prompt = judge_prompt(render_question(request), candidate_text, reference_text)
    return ChatRequest.of(prompt, system=system, max_tokens=16, temperature=0.0)


def judge_label(
    trace_id: str,
    candidate: str,
    reply: ChatResponse,
    *,
    judge: str,
    strategy: str | None,
    kind: str,
) -> Label | None:
    """The judge's grade as a label (its cost on the label), None when the reply has no grade."""
    grade = parse_grade(reply.text, JUDGE_TOP)
    if grade is None:
        return None
    return Label(
        trace_id,
        candidate,
        "judge",
        grade,
        cost_usd=reply.usage.cost_usd,
        strategy=strategy,
        kind=kind,
        detail={"judge": judge, "reply": reply.text[:200]},
    )


def feedback_score(value: Any) -> float:
    """A client's score: a number in [0, 1], a boolean, or thumbs ("up"/"down"). ValueError
    otherwise."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        score = float(value)
        if math.isnan(score) or not 0.0 <= score <= 1.0:
            raise ValueError("score must be within [0, 1]")
        return score
    if isinstance(value, str) and value.strip().lower() in THUMBS:
        return THUMBS[value.strip().lower()]
    raise ValueError('score must be a number in [0, 1], true/false, or "up"/"down"')


# --- gold -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoldItem:
    """One line of a gold audit file: which request (a trace id, or the request's text) and
    its gold answer or score."""

    trace_id: str | None
    request: str | None
    answer: str | None
    score: float | None


def parse_gold(lines: Iterable[str]) -> list[GoldItem]:
    """JSONL lines of {"trace_id" | "request", "answer" | "gold" | "score"}; ValueError naming
    the first bad line."""
    items: list[GoldItem] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {n}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {n}: not a JSON object")
        tid, req = row.get("trace_id"), row.get("request")
        answer = row.get("answer", row.get("gold"))
        score = row.get("score")
        if not (isinstance(tid, str) and tid) and not (isinstance(req, str) and req.strip()):
            raise ValueError(f"line {n}: needs `trace_id` or `request` (its text)")
        if answer is None and score is None:
            raise ValueError(f"line {n}: needs a gold `answer` or a `score`")
        try:
            gold_score = None if score is None else feedback_score(score)
        except ValueError as exc:
            raise ValueError(f"line {n}: {exc}") from None
        items.append(
            GoldItem(
                tid if isinstance(tid, str) else None,
                req if isinstance(req, str) else None,
                None if answer is None else str(answer),
                gold_score,
            )
        )
    return items


def gold_score(answer: str, gold: str) -> float:
    """How well an answer matches a gold answer: closed-form agreement when the gold answer
    has a closed form, else whether the normalised gold answer appears in the answer."""
    score = agreement(answer, gold)
    if score is not None:
        return score
    want = normalise(gold)
    return 1.0 if want and want in normalise(answer) else 0.0
