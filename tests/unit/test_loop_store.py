"""The loop's tables on SQLite and PostgreSQL: shadows, labels, examples joined with the traces,
state compare-and-set, and what survives a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_gateway_store import db_url  # tests/unit is on the path (rootdir prepend)

from duetto.loop.store import Label, LoopStore, Shadow
from duetto.store import TraceRecord, TraceStore


@pytest.fixture(params=["sqlite", "postgresql"])
async def loop_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LoopStore]:
    url, prefix = db_url(request.param, tmp_path)
    traces = await TraceStore(url, prefix=prefix).start()
    ls = await LoopStore(traces).start()
    try:
        yield ls
    finally:
        if traces.dialect == "postgresql":
            await ls.drop_all()
            await traces.drop_all()
        await traces.close()


def trace(
    tid: str, served_by: str = "llm", response: str = "42", created: float = 1.0
) -> TraceRecord:
    return TraceRecord(
        id=tid,
        model="cascade",
        status="ok",
        answered_by=served_by,
        created=created,
        body={"request": {"messages": [{"role": "user", "content": "6*7?"}]}, "response": response},
    )


async def test_shadows_labels_and_examples(loop_store: LoopStore) -> None:
    await loop_store.traces.append(trace("t1"))
    await loop_store.traces.append(trace("t2", served_by="slm", response="B", created=2.0))
    await loop_store.add_shadow(
        Shadow("t1", "slm", "41", answer={"confidence": 0.3, "logprob": -0.9}, cost_usd=0.0)
    )
    await loop_store.add_label(
        Label("t1", "slm", "agreement", 0.0, strategy="cascade", kind="shadow")
    )
    await loop_store.add_label(Label("t1", "slm", "judge", 0.2, cost_usd=0.001, kind="shadow"))
    await loop_store.add_label(Label("t1", "slm", "gold", 0.0, kind="shadow"))
    await loop_store.add_shadow(Shadow("t2", "llm", "B", kind="audit"))
    await loop_store.add_label(Label("t2", "slm", "feedback", 1.0))
    await loop_store.add_label(Label("gone", "slm", "feedback", 1.0))  # trace not stored

    assert [lb.source for lb in await loop_store.labels()] == [
        "agreement",
        "judge",
        "gold",
        "feedback",
        "feedback",
    ]
    assert [lb.trace_id for lb in await loop_store.labels(source="feedback")] == ["t2", "gone"]
    assert len(await loop_store.shadows()) == 2
    assert [s.kind for s in await loop_store.shadows(kind="audit")] == ["audit"]

    ex = await loop_store.examples()
    assert [(e.trace_id, e.candidate) for e in ex] == [("t1", "slm"), ("t2", "slm")]
    first, second = ex
    assert first.candidate_text == "41" and first.served_text == "42"
    assert first.reference_text == "42" and first.served_by == "llm"
    assert first.candidate_confidence == 0.3 and first.candidate_logprob == -0.9
    assert first.labels == [("agreement", 0.0, 0.0), ("judge", 0.2, 0.001)]
    assert first.gold == 0.0 and first.score == 0.0
    assert first.request["messages"][0]["content"] == "6*7?"
    assert second.candidate_text == "B" and second.reference_text == "B"  # the audit's answer
    assert second.score == 1.0 and second.gold is None

    got = await loop_store.for_trace("t1")
    assert len(got["shadows"]) == 1 and len(got["labels"]) == 3


async def test_bad_labels_are_refused() -> None:
    with pytest.raises(ValueError):
        Label("t", "m", "vibes", 1.0)
    with pytest.raises(ValueError):
        Label("t", "m", "feedback", 1.5)


async def test_state_compare_and_set(loop_store: LoopStore) -> None:
    assert await loop_store.get_state("k") is None
    assert await loop_store.put_state("k", {"t": 0.5}, None)
    assert not await loop_store.put_state("k", {"t": 0.6}, None)  # exists already
    assert await loop_store.get_state("k") == (1, {"t": 0.5})
    assert await loop_store.put_state("k", {"t": 0.6}, 1)
    assert not await loop_store.put_state("k", {"t": 0.7}, 1)  # a stale writer loses
    assert await loop_store.get_state("k") == (2, {"t": 0.6})


async def test_survives_a_restart(tmp_path: Path) -> None:
    url = str(tmp_path / "loop.db")
    traces = await TraceStore(url).start()
    ls = await LoopStore(traces).start()
    await traces.append(trace("t1"))
    await ls.add_label(Label("t1", "llm", "feedback", 0.5))
    await ls.put_state("c", {"threshold": 0.7}, None)
    await traces.close()

    traces = await TraceStore(url).start()
    ls = await LoopStore(traces).start()
    assert await traces.version("loop") == 1
    assert [lb.score for lb in await ls.labels()] == [0.5]
    assert (await ls.get_state("c")) == (1, {"threshold": 0.7})
    assert len(await ls.examples()) == 1
    await traces.close()
