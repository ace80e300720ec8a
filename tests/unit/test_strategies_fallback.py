"""Fallback: the primary answers; on an error, a timeout or a broken stream the backup does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from duetto.errors import BrokenStream, FallbackFailed, ModelError, UpstreamError
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import LeafModel, ModelCard, RawResult
from duetto.strategies import Fallback, Strategy
from duetto.strategies.fallback import rescued
from duetto.testing.scripted import ScriptedModel

LLM = ModelCard(
    name="llm", location="remote", trusted=False, price_in_per_mtok=1e5, price_out_per_mtok=1e6
)
SLM = ModelCard(name="slm")


class Streamer(LeafModel):
    """Streams `parts` (each after `delay_s`); with `cut`, breaks after them."""

    def __init__(
        self, card: ModelCard, parts: list[str], *, cut: bool = False, delay_s: float = 0.0
    ) -> None:
        super().__init__(card)
        self.parts, self.cut, self.delay_s = parts, cut, delay_s
        self.calls: list[ChatRequest] = []

    async def _call(self, request: ChatRequest) -> RawResult:
        raise AssertionError("only streamed in these tests")

    async def _stream_raw(self, request: ChatRequest) -> AsyncIterator[str | RawResult]:
        self.calls.append(request)
        for p in self.parts:
            await asyncio.sleep(self.delay_s)
            yield p
        if self.cut:
            raise BrokenStream("stream cut mid-way")
        yield RawResult(text="".join(self.parts), tokens_in=3, tokens_out=len(self.parts))


async def collect(model: Fallback, request: ChatRequest) -> tuple[list[str], ChatResponse]:
    deltas: list[str] = []
    async for chunk in model.stream(request):
        if chunk.response is not None:
            return deltas, chunk.response
        deltas.append(chunk.delta)
    raise AssertionError("no final chunk")


async def test_primary_answers_and_the_fallback_is_invisible() -> None:
    primary, backup = ScriptedModel(LLM, "remote answer"), ScriptedModel(SLM, "local answer")
    fb = Fallback("fb", primary, backup, timeout_s=1.0)
    r = await fb.complete(ChatRequest.of("hi"))
    assert r.text == "remote answer" and r.trace.name == "llm" and r.trace.kind == "model"
    assert backup.calls == []
    assert rescued(r) is None
    deltas, s = await collect(fb, ChatRequest.of("hi"))
    assert deltas == ["remote answer"] and s.text == "remote answer" and backup.calls == []


async def test_an_error_is_answered_by_the_backup_and_the_trace_records_both() -> None:
    primary = ScriptedModel(LLM, "never", fail_first=10**6, error=UpstreamError("boom", 500))
    backup = ScriptedModel(SLM, "local answer")
    fb = Fallback("fb", primary, backup)
    r = await fb.complete(ChatRequest.of("hi"))
    assert r.text == "local answer" and r.model == "slm"
    t = r.trace
    assert (t.name, t.kind, t.mode, t.decision) == ("fb", "strategy", "fallback", "fallback")
    failed, answered = t.children
    assert (failed.name, failed.kind, failed.decision) == ("llm", "model", "failed")
    assert failed.extra["error"] == "UpstreamError" and "boom" in (failed.note or "")
    assert answered.name == "slm" and t.extra == {"fallback_to": "slm"}
    assert r.usage.calls == 1 and r.usage.remote_calls == 0  # only the backup's call counted
    assert rescued(r) == ("slm", "llm failed: UpstreamError: boom")
    assert r.usage.ttft_ms is not None and r.usage.ttft_ms <= r.usage.latency_ms
    # the stream that fails before its first delta is answered by the backup from the start
    deltas, s = await collect(fb, ChatRequest.of("hi"))
    assert deltas == ["local answer"] and s.trace.decision == "fallback"
    assert backup.calls[-1].messages == ChatRequest.of("hi").messages


async def test_a_timeout_is_answered_by_the_backup_within_the_deadline() -> None:
    slow = ScriptedModel(LLM, "late", latency_s=5.0)
    fb = Fallback("fb", slow, ScriptedModel(SLM, "local answer"), timeout_s=0.1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await fb.complete(ChatRequest.of("hi"))
    assert loop.time() - t0 < 2.0
    assert r.text == "local answer"
    assert r.trace.children[0].extra["error"] == "TimeoutError"
    assert r.usage.ttft_ms is not None and r.usage.ttft_ms >= 100  # includes the wait
    slow_stream = Streamer(LLM, ["a", "b"], delay_s=5.0)
    fb2 = Fallback("fb", slow_stream, ScriptedModel(SLM, "local"), timeout_s=0.1)
    deltas, s = await collect(fb2, ChatRequest.of("hi"))
    assert deltas == ["local"] and s.trace.children[0].extra["error"] == "TimeoutError"


async def test_a_stream_broken_mid_way_is_continued_by_the_backup() -> None:
    cut = Streamer(LLM, ["part one "], cut=True)
    backup = ScriptedModel(SLM, "and the rest")
    fb = Fallback("fb", cut, backup)
    deltas, r = await collect(fb, ChatRequest.of("hi"))
    assert deltas == ["part one ", "and the rest"]
    assert r.text == "part one and the rest"
    cont = backup.calls[-1]
    assert [m.role for m in cont.messages] == ["user", "assistant", "user"]
    assert cont.messages[1].content == "part one " and "Continue" in cont.messages[2].content
    assert r.trace.extra == {"fallback_to": "slm", "continued_after_chars": len("part one ")}
    assert r.trace.children[0].extra["error"] == "BrokenStream"
    # TTFT is the primary's first delta, not the backup's
    assert r.usage.ttft_ms is not None and r.usage.ttft_ms <= r.trace.latency_ms


async def test_without_continue_streams_a_cut_stream_fails_with_the_primarys_error() -> None:
    backup = ScriptedModel(SLM, "and the rest")
    fb = Fallback("fb", Streamer(LLM, ["part one "], cut=True), backup, continue_streams=False)
    with pytest.raises(BrokenStream):
        await collect(fb, ChatRequest.of("hi"))
    assert backup.calls == []


async def test_both_failing_raises_a_model_error_naming_both() -> None:
    primary = ScriptedModel(LLM, "x", fail_first=10**6, error=UpstreamError("boom", 500))
    backup = ScriptedModel(SLM, "y", fail_first=10**6, error=UpstreamError("bust", 503))
    fb = Fallback("fb", primary, backup)
    with pytest.raises(ModelError) as info:
        await fb.complete(ChatRequest.of("hi"))
    err = info.value
    assert isinstance(err, FallbackFailed) and not err.timed_out
    assert str(err) == "llm failed: UpstreamError: boom; fallback slm failed: UpstreamError: bust"
    assert isinstance(err.primary_error, UpstreamError) and err.backup_error.status == 503
    with pytest.raises(FallbackFailed):
        await collect(fb, ChatRequest.of("hi"))
    slow = Fallback("fb", primary, ScriptedModel(SLM, "late", latency_s=5.0), backup_timeout_s=0.1)
    with pytest.raises(FallbackFailed) as timed:
        await slow.complete(ChatRequest.of("hi"))
    assert timed.value.timed_out and str(timed.value).endswith("fallback slm timed out")


def test_a_fallback_is_a_strategy_with_its_two_children() -> None:
    primary, backup = ScriptedModel(LLM), ScriptedModel(SLM)
    fb = Fallback("fb", primary, backup)
    assert isinstance(fb, Strategy) and fb.kind == "strategy" and fb.mode == "fallback"
    assert list(fb.children) == [primary, backup] and primary.children == ()
    assert fb.card.is_remote and not fb.card.trusted


async def test_eval_measures_the_rescue_path() -> None:
    from duetto.eval.runner import EvalPlan, evaluate
    from duetto.eval.workload import WorkItem

    slm, llm = ScriptedModel(SLM, "x"), ScriptedModel(LLM, "y")
    down = ScriptedModel(LLM, "y", fail_first=4)  # the remote is down for the first 4 calls
    items = [
        WorkItem(id=f"q{i}", request=ChatRequest.of(f"q{i}"), reference="x", scorer="exact")
        for i in range(6)
    ]
    plan = EvalPlan(slm=slm, llm=llm, strategies={"fb": Fallback("fb", down, slm)})
    report = await evaluate(plan, items)
    fb = sorted((r for r in report["records"] if r["strategy"] == "fb"), key=lambda r: r["item_id"])
    assert {r["mode"] for r in fb} == {"fallback"} and not any(r.get("error") for r in fb)
    # rescued by the SLM ("x", right) while the remote was down, then the remote's "y" (wrong)
    assert sorted(r["quality"] for r in fb) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert sum(r["llm_calls"] for r in fb) == 2
