"""A scripted model for tests: answers from a table, a function or a list, with optional
latency, failures and log-probabilities. A test tool, not a product backend (YAML reaches it as
`backend: fake`, through the re-export in `duetto.models.fake`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from duetto.errors import ModelError, UpstreamError
from duetto.messages import ChatRequest
from duetto.models.base import LeafModel, ModelCard, RawResult

__all__ = ["Script", "ScriptedModel"]

Script = dict[str, str] | Callable[[ChatRequest], str] | Sequence[str]


class ScriptedModel(LeafModel):
    def __init__(
        self,
        card: ModelCard | str,
        script: Script = "ok",
        *,
        latency_s: float = 0.0,
        fail_first: int = 0,
        error: ModelError | None = None,
        logprob: float | Callable[[ChatRequest, str], float] | None = None,
        default: str = "I don't know.",
    ) -> None:
        super().__init__(card if isinstance(card, ModelCard) else ModelCard(name=card))
        self.script = script
        self.latency_s = latency_s
        self.fail_first = fail_first
        self.error = error or UpstreamError("scripted failure", status=500)
        self.logprob = logprob
        self.default = default
        self.calls: list[ChatRequest] = []

    def _answer(self, request: ChatRequest) -> str:
        s = self.script
        if isinstance(s, str):
            return s
        if callable(s):
            return s(request)
        if isinstance(s, dict):
            return s.get(request.last_user, self.default)
        return s[(len(self.calls) - 1) % len(s)]

    async def _call(self, request: ChatRequest) -> RawResult:
        self.calls.append(request)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if len(self.calls) <= self.fail_first:
            raise self.error
        text = self._answer(request)
        n_out = max(1, len(text.split()))
        lp: list[float] | None = None
        if self.logprob is not None:
            v = self.logprob(request, text) if callable(self.logprob) else self.logprob
            lp = [v] * n_out
        return RawResult(
            text=text,
            tokens_in=sum(len(m.text.split()) for m in request.messages),
            tokens_out=n_out,
            logprobs=lp,
        )
