"""Cascade: the cheap model answers first; a verifier scores the answer; below the threshold the
request escalates to the next model.

    models      [cheap, strong] or a multi-level [m0, m1, ..., mk]: every level but the last is
                verified; the last level's answer is taken as is.
    verifier    see duetto.scoring.verifiers (`score(request, response) -> Verdict`).
    calibrator  optional: maps the raw verifier score to P(correct) before the comparison.
    threshold   one shared float, or one per verified level (len(models) - 1); None means it must
                be calibrated first (`complete` raises UserError until then). `self.threshold` is
                the level-0 threshold that calibration sets.
    policy      online adaptation: `policy.threshold` is read at decision time (for every level)
                and `policy.observe(escalated, cost_usd, None)` is called after each request.
    pass_draft  on escalation, give the next model the rejected draft as a hint (a system note).
    rules       consulted first; a match sends the request straight to the named model ("rule").

Capabilities (duetto.capabilities): only the levels that can answer the request run; an
incapable level is skipped (a cascade whose SLM cannot read images goes straight to the LLM;
decision "capability" when one level is left, nothing to verify), and `extra["skipped"]` says
why. None capable, or a rule pinning one that is not: MissingCapability (a 400).

Tool calls and structured output: schema validity is a free verifier signal. A draft calling
tools scores 1 when every call names an offered tool with arguments valid for its parameters
schema, else 0 (escalated); a draft that had to call a tool and did not, or JSON for
response_format that does not parse or match its schema, scores 0. No verifier call then
(`extra["signal"]` on the level node). The turn after a tool result is a new request: the
cascade starts again at its first capable level.

A degenerate draft (duetto.answers.degenerate: empty, a loop, runaway repetition) escalates
whatever the threshold, without calling the verifier; its level node says why
(`extra["degenerate"]`) and its score is 0.

Trace: the cascade node records the level-0 score, threshold and decision ("accepted",
"escalated" or "rule") with `extra["answered_by"]`; below it, one node per verified level
(role "draft", decision accepted/escalated, score, threshold) holding the model call and the
verifier's calls, then the unverified last model's call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from duetto.answers import degenerate
from duetto.errors import ConfigError, UserError
from duetto.messages import ChatRequest, ChatResponse, add_system_note
from duetto.models.base import ChatModel
from duetto.scoring.verifier_learned import LearnedVerifier
from duetto.scoring.verifiers import Calibrator, Verifier, calibrator_from_state, is_fitted
from duetto.strategies._compose import distinct, trace_node
from duetto.strategies.base import Branches, Grade, Strategy, bounded
from duetto.strategies.capable import pinned_refusal, reasons, refusal, skipped, sort_capable
from duetto.strategies.route import Policy, current_threshold
from duetto.strategies.rules import Rule, Rules
from duetto.strategies.tools import calls_of, calls_valid, format_valid, shown

DRAFT_HINT = (
    "A smaller model drafted the answer below; it may be wrong or incomplete. "
    "Use it only if it helps.\nDraft:\n{draft}"
)


def accept(probability: float, threshold: float) -> bool:
    return probability >= threshold


def free_signal(request: ChatRequest, answer: ChatResponse) -> tuple[float, str] | None:
    """A verdict that needs no verifier call, as (score, signal), or None: an answer calling
    tools scores 1 when every call is valid for its tool's schema, else 0; an answer that
    should have called a tool (tool_choice "required" or a named function) but did not, or
    JSON asked by response_format that does not parse or match, scores 0."""
    if calls_of(answer):
        return (1.0 if calls_valid(request, answer) else 0.0), "tool_schema"
    choice = getattr(request, "tool_choice", None)
    if getattr(request, "tools", None) and (choice == "required" or isinstance(choice, dict)):
        return 0.0, "tool_required"
    if not format_valid(request, answer):
        return 0.0, "json_schema"
    return None


class Cascade(Strategy):
    mode = "cascade"

    def __init__(
        self,
        name: str,
        models: Sequence[ChatModel],
        verifier: Verifier,
        threshold: float | Sequence[float] | None = None,
        policy: Policy | None = None,
        pass_draft: bool = False,
        calibrator: Calibrator | None = None,
        rules: Rules | Sequence[Rule | Mapping[str, Any]] | None = None,
    ) -> None:
        if len(models) < 2:
            raise ConfigError("a cascade needs at least two models", "models")
        super().__init__(name, distinct([*models, *verifier.models]))
        self.levels = list(models)
        self.verifier = verifier
        self.calibrator = calibrator
        self.policy = policy
        self.pass_draft = pass_draft
        self.level_thresholds: list[float] | None = None
        if threshold is None or isinstance(threshold, (int, float)):
            self.threshold: float | None = None if threshold is None else float(threshold)
        else:
            if len(threshold) != len(models) - 1:
                raise ConfigError(
                    f"expected one threshold per verified level ({len(models) - 1})", "threshold"
                )
            self.level_thresholds = [float(t) for t in threshold]
            self.threshold = self.level_thresholds[0]
        self.rules = rules if isinstance(rules, Rules) or rules is None else Rules(rules)
        if self.rules is not None:
            self.rules.check_targets([m.name for m in self.levels], name)

    @property
    def answerers(self) -> Sequence[ChatModel]:
        return self.levels

    def threshold_at(self, level: int) -> float:
        if self.policy is None and self.level_thresholds is not None and level > 0:
            return self.level_thresholds[level]
        return current_threshold(self.name, self.threshold, self.policy)

    async def _verify(
        self, request: ChatRequest, level: int, t0: float, calibrated: bool = True
    ) -> tuple[ChatResponse, ChatResponse, float, float]:
        """Answer at `level` and verify: (level node without decision, answer, prob, raw).
        With `calibrated=False`, prob is the raw score (what a calibrator is fitted on)."""
        answer = await self.levels[level].complete(request)
        extra: dict[str, Any] = {}
        used: Sequence[ChatResponse] = ()
        if (signal := free_signal(request, answer)) is not None:
            # A tool call's arguments checked against the tool's schema, or JSON that does not
            # parse: a verdict without a verifier call (1 accepts, 0 escalates).
            raw = prob = signal[0]
            extra["signal"] = signal[1]
        elif (reason := degenerate(answer.text)) is not None:
            # a loop or an empty answer is rejected whatever a verifier would say (a looping
            # SmolLM2 answer gets a fair token confidence): not scored, score 0
            raw = prob = 0.0
            extra["degenerate"] = reason
        else:
            raw, used = await self.verifier.score(request, answer)
            # An unfitted calibrator (e.g. `duetto serve` of a config never run through `duetto
            # eval`) passes the raw score through: both live in [0, 1] for the shipped verifiers.
            cal = self.calibrator if calibrated else None
            prob = cal(raw) if cal is not None and is_fitted(cal) else raw
        node = trace_node(
            f"{self.name}.level{level}",
            self.mode,
            [answer, *used],
            text=answer.text,
            role="draft",
            score=prob,
            extra={"raw_score": raw, **extra},
            t0=t0,
            base=answer,
        )
        return node, answer, prob, raw

    def _escalated_request(self, request: ChatRequest, draft: str) -> ChatRequest:
        useful = self.pass_draft and degenerate(draft) is None  # a loop is no hint
        return add_system_note(request, DRAFT_HINT.format(draft=draft)) if useful else request

    async def _by_rule(
        self, request: ChatRequest, t0: float, lacks: dict[int, list[str]] | None = None
    ) -> tuple[ChatResponse, int] | None:
        """The pinned model's response when a rule matches (MissingCapability when the pinned
        model lacks what the request needs: `lacks` by level)."""
        if self.rules is None or (target := self.rules.match(request)) is None:
            return None
        level = [m.name for m in self.levels].index(target)
        if lacks and level in lacks:
            raise pinned_refusal(self.name, self.mode, self.levels[level], lacks[level])
        out = await self.levels[level].complete(request)
        extra = {"rule_target": target, "answered_by": target, "level": level}
        return self.respond(out.text, t0, [out], decision="rule", extra=extra, base=out), level

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        capable, lacks = sort_capable(self.levels, request)
        if (pinned := await self._by_rule(request, t0, lacks)) is not None:
            self._observe(pinned[1] > 0, pinned[0])
            return pinned[0]
        if not capable:
            raise refusal(self.name, self.mode, reasons(self.levels, lacks))
        # Only the capable levels run; the last of them answers unverified.
        verified = capable[:-1]
        thresholds = [self.threshold_at(i) for i in verified]
        nodes: list[ChatResponse] = []
        scores: list[float] = []
        current = request
        final: ChatResponse | None = None
        level = capable[0]
        for k, level in enumerate(verified):
            node, answer, prob, _ = await self._verify(current, level, time.perf_counter())
            scores.append(prob)
            ok = accept(prob, thresholds[k]) and "degenerate" not in node.trace.extra
            node.trace.decision = "accepted" if ok else "escalated"
            node.trace.threshold = thresholds[k]
            nodes.append(node)
            if ok:
                final = answer
                break
            current = self._escalated_request(current, shown(answer))
        if final is None:
            level = capable[-1]
            final = await self.levels[level].complete(current)
            final.trace.role = "answer"
            nodes.append(final)
        extra: dict[str, Any] = {
            "answered_by": self.levels[level].name,
            "level": level,
            "scores": scores,
        }
        if lacks:
            extra["skipped"] = skipped(self.levels, lacks)
        if not verified:
            decision = "capability"  # one capable level: it answers, nothing to verify
        else:
            decision = "accepted" if level == capable[0] else "escalated"
        resp = self.respond(
            final.text,
            t0,
            nodes,
            decision=decision,
            score=scores[0] if scores else None,
            threshold=thresholds[0] if thresholds else None,
            extra=extra,
            base=final,
        )
        self._observe(level > 0, resp)
        return resp

    def _observe(self, escalated: bool, response: ChatResponse) -> None:
        if self.policy is not None:
            self.policy.observe(escalated, response.usage.cost_usd, None)

    async def branches(self, request: ChatRequest, *, calibrated: bool = True) -> Branches:
        """Both outcomes of a two-model cascade on one request: `cheap` = draft accepted (draft +
        verification cost), `strong` = escalated (draft + verification + strong answer). `score`
        is the calibrated probability compared with the threshold (with `calibrated=False`, the
        verifier's raw score). No policy is told."""
        if len(self.levels) != 2:
            n = len(self.levels)
            raise UserError(f"branches() needs a two-model cascade; {self.name!r} has {n}")
        t0 = time.perf_counter()
        if (pinned := await self._by_rule(request, t0)) is not None:
            return Branches(score=1.0 - pinned[1], cheap=pinned[0], strong=pinned[0])
        node, answer, prob, _ = await self._verify(request, 0, t0, calibrated)
        accepted = replace(node, trace=replace(node.trace, decision="accepted"))
        extra = {"answered_by": self.levels[0].name, "level": 0, "scores": [prob]}
        cheap = self.respond(
            answer.text, t0, [accepted], decision="accepted", score=prob, extra=extra, base=answer
        )
        node.trace.decision = "escalated"
        strong_out = await self.levels[1].complete(self._escalated_request(request, answer.text))
        strong_out.trace.role = "answer"
        extra = {"answered_by": self.levels[1].name, "level": 1, "scores": [prob]}
        strong = self.respond(
            strong_out.text,
            t0,
            [node, strong_out],
            decision="escalated",
            score=prob,
            extra=extra,
            base=strong_out,
        )
        return Branches(score=prob, cheap=cheap, strong=strong)

    # -- Tunable: what calibration fits, saved and restored by duetto.fitted -------------------

    async def fit(
        self, requests: Sequence[ChatRequest], grade: Grade, *, concurrency: int = 1
    ) -> None:
        """A learned verifier is fitted on the calibration drafts and their correctness, before
        the threshold is chosen on its scores (in an evaluation the drafts' calls are cached)."""
        if not isinstance(self.verifier, LearnedVerifier):
            return
        branches = [self.branches(r) for r in requests]
        drafts = [b.cheap for b in await bounded(branches, concurrency)]
        correct = [grade(i, d.text) >= 0.5 for i, d in enumerate(drafts)]
        self.verifier.fit(list(requests), drafts, correct)

    def calibrate_scores(self, raw: Sequence[float], correct: Sequence[bool]) -> list[float]:
        """Fit the calibrator (if any) on raw verifier scores; the calibrated scores."""
        if self.calibrator is None:
            return [float(x) for x in raw]
        self.calibrator.fit(raw, correct)
        return [self.calibrator(float(x)) for x in raw]

    def state(self) -> dict[str, Any]:
        cal = self.calibrator
        return {
            "threshold": self.threshold,
            "calibrator": cal.state() if cal is not None and is_fitted(cal) else None,
            "verifier": (
                self.verifier.state() if isinstance(self.verifier, LearnedVerifier) else None
            ),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore `state()` (missing or null parts are left as built)."""
        if state.get("calibrator") is not None:
            self.calibrator = calibrator_from_state(state["calibrator"])
        if state.get("verifier") is not None:
            if not isinstance(self.verifier, LearnedVerifier):
                raise ValueError("saved state has a learned verifier; this cascade has none")
            self.verifier.load_state(state["verifier"])
        self.threshold = float(state["threshold"])
        if self.policy is not None:
            self.policy.reset(self.threshold)  # the adaptive part starts where calibration ended
