"""Verifiers score an answer after generation; calibrators turn raw scores into P(correct).

The verifier interface (used by `Cascade`, usable on its own):

    class Verifier(Protocol):
        models: list[ChatModel]        # the models it may call (empty if none)
        async def score(self, request, response) -> Verdict

    Verdict(score, responses)          # a NamedTuple: unpacks as (score, responses)

`score` is higher when the answer is more likely correct; `responses` are the ChatResponses of the
model calls the verifier made (empty for `LogprobVerifier`), so that the caller nests them in its
trace and their cost, latency and energy are counted.

Shipped verifiers:
  - `LogprobVerifier`: the answer's length-normalised token log-probability, exp(mean) or mean.
  - `SelfVerifier(model)`: AutoMix-style self-verification ("Is the answer correct? A) correct or
    B) incorrect"), optionally few-shot and sampled several times; the verdict's token
    probability, when available, makes the output a probability.
  - `JudgeVerifier(model)`: a judge model grades the answer 0-10; score = grade / 10 (the
    judge prompt and the grade parser are `duetto.answers`', shared with eval's JudgeScorer).

Calibrators (`fit(raw_scores, correct)`, `__call__(raw) -> prob`, `state`/`from_state`):
  - `IsotonicCalibrator`: monotone step fit (pool-adjacent-violators), linear between knots.
  - `PlattCalibrator`: logistic fit p = 1 / (1 + exp(-(a·raw + b))) with Platt's smoothed targets.
Both are pure numpy: raw confidence of small models is badly calibrated, so fit on labelled data.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from duetto.answers import JUDGE_SYSTEM, judge_prompt, parse_grade
from duetto.errors import ConfigError, UserError
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel
from duetto.scoring.logistic import fit_logistic, sigmoid


class Verdict(NamedTuple):
    score: float
    responses: tuple[ChatResponse, ...] = ()


@runtime_checkable
class Verifier(Protocol):
    models: list[ChatModel]

    async def score(self, request: ChatRequest, response: ChatResponse) -> Verdict: ...


def render_question(request: ChatRequest) -> str:
    """The question as a verifier sees it: the last user message, or the whole exchange when the
    conversation has several turns."""
    turns = [m for m in request.messages if m.role != "system"]
    if len(turns) <= 1:
        return request.last_user
    return "\n".join(f"{m.role.capitalize()}: {m.text}" for m in turns)


def _sub_request(request: ChatRequest, prompt: str, system: str, **kw: Any) -> ChatRequest:
    base = ChatRequest.of(prompt, system=system, task=request.task, metadata=request.metadata)
    return replace(base, **kw)


# --- verifiers -------------------------------------------------------------------------------


class LogprobVerifier:
    """Length-normalised sequence probability of the answer (no extra model call)."""

    def __init__(
        self, kind: Literal["prob", "mean_logprob"] = "prob", missing: float | None = None
    ) -> None:
        """`missing`: the score when the answer carries no log-probabilities (None: raise)."""
        if kind not in ("prob", "mean_logprob"):
            raise ConfigError("expected prob or mean_logprob", "kind")
        self.kind = kind
        self.missing = missing
        self.models: list[ChatModel] = []

    async def score(self, request: ChatRequest, response: ChatResponse) -> Verdict:
        lps = response.logprobs
        if not lps:
            if self.missing is None:
                raise UserError(
                    f"{response.model!r} returned no token log-probabilities: enable them on "
                    "that model or use another verifier (self, judge)"
                )
            return Verdict(self.missing)
        mean = sum(lps) / len(lps)
        return Verdict(math.exp(mean) if self.kind == "prob" else mean)


SELF_VERIFY_SYSTEM = "You check whether answers are correct. Reply with A or B only."
SELF_VERIFY_PROMPT = (
    "Question: {question}\n\nAnswer: {answer}\n\n"
    "Is the answer correct? Answer A) correct or B) incorrect.\nVerdict:"
)


def parse_verdict(text: str) -> Literal["A", "B"] | None:
    t = text.strip()
    m = re.match(r"[\(\s]*([AB])\b", t)
    if m:
        return "A" if m.group(1) == "A" else "B"
    low = t.lower()
    if "incorrect" in low or "not correct" in low:
        return "B"
    if "correct" in low:
        return "A"
    return None


def verdict_probability(response: ChatResponse) -> float:
    """P(correct) from one self-verification output: its verdict, weighted by the probability of
    the verdict token when log-probabilities are available; 0.5 when there is no verdict."""
    verdict = parse_verdict(response.text)
    if verdict is None:
        return 0.5
    conf = 1.0
    if response.logprobs:
        starts = response.text.lstrip().lstrip("(").startswith(verdict)
        lp = response.logprobs[0] if starts else sum(response.logprobs) / len(response.logprobs)
        conf = math.exp(lp)
    return conf if verdict == "A" else 1.0 - conf


class SelfVerifier:
    """AutoMix-style self-verification by `model` (often the same SLM that answered)."""

    def __init__(
        self,
        model: ChatModel,
        few_shot: Sequence[tuple[str, str, bool]] = (),
        samples: int = 1,
        temperature: float = 0.7,
        max_tokens: int = 4,
    ) -> None:
        """`few_shot`: (question, answer, correct) examples shown before the one to verify;
        `samples` > 1 asks several times at `temperature` (different seeds) and averages."""
        if samples < 1:
            raise ConfigError("expected at least 1", "samples")
        self.model = model
        self.models: list[ChatModel] = [model]
        self.few_shot = list(few_shot)
        self.samples = samples
        self.temperature = temperature
        self.max_tokens = max_tokens

    def prompt(self, request: ChatRequest, answer: str) -> str:
        shots = [
            SELF_VERIFY_PROMPT.format(question=q, answer=a) + (" A" if ok else " B")
            for q, a, ok in self.few_shot
        ]
        shots.append(SELF_VERIFY_PROMPT.format(question=render_question(request), answer=answer))
        return "\n\n".join(shots)

    async def score(self, request: ChatRequest, response: ChatResponse) -> Verdict:
        prompt = self.prompt(request, response.text)
        base_seed = request.seed or 0
        reqs = [
            _sub_request(
                request,
                prompt,
                SELF_VERIFY_SYSTEM,
                max_tokens=self.max_tokens,
                temperature=0.0 if self.samples == 1 else self.temperature,
                seed=base_seed + j,
            )
            for j in range(self.samples)
        ]
        outs = await asyncio.gather(*(self.model.complete(r) for r in reqs))
        for o in outs:
            o.trace.role = "verify"
        p = sum(verdict_probability(o) for o in outs) / len(outs)
        return Verdict(p, tuple(outs))


class JudgeVerifier:
    """A judge model grades the answer; score = grade / top (in [0, 1])."""

    def __init__(
        self, model: ChatModel, top: int = 10, default: float = 0.5, max_tokens: int = 8
    ) -> None:
        """`default`: the score when the judge's output holds no grade (marked in the trace)."""
        self.model = model
        self.models: list[ChatModel] = [model]
        self.top = top
        self.default = default
        self.max_tokens = max_tokens

    async def score(self, request: ChatRequest, response: ChatResponse) -> Verdict:
        prompt = judge_prompt(render_question(request), response.text)
        system = JUDGE_SYSTEM.format(top=self.top)
        out = await self.model.complete(
            _sub_request(request, prompt, system, max_tokens=self.max_tokens, temperature=0.0)
        )
        out.trace.role = "judge"
        grade = parse_grade(out.text, self.top)
        if grade is None:
            out.trace.note = "no grade in the judge's output: default score used"
            return Verdict(self.default, (out,))
        return Verdict(grade, (out,))


# --- calibrators -----------------------------------------------------------------------------


def _xy(raw_scores: Sequence[float] | np.ndarray, correct: Sequence[Any] | np.ndarray) -> Any:
    x = np.asarray(raw_scores, dtype=float).ravel()
    y = np.asarray(correct, dtype=float).ravel()
    if x.shape != y.shape or x.size == 0:
        raise UserError(f"calibration needs as many labels as scores (got {x.size}, {y.size})")
    if not np.all(np.isfinite(x)):
        raise UserError("calibration scores must be finite")
    return x, y


class IsotonicCalibrator:
    """Monotone non-decreasing map raw score → P(correct)."""

    kind = "isotonic"

    def __init__(self, x: Sequence[float] = (), y: Sequence[float] = ()) -> None:
        self.x = np.asarray(x, dtype=float)
        self.y = np.asarray(y, dtype=float)

    def fit(
        self, raw_scores: Sequence[float] | np.ndarray, correct: Sequence[Any] | np.ndarray
    ) -> IsotonicCalibrator:
        x, y = _xy(raw_scores, correct)
        ux, inverse = np.unique(x, return_inverse=True)
        w = np.bincount(inverse).astype(float)
        m = np.bincount(inverse, weights=y) / w
        # Pool adjacent violators over the unique scores.
        blocks: list[list[float]] = []  # [mean, weight, count of unique scores]
        for mi, wi in zip(m, w, strict=True):
            blocks.append([mi, wi, 1])
            while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
                m2, w2, c2 = blocks.pop()
                m1, w1, c1 = blocks.pop()
                blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
        self.x = ux
        self.y = np.repeat([b[0] for b in blocks], [int(b[2]) for b in blocks])
        return self

    def transform(self, raw: Sequence[float] | np.ndarray) -> np.ndarray:
        if self.x.size == 0:
            raise UserError("IsotonicCalibrator is not fitted: call fit(raw_scores, correct)")
        return np.asarray(np.interp(np.asarray(raw, dtype=float), self.x, self.y), dtype=float)

    def __call__(self, raw: float) -> float:
        return float(self.transform([raw])[0])

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> IsotonicCalibrator:
        return cls(d["x"], d["y"])


class PlattCalibrator:
    """p = 1 / (1 + exp(-(a·raw + b))), fitted (`scoring.logistic`) on Platt's smoothed targets."""

    kind = "platt"

    def __init__(self, a: float | None = None, b: float | None = None) -> None:
        self.a = a
        self.b = b

    def fit(
        self, raw_scores: Sequence[float] | np.ndarray, correct: Sequence[Any] | np.ndarray
    ) -> PlattCalibrator:
        x, y = _xy(raw_scores, correct)
        n_pos = float((y > 0.5).sum())
        n_neg = float(y.size - n_pos)
        # Platt (1999): targets pulled off 0/1 so that separable data keeps a finite slope.
        t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        coef, b = fit_logistic(x, t)
        self.a, self.b = float(coef[0]), b
        return self

    def transform(self, raw: Sequence[float] | np.ndarray) -> np.ndarray:
        if self.a is None or self.b is None:
            raise UserError("PlattCalibrator is not fitted: call fit(raw_scores, correct)")
        z = self.a * np.asarray(raw, dtype=float) + self.b
        return sigmoid(z)

    def __call__(self, raw: float) -> float:
        return float(self.transform([raw])[0])

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "a": self.a, "b": self.b}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> PlattCalibrator:
        return cls(d["a"], d["b"])


Calibrator = IsotonicCalibrator | PlattCalibrator


def is_fitted(calibrator: object) -> bool:
    """True once `fit` ran (or a fitted state was loaded)."""
    if calibrator is None:
        return False
    x = getattr(calibrator, "x", None)
    if x is not None:
        return bool(getattr(x, "size", 1))
    return getattr(calibrator, "a", None) is not None


def calibrator_from_state(d: dict[str, Any]) -> Calibrator:
    kinds: dict[str, type[IsotonicCalibrator] | type[PlattCalibrator]] = {
        "isotonic": IsotonicCalibrator,
        "platt": PlattCalibrator,
    }
    if d.get("kind") not in kinds:
        raise ConfigError("expected isotonic or platt", "calibrator.kind")
    return kinds[d["kind"]].from_state(d)
