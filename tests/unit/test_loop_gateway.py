"""The live loop inside the gateway (in process, ASGI): shadow answers that neither change nor
delay the user's, drops under a burst counted, the feedback endpoint, audits feeding the
controller, gold import, restart survival (SQLite file) and two replicas sharing it all on
PostgreSQL. Nothing here is timed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_gateway_app import AUTH, KEY, LLM_CARD, OTHER, chat, gateway
from test_gateway_store import PG_URL, require_pg
from typer.testing import CliRunner

from duetto.cli.main import app as cli
from duetto.config import AuditConfig, ShadowConfig, parse_config
from duetto.engine import Engine
from duetto.gateway import ApiKey, GatewaySettings, create_app
from duetto.gateway.auth import hash_key
from duetto.messages import ChatRequest
from duetto.testing.scripted import ScriptedModel
from gateway_kit import TinyEngine, asgi_client, gateway_settings

pytestmark = pytest.mark.timeout(120)


def metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    return None


def judge_or(answer: str) -> Any:
    """An LLM that grades when asked to (the pairwise judge), else answers `answer`."""

    def script(request: ChatRequest) -> str:
        system = request.messages[0].content if request.messages[0].role == "system" else ""
        return "Grade: 3" if "You grade answers" in system else answer

    return script


async def test_shadow_answers_are_stored_and_never_change_or_delay_the_users(
    tmp_path: Path,
) -> None:
    slow_slm = ScriptedModel("slm-card", "local answer", latency_s=1.0)
    engine = TinyEngine({"slm": slow_slm, "llm": ScriptedModel(LLM_CARD, "remote answer")})
    shadow = {"llm": ShadowConfig(candidate="slm", share=1.0, judge_share=0.0)}
    async with gateway(engine, tmp_path, shadow=shadow) as (app, c):
        loop = app.state.loop
        r = await c.post("/v1/chat/completions", json=chat("llm", "q1"), headers=AUTH)
        s = await c.post("/v1/chat/completions", json=chat("llm", "q2", stream=True), headers=AUTH)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == (
            "remote answer"
        )
        assert "remote answer" in s.text and s.text.rstrip().endswith("[DONE]")
        # the users have their answers while the candidate is still thinking
        assert await loop.store.shadows() == []
        await loop.drain()
        ids = {x.headers["x-duetto-trace-id"] for x in (r, s)}
        shadows = await loop.store.shadows()
        assert {x.trace_id for x in shadows} == ids
        assert {(x.candidate, x.text, x.kind) for x in shadows} == {
            ("slm-card", "local answer", "shadow")
        }
        t = (await c.get(f"/v1/traces/{r.headers['x-duetto-trace-id']}", headers=AUTH)).json()
        assert t["response"] == "remote answer"
        assert t["loop"]["shadows"][0]["text"] == "local answer"
        [label] = t["loop"]["labels"]
        assert (label["source"], label["candidate"], label["score"]) == ("agreement", "slm-card", 0)
        ex = await loop.store.examples()
        assert {e.candidate_text for e in ex} == {"local answer"}
        assert {e.served_text for e in ex} == {"remote answer"}
        # a raw model served without a shadow config is not shadowed
        await c.post("/v1/chat/completions", json=chat("slm", "q3"), headers=AUTH)
        await loop.drain()
        assert len(await loop.store.shadows()) == 2


def open_ended(judge_share: float) -> tuple[TinyEngine, ScriptedModel, dict[str, ShadowConfig]]:
    """The LLM served with an open-ended answer (agreement cannot label it), the SLM shadowing
    every request, the LLM judging a `judge_share` of the pairs."""
    essay = "A long open-ended answer about the history of the Roman empire and its roads."
    llm = ScriptedModel(LLM_CARD, judge_or(essay))
    engine = TinyEngine({"slm": ScriptedModel("slm-card", "Rome built roads."), "llm": llm})
    return engine, llm, {"llm": ShadowConfig(candidate="slm", share=1.0, judge_share=judge_share)}


async def test_open_ended_pairs_go_to_the_judge_billed(tmp_path: Path) -> None:
    engine, _, shadow = open_ended(judge_share=1.0)
    async with gateway(engine, tmp_path, shadow=shadow) as (app, c):
        r = await c.post("/v1/chat/completions", json=chat("llm", "Tell me of Rome"), headers=AUTH)
        await app.state.loop.drain()
        [label] = await app.state.loop.store.labels()
        assert (label.source, label.score) == ("judge", pytest.approx(0.3))
        assert label.cost_usd > 0 and label.trace_id == r.headers["x-duetto-trace-id"]
        m = (await c.get("/metrics")).text
        assert metric(m, "duetto_loop_judge_calls_total") == 1.0
        assert (metric(m, "duetto_loop_judge_cost_usd_total") or 0) > 0
        assert metric(m, "duetto_loop_labels_total", source="judge") == 1.0


async def test_no_judge_beyond_its_share_even_on_open_ended_pairs(tmp_path: Path) -> None:
    # the judge is an LLM call on the background path: a share of 0 means none at all
    engine, llm, shadow = open_ended(judge_share=0.0)
    async with gateway(engine, tmp_path, shadow=shadow) as (app, c):
        for q in ("Tell me of Rome", "And of Carthage"):
            r = await c.post("/v1/chat/completions", json=chat("llm", q), headers=AUTH)
            assert r.status_code == 200
        await app.state.loop.drain()
        assert len(await app.state.loop.store.shadows()) == 2  # both pairs were shadowed
        assert await app.state.loop.store.labels() == []  # open-ended, and nobody judged them
        assert len(llm.calls) == 2  # the two served answers, no judge call
        assert app.state.loop.stats.judge_calls == 0


async def test_a_burst_of_200_clients_with_a_full_shadow_queue(tmp_path: Path) -> None:
    """Nothing user-facing fails; what the queue could not take is dropped and counted."""
    slow = ScriptedModel("slm-card", "local answer", latency_s=0.2)
    engine = TinyEngine({"slm": slow, "llm": ScriptedModel(LLM_CARD, "remote answer")})
    shadow = {"llm": ShadowConfig(candidate="slm", share=1.0, queue=4, judge_share=0.0)}
    async with gateway(engine, tmp_path, shadow=shadow) as (app, c):
        responses = await asyncio.gather(
            *[
                c.post("/v1/chat/completions", json=chat("llm", f"q{i}"), headers=AUTH)
                for i in range(200)
            ]
        )
        assert [r.status_code for r in responses] == [200] * 200
        assert {r.json()["choices"][0]["message"]["content"] for r in responses} == {
            "remote answer"
        }
        m = (await c.get("/metrics")).text
        offered = metric(m, "duetto_loop_jobs_total", queue="shadow:llm", outcome="offered")
        dropped = metric(m, "duetto_loop_jobs_total", queue="shadow:llm", outcome="dropped")
        assert offered == 200 and dropped is not None and dropped >= 190
        assert metric(m, "duetto_requests_total", strategy="llm", status="ok") == 200
        await app.state.loop.drain()
        assert len(await app.state.loop.store.shadows()) == 200 - dropped
        assert len(await app.state.store.ids()) == 200


async def test_feedback_endpoint(tmp_path: Path) -> None:
    engine = TinyEngine({"slm": ScriptedModel("slm-card", "x"), "llm": ScriptedModel(LLM_CARD)})
    async with gateway(engine, tmp_path) as (app, c):
        r = await c.post("/v1/chat/completions", json=chat("llm", "q"), headers=AUTH)
        tid = r.headers["x-duetto-trace-id"]
        ok = {"trace_id": tid, "score": 0.8, "comment": "close"}
        assert (await c.post("/v1/feedback", json=ok)).status_code == 401
        bad_key = {"Authorization": "Bearer nope"}
        assert (await c.post("/v1/feedback", json=ok, headers=bad_key)).status_code == 401
        other = {"Authorization": f"Bearer {OTHER}"}
        r404 = await c.post("/v1/feedback", json=ok, headers=other)  # not the caller's trace
        assert r404.status_code == 404 and r404.json()["error"]["code"] == "not_found"
        unknown = await c.post("/v1/feedback", json={**ok, "trace_id": "nope"}, headers=AUTH)
        assert unknown.status_code == 404
        for body in (
            {"trace_id": tid},
            {"trace_id": tid, "score": 1.5},
            {"trace_id": tid, "score": "meh"},
            {"trace_id": tid, "score": 1, "stars": 5},
            {"trace_id": "", "score": 1},
        ):
            bad = await c.post("/v1/feedback", json=body, headers=AUTH)
            assert bad.status_code == 400, body
            assert bad.json()["error"]["type"] == "invalid_request_error"
        raw = await c.post(
            "/v1/feedback", content=b"{oops", headers={**AUTH, "content-type": "application/json"}
        )
        assert raw.status_code == 400
        assert (await c.post("/v1/feedback", json=ok, headers=AUTH)).json()["score"] == 0.8
        thumbs = await c.post("/v1/feedback", json={"trace_id": tid, "score": "down"}, headers=AUTH)
        assert thumbs.status_code == 200 and thumbs.json()["score"] == 0.0
        labels = await app.state.loop.store.labels(source="feedback")
        assert [(lb.trace_id, lb.candidate, lb.score) for lb in labels] == [
            (tid, "llm-card", 0.8),
            (tid, "llm-card", 0.0),
        ]
        assert labels[0].detail == {"comment": "close", "key": "alpha"}
        t = (await c.get(f"/v1/traces/{tid}", headers=AUTH)).json()
        assert [x["score"] for x in t["loop"]["labels"]] == [0.8, 0.0]


def route_config() -> Any:
    return parse_config(
        {
            "models": {
                "slm": {"backend": "fake", "script": "small", "card": {"name": "slm-card"}},
                "llm": {
                    "backend": "fake",
                    "script": "large",
                    "card": {"name": "llm-card", "location": "remote", "price_in_per_mtok": 1},
                },
            },
            "strategies": {
                "route": {
                    "mode": "route",
                    "models": ["slm", "llm"],
                    "threshold": 0.5,
                    "target": "quality=0.95",
                    "scorer": {"kind": "length", "scale_chars": 400},
                }
            },
        }
    )


AUDIT = AuditConfig(share=1.0, judge_share=0.0, step=0.25, min_labels=5, refresh_s=3600)
KEYS = [ApiKey("alpha", hash_key(KEY))]


@contextlib.asynccontextmanager
async def replica(db: str, prefix: str = "duetto_") -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = GatewaySettings(db=db, store_prefix=prefix, keys=KEYS, audit=AUDIT)
    app = create_app(Engine(route_config()), settings)
    async with asgi_client(app) as client:
        yield app, client


async def ask(c: httpx.AsyncClient, n: int) -> list[httpx.Response]:
    return [
        await c.post("/v1/chat/completions", json=chat("route", f"q{i}"), headers=AUTH)
        for i in range(n)
    ]


async def test_audits_feed_the_controller_which_moves_toward_the_llm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with replica(str(tmp_path / "gw.db")) as (app, c):
        loop = app.state.loop
        route = app.state.gateway.engine.strategies["route"]
        first = await ask(c, 10)  # short prompts: answered locally, and every one audited
        assert {r.json()["duetto"]["llm_calls"] for r in first} == {0}
        await loop.drain()
        audits = await loop.store.labels(kind="audit")
        assert len(audits) == 10 and {lb.score for lb in audits} == {0.0}  # small != large
        assert {s.kind for s in await loop.store.shadows()} == {"audit"}
        with caplog.at_level(logging.WARNING, logger="duetto.loop"):
            est = (await loop.refresh())["route"]
        assert est.n == 10 and est.below_target and est.local_share == 1.0
        assert route.threshold == pytest.approx(0.75)
        assert "route threshold 0.500 -> 0.750 (toward the LLM)" in caplog.text
        await loop.refresh()  # no new audits since the move: nothing moves
        assert route.threshold == pytest.approx(0.75)
        await ask(c, 5)
        await loop.drain()
        await loop.refresh()
        assert route.threshold == pytest.approx(1.0)
        after = await ask(c, 3)  # the threshold now sends these to the LLM
        assert {r.json()["duetto"]["llm_calls"] for r in after} == {1}
        m = (await c.get("/metrics")).text
        assert metric(m, "duetto_loop_threshold", strategy="route") == 1.0
        assert metric(m, "duetto_loop_threshold_moves", strategy="route") == 2.0
        assert metric(m, "duetto_loop_quality_target", strategy="route") == 0.95
        assert metric(m, "duetto_loop_jobs_total", queue="audit", outcome="done") == 15
        data = (await c.get("/dashboard/data")).json()["loop"]["strategies"]["route"]
        assert data["threshold_moves"] == 2 and data["quality"]["ci_low"] < 0.95
        assert data["llm_share"] == pytest.approx(3 / 18)
        assert (await c.get("/v1/loop", headers=AUTH)).json()["strategies"]["route"][
            "threshold"
        ] == 1.0


async def test_the_loop_survives_a_restart_and_gold_is_imported(tmp_path: Path) -> None:
    db = str(tmp_path / "gw.db")
    async with replica(db) as (app, c):
        ids = [r.headers["x-duetto-trace-id"] for r in await ask(c, 6)]
        await app.state.loop.drain()
        await app.state.loop.refresh()
        assert app.state.gateway.engine.strategies["route"].threshold == pytest.approx(0.75)
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps({"trace_id": ids[0], "answer": "small"})
        + "\n"
        + json.dumps({"request": "  Q1 ", "score": 0.25})
        + "\n"
        + json.dumps({"trace_id": "unknown", "score": 1})
        + "\n"
    )
    out = await asyncio.to_thread(CliRunner().invoke, cli, ["labels", "import", db, str(gold)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"items": 3, "matched": 2, "labels": 3, "unmatched": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"answer": 1}\n')
    failed = await asyncio.to_thread(CliRunner().invoke, cli, ["labels", "import", db, str(bad)])
    assert failed.exit_code == 2
    async with replica(db) as (app, c):  # a new process: same threshold, same labels
        assert app.state.gateway.engine.strategies["route"].threshold == pytest.approx(0.75)
        store = app.state.loop.store
        assert len(await store.labels(kind="audit")) == 6
        gold_labels = await store.labels(source="gold")
        assert sorted((lb.trace_id, lb.candidate, lb.score) for lb in gold_labels) == sorted(
            [(ids[0], "route", 1.0), (ids[0], "llm-card", 0.0), (ids[1], "route", 0.25)]
        )
        ex = {(e.trace_id, e.candidate): e for e in await store.examples()}
        assert ex[(ids[0], "route")].gold == 1.0
        assert ex[(ids[0], "route")].reference_text == "large"  # the audit's LLM answer


async def test_two_replicas_share_labels_and_the_controller_on_postgresql() -> None:
    require_pg()
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    async with replica(PG_URL, prefix) as (a, ca), replica(PG_URL, prefix) as (b, cb):
        try:
            r = (await ask(ca, 6))[0]
            tid = r.headers["x-duetto-trace-id"]
            fb = await cb.post("/v1/feedback", json={"trace_id": tid, "score": 1}, headers=AUTH)
            assert fb.status_code == 200  # replica b labels a trace replica a served
            await a.state.loop.drain()
            t = (await ca.get(f"/v1/traces/{tid}", headers=AUTH)).json()
            assert {x["source"] for x in t["loop"]["labels"]} == {"agreement", "feedback"}
            await a.state.loop.refresh()  # a moves the shared threshold
            route_a = a.state.gateway.engine.strategies["route"]
            route_b = b.state.gateway.engine.strategies["route"]
            assert route_a.threshold == pytest.approx(0.75) and route_b.threshold == 0.5
            await b.state.loop.refresh()  # b takes it from the store, without moving it again
            assert route_b.threshold == pytest.approx(0.75)
            assert b.state.loop.controller.state["route"].moves == 1
            assert len(await b.state.loop.store.labels(kind="audit")) == 6
        finally:
            await a.state.loop.store.drop_all()
            await a.state.billing.drop_all()
            await a.state.store.drop_all()


async def test_requests_the_privacy_policy_protects_stay_out_of_the_loop(tmp_path: Path) -> None:
    from duetto.privacy.policy import PolicyTableSpec

    engine = TinyEngine({"slm": ScriptedModel("slm-card", "x"), "llm": ScriptedModel(LLM_CARD)})
    shadow = {"llm": ShadowConfig(candidate="slm", share=1.0), "slm": ShadowConfig(candidate="llm")}
    privacy = PolicyTableSpec.model_validate({"routes": {"llm": "redact"}}).table()
    async with gateway(engine, tmp_path, shadow=shadow, privacy=privacy) as (app, c):
        r = await c.post(
            "/v1/chat/completions", json=chat("llm", "mail bob@example.com"), headers=AUTH
        )
        assert r.status_code == 200
        await app.state.loop.drain()
        assert await app.state.loop.store.shadows() == []
        assert app.state.loop.snapshot()["skipped_private"] == 1


async def test_a_raw_local_model_is_audited_and_estimated(tmp_path: Path) -> None:
    engine = TinyEngine(
        {"slm": ScriptedModel("slm-card", "42"), "llm": ScriptedModel(LLM_CARD, "#### 42")}
    )
    audit = AuditConfig(share=1.0, judge_share=0.0, target=0.9, refresh_s=3600)
    async with gateway(engine, tmp_path, audit=audit) as (app, c):
        for i in range(4):
            await c.post("/v1/chat/completions", json=chat("slm", f"q{i}"), headers=AUTH)
        await c.post("/v1/chat/completions", json=chat("llm", "q"), headers=AUTH)  # not audited
        await app.state.loop.drain()
        await app.state.loop.refresh()
        loop = (await c.get("/v1/loop", headers=AUTH)).json()
        q = loop["strategies"]["slm"]["quality"]
        assert q["n"] == 4 and q["mean"] == 1.0 and q["target"] == 0.9  # 42 agrees with #### 42
        assert loop["queues"]["audit"]["done"] == 4 and loop["sampled"]["audit"] == 4
        m = (await c.get("/metrics")).text
        assert metric(m, "duetto_loop_quality_estimate", strategy="slm") == 1.0
        assert metric(m, "duetto_loop_llm_share", strategy="llm") == 1.0


async def test_first_stage_shadows_a_strategy_with_its_first_model(tmp_path: Path) -> None:
    shadow = {"route": ShadowConfig(candidate="first_stage", share=1.0, judge_share=0.0)}
    app = create_app(Engine(route_config()), gateway_settings(tmp_path, KEYS, shadow=shadow))
    async with asgi_client(app) as c:
        long = "a long question " * 100  # routed to the LLM
        r = await c.post("/v1/chat/completions", json=chat("route", long), headers=AUTH)
        assert r.json()["choices"][0]["message"]["content"] == "large"
        await app.state.loop.drain()
        [s] = await app.state.loop.store.shadows()
        assert (s.candidate, s.text) == ("slm-card", "small")
    bad = GatewaySettings(
        db=str(tmp_path / "gw2.db"), shadow={"slm": ShadowConfig(candidate="first_stage")}
    )
    app = create_app(Engine(route_config()), bad)
    with pytest.raises(Exception, match="no first stage"):
        async with app.router.lifespan_context(app):
            pass
