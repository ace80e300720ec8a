"""What the strategies compose with: one trace node over children, one stream relay, `distinct`.

    trace_node(name, mode, children, text=..., t0=...)   a strategy's response (or a labelled
        sub-node: a pipeline stage, a cascade level): a trace Step over the children's traces,
        usage summed, latency from `t0`, finish reason, log-probs and tool calls from `base`
        (default: the last child); the node's `extra["tool_calls"]` names the calls.
    relay(stream, t0, finish)                            stream the answering call: deltas pass
        through; its final response is wrapped by `finish(out)`, and the TTFT is the strategy's
        own work before the call plus that call's TTFT.

Adding a system note to a request is `duetto.messages.add_system_note` (the privacy layer needs
it too).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

from duetto.messages import ChatResponse, StreamChunk
from duetto.models.base import ChatModel
from duetto.trace import Step


def distinct(models: Sequence[ChatModel]) -> list[ChatModel]:
    """Each model once, in order (a model used in two roles is closed once)."""
    return list({id(m): m for m in models}.values())


def trace_node(
    name: str,
    mode: str,
    children: Sequence[ChatResponse],
    *,
    text: str,
    t0: float | None = None,
    role: str | None = None,
    decision: str | None = None,
    score: float | None = None,
    threshold: float | None = None,
    note: str | None = None,
    extra: dict[str, Any] | None = None,
    base: ChatResponse | None = None,
) -> ChatResponse:
    """A trace node over `children`, wrapped as a ChatResponse named `name` (so that a parent
    node can nest it). `t0` is a time.perf_counter() value taken when the work began (None: no
    latency of its own; the children's still add up)."""
    step = Step(
        name=name,
        kind="strategy",
        mode=mode,
        role=role,
        decision=decision,
        score=score,
        threshold=threshold,
        latency_ms=(time.perf_counter() - t0) * 1000 if t0 is not None else None,
        children=[c.trace for c in children],
        note=note,
        extra=dict(extra or {}),
    )
    src = base or (children[-1] if children else None)
    if src is None:
        return ChatResponse(text=text, model=name, usage=step.total(), trace=step, score=score)
    calls = getattr(src, "tool_calls", None)
    if calls:  # traces record tool calls: the names (the arguments are answer content)
        step.extra.setdefault("tool_calls", [str(getattr(c, "name", c)) for c in calls])
    # Everything else of the answer (finish reason, log-probs, tool calls, ...) is the source's.
    return replace(src, text=text, model=name, usage=step.total(), trace=step, score=score)


def stream_ttft(resp: ChatResponse, out: ChatResponse, t0: float, t_call: float) -> None:
    """A streamed strategy's TTFT: its own work before the answering call (t0 → t_call, both
    perf_counter values) plus that call's TTFT."""
    if out.usage.ttft_ms is not None:
        resp.usage.ttft_ms = (t_call - t0) * 1000 + out.usage.ttft_ms


async def relay(
    stream: AsyncIterator[StreamChunk],
    t0: float,
    finish: Callable[[ChatResponse], ChatResponse],
    t_call: float | None = None,
) -> AsyncIterator[StreamChunk]:
    """Yield the deltas of `stream`; wrap its final response with `finish` and fix the TTFT.
    `t_call` is when the answering call started (default: when the relay starts)."""
    started = time.perf_counter() if t_call is None else t_call
    async for chunk in stream:
        if chunk.response is None:
            yield chunk
            continue
        out = chunk.response
        resp = finish(out)
        stream_ttft(resp, out, t0, started)
        yield StreamChunk(delta="", response=resp)
