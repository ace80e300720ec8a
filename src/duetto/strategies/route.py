"""Route: a scorer decides before generation which model answers; only that model is called.

Two models `[cheap, strong]`: the scorer returns s = P(the cheap model is enough), computed from
the whole conversation (every turn, not only the last message); s >= threshold → cheap, else
strong. N models: the scorer returns one predicted quality per model and the route takes
argmax(q − λ·cost). Rules (see `rules.py`) are consulted first; a match pins the model and the
trace records decision "rule".

Capabilities (duetto.capabilities): the route chooses only among the models that can answer the
request (tools, JSON schema, images, audio, log-probs, a context long enough). When one model
can, it answers unscored (decision "capability"); N models: argmax over the capable ones; the
trace's `extra["skipped"]` says who was skipped and why ("skipped slm: lacks vision"). None
capable, or a rule pinning one that is not: MissingCapability (a 400 naming the capability).
Tool calls need nothing more: each turn is routed on its own, so the turn after a tool result
may be answered by another model than the one that called the tool.

A scorer is anything with `score(request) -> float | np.ndarray` (an awaitable result is awaited).
Shipped: `RouterScorer` (adapter for `duetto.scoring.routers.Router.score_texts`), `LengthScorer`,
`TaskPriorScorer` (fixed priors) and `FittedTaskPrior` (priors fitted on labelled outcomes).

A `policy` (from duetto.calibrate) supplies the threshold at decision time (`policy.threshold`)
and is told each outcome (`policy.observe(escalated, cost_usd, quality=None)`), rule-pinned
requests included, so that an LLM-share or budget target holds over all traffic.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from duetto.errors import ConfigError, ModelError, UserError
from duetto.messages import ChatRequest, ChatResponse, StreamChunk
from duetto.models.base import ChatModel
from duetto.strategies._compose import relay
from duetto.strategies.base import Branches, Grade, Strategy, bounded
from duetto.strategies.capable import pinned_refusal, reasons, refusal, skipped, sort_capable
from duetto.strategies.rules import Rule, Rules

# --- protocols --------------------------------------------------------------------------------


@runtime_checkable
class Policy(Protocol):
    """Online threshold adaptation (duetto.calibrate provides implementations)."""

    threshold: float

    def observe(self, escalated: bool, cost_usd: float, quality: float | None = None) -> None: ...

    def reset(self, start: float) -> None:
        """Start again from `start` (the threshold offline calibration chose)."""


@runtime_checkable
class Scorer(Protocol):
    def score(self, request: ChatRequest) -> Any:
        """A float (two models: P(cheap is enough)) or an array (one predicted quality per model);
        may return an awaitable of either."""
        ...


@runtime_checkable
class LearnedScorer(Scorer, Protocol):
    """A scorer that learns from calibration (e.g. a task prior) and saves what it learnt."""

    def fit(self, tasks: Sequence[str | None], quality: Sequence[float]) -> Any: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, d: dict[str, Any]) -> None: ...


class TextRouter(Protocol):
    def score_texts(self, texts: Sequence[str], task: str | None) -> np.ndarray: ...


def current_threshold(owner: str, threshold: float | None, policy: Policy | None) -> float:
    """The threshold in force now; a clear error when nothing calibrated it."""
    if policy is not None:
        return float(policy.threshold)
    if threshold is None:
        raise UserError(
            f"strategy {owner!r} has no threshold: set `threshold`, give a calibration target "
            "(e.g. `duetto eval ... --target llm_share=0.3`) or attach a policy"
        )
    return threshold


async def call_scorer(scorer: Scorer, request: ChatRequest) -> float | np.ndarray:
    out = scorer.score(request)
    if inspect.isawaitable(out):
        out = await out
    if isinstance(out, np.ndarray) and out.size > 1:
        return out.astype(float).ravel()
    return float(np.asarray(out).ravel()[0]) if isinstance(out, np.ndarray) else float(out)


# --- scorers ----------------------------------------------------------------------------------


class RouterScorer:
    """Adapter: a router that scores texts → a request scorer (on the whole conversation)."""

    def __init__(self, router: TextRouter) -> None:
        self.router = router

    def score(self, request: ChatRequest) -> float | np.ndarray:
        out = np.asarray(self.router.score_texts([request.text], request.task), dtype=float)
        row = out[0] if out.ndim >= 1 else out
        return float(row) if np.ndim(row) == 0 else np.asarray(row, dtype=float)


class LengthScorer:
    """Short conversations are more likely easy: s = scale / (scale + characters)."""

    def __init__(self, scale_chars: float = 400.0) -> None:
        if scale_chars <= 0:
            raise ConfigError("expected a positive number", "scale_chars")
        self.scale = scale_chars

    def score(self, request: ChatRequest) -> float:
        return self.scale / (self.scale + len(request.text))


class TaskPriorScorer:
    """A fixed P(cheap is enough) per task type (e.g. measured on labelled data)."""

    def __init__(self, priors: Mapping[str, float], default: float = 0.5) -> None:
        for task, p in priors.items():
            if not 0.0 <= p <= 1.0:
                raise ConfigError("expected a probability in [0, 1]", f"priors.{task}")
        self.priors = dict(priors)
        self.default = default

    def score(self, request: ChatRequest) -> float:
        return self.priors.get(request.task or "", self.default)


class FittedTaskPrior:
    """P(cheap model is enough) per task type, learned from labelled outcomes.

    `fit(tasks, cheap_correct)` sets each task's prior to the cheap model's (Laplace-smoothed)
    accuracy on it; unseen tasks get the overall accuracy. The evaluator fits it on the
    calibration split before choosing the threshold."""

    def __init__(self, priors: dict[str, float] | None = None, default: float = 0.5) -> None:
        self.priors = dict(priors or {})
        self.default = default

    def fit(self, tasks: Sequence[str | None], correct: Sequence[float]) -> None:
        sums: dict[str, list[float]] = {}
        for t, c in zip(tasks, correct, strict=True):
            sums.setdefault(t or "", []).append(float(c))
        self.priors = {t: (sum(v) + 1) / (len(v) + 2) for t, v in sums.items()}
        n = sum(len(v) for v in sums.values())
        self.default = (sum(sum(v) for v in sums.values()) + 1) / (n + 2)

    def score(self, request: ChatRequest) -> float:
        return self.priors.get(request.task or "", self.default)

    def state(self) -> dict[str, Any]:
        return {"kind": "task_prior", "priors": dict(self.priors), "default": self.default}

    def load_state(self, d: dict[str, Any]) -> None:
        """Restore a fit saved by `state` (duetto.fitted)."""
        self.priors = {str(k): float(v) for k, v in d["priors"].items()}
        self.default = float(d["default"])


# --- decision logic (pure) --------------------------------------------------------------------


def choose_two(score: float, threshold: float) -> int:
    return 0 if score >= threshold else 1


def choose_n(
    quality: np.ndarray, costs: Sequence[float], lam: float, allowed: Sequence[int] | None = None
) -> int:
    """argmax(quality - lam * cost) over the `allowed` indices (default: all)."""
    utility = np.asarray(quality, dtype=float) - lam * np.asarray(costs, dtype=float)
    if allowed is not None:
        masked = np.full_like(utility, -np.inf)
        masked[list(allowed)] = utility[list(allowed)]
        utility = masked
    return int(np.argmax(utility))


@dataclass(slots=True)
class Decision:
    index: int  # the model that answers
    decision: str  # "cheap" | "strong" | "chosen" (N models) | "rule" | "capability"
    score: float | None = None
    threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- the strategy -----------------------------------------------------------------------------


class Route(Strategy):
    mode = "route"

    def __init__(
        self,
        name: str,
        models: Sequence[ChatModel],
        scorer: Scorer,
        threshold: float | None = None,
        policy: Policy | None = None,
        rules: Rules | Sequence[Rule | Mapping[str, Any]] | None = None,
        costs: Sequence[float] | None = None,
        lam: float = 0.0,
    ) -> None:
        """`models[0]` is the cheap one. `costs` (N-model routing) are in the unit λ trades against
        predicted quality; by default each card's USD price per million input + output tokens."""
        if len(models) < 2:
            raise ConfigError("a route needs at least two models", "models")
        super().__init__(name, list(models))
        self.scorer = scorer
        self.threshold = threshold
        self.policy = policy
        self.rules = rules if isinstance(rules, Rules) or rules is None else Rules(rules)
        if self.rules is not None:
            self.rules.check_targets([m.name for m in self.models], name)
        if costs is not None and len(costs) != len(models):
            raise ConfigError(f"expected {len(models)} costs, one per model", "costs")
        self.costs = (
            list(costs)
            if costs is not None
            else [m.card.price_in_per_mtok + m.card.price_out_per_mtok for m in models]
        )
        self.lam = lam

    def _by_name(self, name: str) -> int:
        return [m.name for m in self.models].index(name)

    async def decide(self, request: ChatRequest) -> Decision:
        """Which model answers, decided before any generation, among the models that can
        answer the request (a rule pinning one that cannot is refused: MissingCapability)."""
        ok, lacks = sort_capable(self.models, request)
        if self.rules is not None and (target := self.rules.match(request)) is not None:
            i = self._by_name(target)
            if i in lacks:
                raise pinned_refusal(self.name, self.mode, self.models[i], lacks[i])
            return Decision(i, "rule", extra={"rule_target": target})
        if not ok:
            raise refusal(self.name, self.mode, reasons(self.models, lacks))
        if len(ok) == 1:  # one capable model: nothing to score
            return Decision(ok[0], "capability", extra={"skipped": skipped(self.models, lacks)})
        d = await self._scored(request, ok)
        if lacks:
            d.extra["skipped"] = skipped(self.models, lacks)
        return d

    async def _scored(self, request: ChatRequest, ok: list[int]) -> Decision:
        s = await call_scorer(self.scorer, request)
        n = len(self.models)
        if isinstance(s, np.ndarray):
            if len(s) != n:
                raise UserError(f"scorer of {self.name!r} gave {len(s)} qualities for {n} models")
            i = choose_n(s, self.costs, self.lam, ok)
            extra = {"qualities": [round(float(q), 6) for q in s], "lam": self.lam}
            return Decision(i, "chosen", float(s[i]), extra=extra)
        if n != 2:
            raise UserError(
                f"{self.name!r} routes {n} models: its scorer must return one "
                "predicted quality per model, not a single number"
            )
        if math.isnan(s):
            raise UserError(f"scorer of {self.name!r} returned NaN")
        t = current_threshold(self.name, self.threshold, self.policy)
        i = choose_two(s, t)
        return Decision(i, "cheap" if i == 0 else "strong", s, t)

    def _finish(self, out: ChatResponse, t0: float, d: Decision) -> ChatResponse:
        extra = {**d.extra, "chosen": self.models[d.index].name}
        return self.respond(
            out.text,
            t0,
            [out],
            decision=d.decision,
            score=d.score,
            threshold=d.threshold,
            extra=extra,
            base=out,
        )

    def _observe(self, d: Decision, response: ChatResponse) -> None:
        if self.policy is not None:
            self.policy.observe(d.index != 0, response.usage.cost_usd, None)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        d = await self.decide(request)
        out = await self.models[d.index].complete(request)
        resp = self._finish(out, t0, d)
        self._observe(d, resp)
        return resp

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        t0 = time.perf_counter()
        d = await self.decide(request)

        def finish(out: ChatResponse) -> ChatResponse:
            resp = self._finish(out, t0, d)
            self._observe(d, resp)
            return resp

        async for chunk in relay(self.models[d.index].stream(request), t0, finish):
            yield chunk

    async def branches(self, request: ChatRequest, *, calibrated: bool = True) -> Branches:
        """Both outcomes of a two-model route, for offline threshold calibration. A rule-pinned
        request has one outcome in both branches (the threshold cannot change it). A route's
        score needs no calibration: `calibrated` changes nothing."""
        if len(self.models) != 2:
            n = len(self.models)
            raise UserError(f"branches() needs a two-model route; {self.name!r} has {n}")
        t0 = time.perf_counter()
        if self.rules is not None and (target := self.rules.match(request)) is not None:
            d = Decision(self._by_name(target), "rule", extra={"rule_target": target})
            out = await self.models[d.index].complete(request)
            pinned = self._finish(out, t0, d)
            return Branches(score=1.0 if d.index == 0 else 0.0, cheap=pinned, strong=pinned)
        s = await call_scorer(self.scorer, request)
        if isinstance(s, np.ndarray):
            raise UserError(f"branches() needs a scalar scorer; {self.name!r}'s returns an array")
        score_ms = (time.perf_counter() - t0) * 1000
        cheap, strong = await asyncio.gather(
            self.models[0].complete(request), self.models[1].complete(request)
        )
        # Both calls ran concurrently: each branch's latency is its own call's, not the pair's.
        return Branches(
            score=s,
            cheap=with_latency(self._finish(cheap, t0, Decision(0, "cheap", s)), score_ms),
            strong=with_latency(self._finish(strong, t0, Decision(1, "strong", s)), score_ms),
        )

    # -- Tunable: what calibration fits, saved and restored by duetto.fitted -------------------

    async def fit(
        self, requests: Sequence[ChatRequest], grade: Grade, *, concurrency: int = 1
    ) -> None:
        """A learned scorer (the task prior) learns how good the cheap model's answers are per
        task (in an evaluation these calls are the cached SLM-only ones)."""
        if not isinstance(self.scorer, LearnedScorer):
            return
        answers = await bounded([self._cheap_answer(r) for r in requests], concurrency)
        quality = [0.0 if a is None else grade(i, a) for i, a in enumerate(answers)]
        self.scorer.fit([r.task for r in requests], quality)

    async def _cheap_answer(self, request: ChatRequest) -> str | None:
        """The cheap model's answer; None when its call failed (graded as wrong)."""
        try:
            return (await self.models[0].complete(request)).text
        except ModelError:
            return None

    def calibrate_scores(self, raw: Sequence[float], correct: Sequence[bool]) -> list[float]:
        return [float(x) for x in raw]

    def state(self) -> dict[str, Any]:
        scorer = self.scorer.state() if isinstance(self.scorer, LearnedScorer) else None
        return {"threshold": self.threshold, "scorer": scorer}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore `state()` (a missing or null scorer is left as built)."""
        if state.get("scorer") is not None:
            if not isinstance(self.scorer, LearnedScorer):
                raise ValueError("saved state has a fitted scorer; this route's scorer is fixed")
            self.scorer.load_state(state["scorer"])
        self.threshold = float(state["threshold"])
        if self.policy is not None:
            self.policy.reset(self.threshold)  # the adaptive part starts where calibration ended


def with_latency(response: ChatResponse, before_ms: float) -> ChatResponse:
    """Set a one-child strategy response's latency to `before_ms` + its child's own latency."""
    child = response.trace.children[-1]
    own = child.latency_ms if child.latency_ms is not None else child.total().latency_ms
    response.trace.latency_ms = before_ms + own
    response.usage.latency_ms = before_ms + own
    return response
