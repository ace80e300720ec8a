"""Fuse: several candidate answers combined into one.

Candidates come from every model in `models`, `samples` times each (samples after the first use
`temperature` and seeds seed+1, seed+2, ...), all called concurrently. A candidate whose model
fails is dropped (noted in the trace); if all fail, the first error is raised.

    method="vote"       majority over normalised answers (the `normalise` callable maps an answer
                        to a comparable key; None = abstain). The keys of `duetto.answers`
                        read answers as the grader does: `text_key` (the default),
                        `number_key`, `extract_choice`.
    method="weighted"   like vote, each candidate weighted by its confidence (exp mean token
                        log-probability, else its `score`, else 1) times its model's weight.
    method="judge"      the judge model sees the numbered candidates and names the best one;
                        an unreadable verdict falls back to the vote (decision "fallback").
    method="aggregate"  the aggregator model fuses the candidates into one answer
                        (Mixture-of-Agents); `stream` streams the aggregator's output.

Ties in a vote go to the key whose first candidate came first (models in the given order).

Capabilities (duetto.capabilities): only the candidates that can answer the request are asked
(`extra["skipped"]` names the others); with method aggregate the aggregator must be capable
too; none capable: MissingCapability (a 400).

Tool calls: candidates that call tools vote on their calls (same functions with the same
parsed arguments are one key; a text answer and a call are different keys), so vote and
weighted pick among the members' tool calls by the same rule as among texts; the judge reads a
call as `call name(arguments)`; the aggregator answers the request itself (tools included),
seeing the candidates' calls as text. The chosen candidate's calls are the answer's.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

from duetto.answers import text_key
from duetto.capabilities import combine
from duetto.errors import ConfigError, ModelError
from duetto.messages import ChatRequest, ChatResponse, Message, StreamChunk
from duetto.models.base import ChatModel
from duetto.strategies._compose import distinct, relay
from duetto.strategies.base import Strategy
from duetto.strategies.capable import describe, skipped, sort_capable
from duetto.strategies.tools import calls_key, calls_of, shown

Method = Literal["vote", "weighted", "judge", "aggregate"]
Normaliser = Callable[[str], str | None]

# --- decision logic (pure) ------------------------------------------------------------------


def vote(keys: Sequence[str | None], weights: Sequence[float]) -> tuple[int | None, float]:
    """Index of the first candidate of the winning key, and the winner's share of the weight.
    None when every candidate abstained."""
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, (k, w) in enumerate(zip(keys, weights, strict=True)):
        if k is None:
            continue
        totals[k] = totals.get(k, 0.0) + w
        first.setdefault(k, i)
    if not totals:
        return None, 0.0
    best = max(totals, key=lambda k: (totals[k], -first[k]))
    whole = sum(totals.values())
    return first[best], (totals[best] / whole if whole > 0 else 0.0)


def candidate_weight(response: ChatResponse) -> float:
    if response.confidence is not None:
        return response.confidence
    return response.score if response.score is not None else 1.0


JUDGE_SYSTEM = "You compare answers. Reply with the number of the best answer only."
AGGREGATE_SYSTEM = (
    "You have been given answers from several models to the user's latest request. Critically "
    "evaluate them (some may be wrong) and write one single, accurate, well-formed answer. Do not "
    "mention the candidates."
)


def numbered(candidates: Sequence[ChatResponse]) -> str:
    return "\n\n".join(f"[{i + 1}] {shown(c).strip()}" for i, c in enumerate(candidates))


def parse_pick(text: str, n: int) -> int | None:
    m = re.search(r"\d+", text)
    if not m:
        return None
    k = int(m.group())
    return k - 1 if 1 <= k <= n else None


# --- the strategy -----------------------------------------------------------------------------


class Fuse(Strategy):
    mode = "fuse"

    def __init__(
        self,
        name: str,
        models: Sequence[ChatModel],
        method: Method = "vote",
        judge: ChatModel | None = None,
        aggregator: ChatModel | None = None,
        samples: int = 1,
        normalise: Normaliser | None = None,
        temperature: float = 0.7,
        weights: Sequence[float] | None = None,
    ) -> None:
        """`weights`: one per model, multiplying candidates' weights in the weighted vote."""
        if method not in ("vote", "weighted", "judge", "aggregate"):
            raise ConfigError("expected vote, weighted, judge or aggregate", "method")
        if not models:
            raise ConfigError("a fusion needs at least one model", "models")
        if samples < 1:
            raise ConfigError("expected at least 1", "samples")
        if len(models) * samples < 2:
            raise ConfigError(
                "a fusion needs at least two candidates (models × samples)", "samples"
            )
        if method == "judge" and judge is None:
            raise ConfigError("method judge needs a judge model", "judge")
        if method == "aggregate" and aggregator is None:
            raise ConfigError("method aggregate needs an aggregator model", "aggregator")
        if weights is not None and len(weights) != len(models):
            raise ConfigError(f"expected {len(models)} weights, one per model", "weights")
        helpers = [m for m in (judge, aggregator) if m is not None]
        super().__init__(name, distinct([*models, *helpers]))
        self.candidates = list(models)
        self.method = method
        self.judge = judge
        self.aggregator = aggregator
        self.samples = samples
        self.normalise: Normaliser = normalise or text_key
        self.temperature = temperature
        self.weights = list(weights) if weights is not None else [1.0] * len(models)

    def _requests(self, request: ChatRequest) -> list[tuple[int, ChatRequest]]:
        out: list[tuple[int, ChatRequest]] = []
        seed = request.seed or 0
        for i, _ in enumerate(self.candidates):
            for j in range(self.samples):
                r = (
                    request
                    if j == 0
                    else replace(request, temperature=self.temperature, seed=seed + j)
                )
                out.append((i, r))
        return out

    @property
    def answerers(self) -> Sequence[ChatModel]:
        return self.candidates

    def lacks(self, request: ChatRequest) -> list[str]:
        """Some candidate must be capable; with method aggregate, the aggregator too (it
        answers the whole request)."""
        out = super().lacks(request)
        if self.aggregator is not None and (missing := self.aggregator.lacks(request)):
            out.append(describe(self.aggregator, missing))
        return out

    def capabilities(self) -> dict[str, Any]:
        caps = super().capabilities()
        if self.aggregator is None:
            return caps
        return combine([caps, self.aggregator.capabilities()], "intersection")

    async def _candidates(
        self, request: ChatRequest
    ) -> tuple[list[ChatResponse], list[int], int, list[str]]:
        """(answers, model index of each, number of failed calls, skipped-candidate notes).
        Only the candidates that can answer are asked; MissingCapability when none can."""
        self.require(request)
        ok, lacks = sort_capable(self.candidates, request)
        jobs = [(i, r) for i, r in self._requests(request) if i in ok]
        results = await asyncio.gather(
            *(self.candidates[i].complete(r) for i, r in jobs), return_exceptions=True
        )
        answers: list[ChatResponse] = []
        owners: list[int] = []
        errors: list[BaseException] = []
        for (i, _), res in zip(jobs, results, strict=True):
            if isinstance(res, ModelError):
                errors.append(res)
            elif isinstance(res, BaseException):
                raise res
            else:
                res.trace.role = "candidate"
                answers.append(res)
                owners.append(i)
        if not answers:
            raise errors[0]
        return answers, owners, len(errors), skipped(self.candidates, lacks)

    def _vote(self, answers: list[ChatResponse], owners: list[int]) -> tuple[int, float, bool]:
        """(winner index, share, whether the vote had a winner)."""
        # Answers calling tools vote on their calls (same functions, same arguments).
        keys = [calls_key(a) if calls_of(a) else self.normalise(a.text) for a in answers]
        if self.method == "weighted":
            w = [
                candidate_weight(a) * self.weights[o] for a, o in zip(answers, owners, strict=True)
            ]
        else:
            w = [1.0] * len(answers)
        idx, share = vote(keys, w)
        return (0, 0.0, False) if idx is None else (idx, share, True)

    async def _judge(
        self, request: ChatRequest, answers: list[ChatResponse]
    ) -> tuple[int | None, ChatResponse]:
        assert self.judge is not None
        prompt = (
            f"Request:\n{request.last_user}\n\nCandidate answers:\n{numbered(answers)}\n\n"
            f"Which answer (1-{len(answers)}) is the best? Reply with its number only."
        )
        ask = ChatRequest.of(
            prompt, system=JUDGE_SYSTEM, max_tokens=8, task=request.task, metadata=request.metadata
        )
        out = await self.judge.complete(ask)
        out.trace.role = "judge"
        return parse_pick(out.text, len(answers)), out

    def aggregate_request(self, request: ChatRequest, answers: list[ChatResponse]) -> ChatRequest:
        note = f"{AGGREGATE_SYSTEM}\n\nCandidate answers:\n{numbered(answers)}"
        msgs = [m for m in request.messages if m.role != "system"]
        return request.with_messages([Message("system", note), *msgs])

    def _extra(
        self, answers: list[ChatResponse], owners: list[int], failed: int, skip: list[str]
    ) -> dict[str, object]:
        extra: dict[str, object] = {
            "method": self.method,
            "candidates": len(answers),
            "failed": failed,
            "candidate_models": [self.candidates[o].name for o in owners],
        }
        if skip:
            extra["skipped"] = skip
        return extra

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        answers, owners, failed, skip = await self._candidates(request)
        extra = self._extra(answers, owners, failed, skip)
        if self.method == "aggregate":
            assert self.aggregator is not None
            out = await self.aggregator.complete(self.aggregate_request(request, answers))
            out.trace.role = "aggregate"
            return self.respond(
                out.text, t0, [*answers, out], decision="aggregated", extra=extra, base=out
            )
        helpers: list[ChatResponse] = []
        if self.method == "judge":
            pick, verdict = await self._judge(request, answers)
            helpers.append(verdict)
            if pick is not None:
                extra["chosen"] = pick
                return self.respond(
                    answers[pick].text,
                    t0,
                    [*answers, *helpers],
                    decision="judged",
                    extra=extra,
                    base=answers[pick],
                )
        idx, share, agreed = self._vote(answers, owners)
        extra["chosen"] = idx
        decision = "fallback" if self.method == "judge" else ("voted" if agreed else "no_vote")
        return self.respond(
            answers[idx].text,
            t0,
            [*answers, *helpers],
            decision=decision,
            score=share,
            extra=extra,
            base=answers[idx],
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        if self.method != "aggregate":
            async for chunk in super().stream(request):
                yield chunk
            return
        assert self.aggregator is not None
        t0 = time.perf_counter()
        answers, owners, failed, skip = await self._candidates(request)

        def finish(out: ChatResponse) -> ChatResponse:
            out.trace.role = "aggregate"
            extra = self._extra(answers, owners, failed, skip)
            return self.respond(
                out.text, t0, [*answers, out], decision="aggregated", extra=extra, base=out
            )

        stream = self.aggregator.stream(self.aggregate_request(request, answers))
        async for chunk in relay(stream, t0, finish):
            yield chunk
