"""Fallback: try the primary under a deadline; if it fails, the backup answers.

    primary          the model or strategy that should answer.
    backup           answers when the primary raises (any exception: a ModelError or a timeout
                     is expected; anything else is a bug, rescued but logged as an error).
    timeout_s        deadline for the primary's whole call (None: no deadline).
    backup_timeout_s deadline for the backup's call (None: no deadline).
    continue_streams a stream cut after some deltas is continued by the backup, given the
                     partial answer as context (`continuation`); the client sees one answer,
                     the concatenation. With False, such a stream fails with the primary's error
                     (a stream that fails before its first delta is always answered by backup).

Capabilities (duetto.capabilities): the backup must be able to answer what it is given. A
primary that lacks what the request needs is skipped: the backup answers (decision
"capability", the trace notes "skipped <primary>: lacks vision"); a backup that lacks it is
not used (the primary's failure is raised as it is); both lacking: MissingCapability (400).

When the primary answers, its response is returned unchanged (the fallback is invisible: the
trace root is the primary's own). When the backup answers, the trace root is a node with mode
"fallback", decision "fallback", `note` describing the primary's failure and
`extra = {"fallback_to": <backup's answering model>, ["continued_after_chars": n]}`, over two
children: the failed primary (decision "failed", `extra["error"]` the exception type) and the
backup's trace. When both fail, `FallbackFailed` (a ModelError) carries both errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from duetto.errors import FallbackFailed, ModelError
from duetto.messages import ChatRequest, ChatResponse, Message, StreamChunk
from duetto.models.base import ChatModel
from duetto.strategies.base import Strategy
from duetto.strategies.capable import describe as describe_lacks
from duetto.strategies.capable import refusal
from duetto.trace import Step

log = logging.getLogger("duetto.fallback")

CONTINUE = "Continue your previous answer exactly where it stopped. Do not repeat any of it."


def describe(model: ChatModel, error: BaseException) -> str:
    """One line saying how `model` failed (at most 500 characters)."""
    if isinstance(error, TimeoutError):
        return f"{model.name} timed out"
    return f"{model.name} failed: {type(error).__name__}: {error}"[:500]


def continuation(request: ChatRequest, partial: str) -> ChatRequest:
    """The request a backup gets after a stream was cut: the partial answer as context."""
    return request.with_messages(
        [*request.messages, Message("assistant", partial), Message("user", CONTINUE)]
    )


async def deltas(
    model: ChatModel, request: ChatRequest, deadline: float | None
) -> AsyncIterator[str | ChatResponse]:
    """A model's stream as text deltas then its ChatResponse, each chunk under the deadline (a
    loop.time() value; None: no deadline)."""
    agen = model.stream(request).__aiter__()
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                try:
                    chunk = await anext(agen)
                except StopAsyncIteration:
                    return
            if chunk.response is not None:
                yield chunk.response
                return
            if chunk.delta:
                yield chunk.delta
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()


class Fallback(Strategy):
    """A strategy that answers with `backup` when `primary` fails (see the module docstring)."""

    mode = "fallback"

    def __init__(
        self,
        name: str,
        primary: ChatModel,
        backup: ChatModel,
        *,
        timeout_s: float | None = None,
        backup_timeout_s: float | None = None,
        continue_streams: bool = True,
    ) -> None:
        super().__init__(name, [primary, backup])
        self.primary = primary
        self.backup = backup
        self.timeout_s = timeout_s
        self.backup_timeout_s = backup_timeout_s
        self.continue_streams = continue_streams

    def _capable(self, request: ChatRequest) -> tuple[list[str], list[str]]:
        """(what the primary lacks, what the backup lacks); MissingCapability when both lack."""
        primary, backup = self.primary.lacks(request), self.backup.lacks(request)
        if primary and backup:
            why = [describe_lacks(self.primary, primary), describe_lacks(self.backup, backup)]
            raise refusal(self.name, self.mode, why)
        return primary, backup

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        primary_lacks, backup_lacks = self._capable(request)
        if primary_lacks:
            return await self._backup_only(request, primary_lacks, t0)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.primary.complete(request)
        except Exception as exc:
            error: Exception = exc
        if backup_lacks:  # an incapable backup would drop what the request needs
            log.info("%s: %s; backup %s", self.name, describe(self.primary, error), backup_lacks)
            raise error
        self._log_failure(error)
        t_call = time.perf_counter()
        try:
            async with asyncio.timeout(self.backup_timeout_s):
                answer = await self.backup.complete(request)
        except Exception as exc:
            raise self._both_failed(error, exc) from exc
        response = self._rescued(error, answer, t0, None)
        if answer.usage.ttft_ms is not None:  # the wait for the primary, then the backup's TTFT
            response.usage.ttft_ms = (t_call - t0) * 1000 + answer.usage.ttft_ms
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """The primary's deltas; on failure the backup's (from the start, or continuing the
        partial answer), then one final chunk with the response."""
        t0 = time.perf_counter()
        primary_lacks, backup_lacks = self._capable(request)
        if primary_lacks:
            async for chunk in super().stream(request):  # complete(): the backup answers
                yield chunk
            return
        first: float | None = None  # ms from t0 to the first delta the caller saw
        sent: list[str] = []
        try:
            async for item in deltas(self.primary, request, _deadline(self.timeout_s)):
                if isinstance(item, ChatResponse):
                    yield StreamChunk(delta="", response=item)
                    return
                if first is None:
                    first = (time.perf_counter() - t0) * 1000
                sent.append(item)
                yield StreamChunk(delta=item)
            raise ModelError(f"{self.primary.name}: stream ended without a response")
        except Exception as exc:
            error: Exception = exc
        partial = "".join(sent)
        if backup_lacks or (partial and not self.continue_streams):
            raise error
        self._log_failure(error)
        backup_request = continuation(request, partial) if partial else request
        try:
            async for item in deltas(self.backup, backup_request, _deadline(self.backup_timeout_s)):
                if isinstance(item, ChatResponse):
                    if partial:  # the caller saw both parts: the answer is their concatenation
                        item.text = partial + item.text
                    response = self._rescued(error, item, t0, len(partial) if partial else None)
                    if first is not None:
                        response.usage.ttft_ms = first
                    yield StreamChunk(delta="", response=response)
                    return
                if first is None:
                    first = (time.perf_counter() - t0) * 1000
                yield StreamChunk(delta=item)
            raise ModelError(f"{self.backup.name}: stream ended without a response")
        except Exception as exc:
            raise self._both_failed(error, exc) from exc

    def _rescued(
        self, error: BaseException, answer: ChatResponse, t0: float, continued_after: int | None
    ) -> ChatResponse:
        """The backup's answer under a fallback node that records the primary's failure."""
        note = f"{self.primary.name} failed: {type(error).__name__}: {error}"[:500]
        failed = Step(
            name=self.primary.name,
            kind=self.primary.kind,
            decision="failed",
            note=note,
            extra={"error": type(error).__name__},
        )
        extra: dict[str, Any] = {"fallback_to": answer.model}
        if continued_after is not None:
            extra["continued_after_chars"] = continued_after
        step = Step(
            name=self.name,
            kind="strategy",
            mode=self.mode,
            role="fallback",
            decision="fallback",
            latency_ms=(time.perf_counter() - t0) * 1000,
            note=note,
            children=[failed, answer.trace],
            extra=extra,
        )
        # the backup's answer as it is (tool calls, log-probs, ...) under the fallback node
        return replace(answer, usage=step.total(), trace=step)

    async def _backup_only(
        self, request: ChatRequest, primary_lacks: list[str], t0: float
    ) -> ChatResponse:
        """The primary cannot answer the request: the backup answers, and the trace says why."""
        answer = await self.backup.complete(request)
        note = f"skipped {describe_lacks(self.primary, primary_lacks)}"
        skipped = Step(
            name=self.primary.name, kind=self.primary.kind, decision="skipped", note=note
        )
        step = Step(
            name=self.name,
            kind="strategy",
            mode=self.mode,
            role="fallback",
            decision="capability",
            latency_ms=(time.perf_counter() - t0) * 1000,
            note=note,
            children=[skipped, answer.trace],
            extra={"fallback_to": answer.model, "skipped": [note]},
        )
        return replace(answer, usage=step.total(), trace=step)

    def _both_failed(self, error: BaseException, backup_error: BaseException) -> FallbackFailed:
        message = f"{describe(self.primary, error)}; fallback {describe(self.backup, backup_error)}"
        return FallbackFailed(message, error, backup_error)

    def _log_failure(self, error: BaseException) -> None:
        if isinstance(error, ModelError | TimeoutError):
            log.info(
                "%s: %s, %s answers", self.name, describe(self.primary, error), self.backup.name
            )
        else:  # a bug in a strategy: rescued, but loudly
            log.error("%s: %s raised", self.name, self.primary.name, exc_info=error)


def rescued(response: ChatResponse) -> tuple[str, str] | None:
    """(answering model, the primary's failure) when a Fallback's backup answered, else None."""
    step = response.trace
    if step.mode != Fallback.mode or step.decision != "fallback":
        return None
    return str(step.extra.get("fallback_to", response.model)), step.note or ""


def _deadline(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
