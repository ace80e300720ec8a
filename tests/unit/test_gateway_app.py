"""The gateway app in process (ASGI, no socket): auth, validation, fallback, budgets, rate
limits, affinity, traces, exactly-once storage, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from duetto.config import parse_config
from duetto.engine import Engine
from duetto.errors import BrokenStream, ConfigError
from duetto.gateway import ApiKey, create_app
from duetto.gateway.auth import hash_key
from duetto.messages import ChatRequest
from duetto.models.base import ChatModel, LeafModel, ModelCard, RawResult
from duetto.testing.scripted import ScriptedModel
from gateway_kit import TinyEngine, asgi_client, gateway_settings, sse_events

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-alpha"
OTHER = "sk-test-beta"
AUTH = {"Authorization": f"Bearer {KEY}"}
LLM_CARD = ModelCard(
    "llm-card", location="remote", trusted=False, price_in_per_mtok=100.0, price_out_per_mtok=400.0
)


class CutStream(LeafModel):
    """Streams a first part, then the connection breaks."""

    async def _call(self, request: ChatRequest) -> RawResult:
        raise BrokenStream("cut")

    async def _stream_raw(self, request: ChatRequest) -> AsyncIterator[str | RawResult]:
        yield "part one "
        raise BrokenStream("stream cut mid-way")


def chat(model: str = "llm", content: str = "hello", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **kw}


@contextlib.asynccontextmanager
async def gateway(
    engine: Any, tmp_path: Path, **kw: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    keys = kw.pop("keys", {"alpha": KEY, "beta": OTHER})
    app = create_app(engine, gateway_settings(tmp_path, keys, **kw))
    async with asgi_client(app) as client:
        yield app, client


def models(llm: ChatModel | None = None) -> dict[str, ChatModel]:
    return {
        "slm": ScriptedModel("slm-card", "local answer"),
        "llm": llm or ScriptedModel(LLM_CARD, "remote answer"),
    }


async def test_auth_validation_and_models(tmp_path: Path) -> None:
    async with gateway(TinyEngine(models()), tmp_path) as (_, c):
        assert (await c.post("/v1/chat/completions", json=chat())).status_code == 401
        r = await c.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer wrong"}
        )
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = await c.post(
            "/v1/chat/completions", json={"model": "llm", "messages": []}, headers=AUTH
        )
        assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
        r = await c.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={**AUTH, "content-type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
        r = await c.post("/v1/chat/completions", json=chat("gpt-9"), headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        ids = [m["id"] for m in (await c.get("/v1/models", headers=AUTH)).json()["data"]]
        assert ids[:2] == ["slm", "llm"]  # then the embedding model (POST /v1/embeddings)
        assert (await c.get("/health")).json()["status"] == "ok"
        assert (await c.get("/nowhere")).json()["error"]["code"] == "not_found"


async def test_completion_trace_and_exactly_once_storage(tmp_path: Path) -> None:
    async with gateway(TinyEngine(models()), tmp_path) as (app, c):

        async def one(i: int) -> httpx.Response:
            return await c.post(
                "/v1/chat/completions",
                headers=AUTH,
                json=chat("llm" if i % 2 else "slm", f"q{i}", stream=i % 3 == 0),
            )

        responses = await asyncio.gather(*[one(i) for i in range(40)])
        assert all(r.status_code == 200 for r in responses)
        ids = [r.headers["x-duetto-trace-id"] for r in responses]
        store = app.state.store
        assert sorted(await store.ids()) == sorted(ids)
        body = responses[1].json()
        assert body["object"] == "chat.completion" and body["model"] == "llm"
        assert body["choices"][0]["message"]["content"] == "remote answer"
        assert body["duetto"]["llm_calls"] == 1 and body["duetto"]["cost_usd"] > 0
        t = (await c.get(f"/v1/traces/{ids[1]}", headers=AUTH)).json()
        assert t["status"] == "ok" and t["trace"]["name"] == "llm-card"
        assert t["cost_usd"] == pytest.approx(body["duetto"]["cost_usd"])
        assert t["request"]["messages"] == [{"role": "user", "content": "q1"}]
        other = await c.get(f"/v1/traces/{ids[1]}", headers={"Authorization": f"Bearer {OTHER}"})
        assert other.status_code == 404  # a key sees only its own traces
        metrics = (await c.get("/metrics")).text
        assert 'duetto_requests_total{status="ok",strategy="llm"} 20.0' in metrics
        data = (await c.get("/dashboard/data")).json()
        assert data["requests"] == 40 and data["llm_share"] == pytest.approx(0.5)


async def test_fallback_rescues_failures_and_the_trace_says_so(tmp_path: Path) -> None:
    failing = ScriptedModel(LLM_CARD, "never", fail_first=10**6)
    async with gateway(TinyEngine(models(failing)), tmp_path, fallback="slm") as (_, c):
        r = await c.post("/v1/chat/completions", json=chat(), headers=AUTH)
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "local answer"
        assert r.json()["duetto"]["fallback"] is True
        t = (await c.get(f"/v1/traces/{r.headers['x-duetto-trace-id']}", headers=AUTH)).json()
        assert t["fallback"] and t["trace"]["decision"] == "fallback"
        # the rescue is the Fallback strategy's node, answered by the configured fallback
        assert (t["trace"]["name"], t["trace"]["mode"]) == ("gateway", "fallback")
        assert t["answered_by"] == "slm-card" and t["trace"]["extra"]["fallback_to"] == "slm-card"
        assert t["trace"]["children"][0]["decision"] == "failed"
        assert t["trace"]["children"][0]["name"] == "llm-card"
        assert t["primary_error"] == "UpstreamError: scripted failure"  # as before Fallback
        s = await c.post("/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        assert "local answer" in s.text and s.text.rstrip().endswith("[DONE]")
        assert (
            'duetto_fallbacks_total{outcome="rescued",strategy="llm"} 2.0'
            in (await c.get("/metrics")).text
        )


async def test_no_fallback_gives_a_well_formed_502_and_releases_the_budget(
    tmp_path: Path,
) -> None:
    failing = ScriptedModel(LLM_CARD, "never", fail_first=10**6)
    keys = [ApiKey("alpha", hash_key(KEY), budget_usd=1.0)]
    async with gateway(TinyEngine(models(failing)), tmp_path, keys=keys) as (app, c):
        r = await c.post("/v1/chat/completions", json=chat(), headers=AUTH)
        assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
        s = await c.post("/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        assert s.status_code == 502  # failed before the first token: still an HTTP error
        key = await app.state.billing.key("alpha")
        assert key.spent_usd == 0 and key.reserved_usd == pytest.approx(0, abs=1e-12)
        stored = [await app.state.store.get(x.headers["x-duetto-trace-id"]) for x in (r, s)]
        assert [x.status for x in stored] == ["error", "error"]


async def test_a_stream_cut_mid_way_is_continued_by_the_fallback(tmp_path: Path) -> None:
    cut = CutStream(LLM_CARD)
    fallback = ScriptedModel("slm-card", "and the rest")
    engine = TinyEngine({"slm": fallback, "llm": cut})
    async with gateway(engine, tmp_path, fallback="slm") as (app, c):
        r = await c.post("/v1/chat/completions", json=chat(stream=True), headers=AUTH)
        events = sse_events(r.text)
        text = "".join(
            e["choices"][0]["delta"].get("content", "")
            for e in events[:-1]
            if isinstance(e, dict) and e["choices"]
        )
        assert text == "part one and the rest" and events[-1] == "[DONE]"
        assert events[-2]["duetto"]["fallback"] is True
        cont = fallback.calls[-1]
        assert cont.messages[-2].role == "assistant" and cont.messages[-2].content == "part one "
        t = await app.state.store.get(r.headers["x-duetto-trace-id"])
        assert t.body["response"] == text
        assert t.body["trace"]["extra"]["continued_after_chars"] == len("part one ")


async def test_a_slow_model_hits_the_deadline_and_falls_back(tmp_path: Path) -> None:
    slow = ScriptedModel(LLM_CARD, "late", latency_s=5.0)
    async with gateway(
        TinyEngine(models(slow)), tmp_path, fallback="slm", request_timeout_s=0.2
    ) as (_, c):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await c.post("/v1/chat/completions", json=chat(), headers=AUTH)
        assert r.status_code == 200 and loop.time() - t0 < 2.0
        assert r.json()["choices"][0]["message"]["content"] == "local answer"


async def test_budget_reserve_settle_including_streams(tmp_path: Path) -> None:
    # each call costs 1 token in × 100 + 2 tokens out × 400 per Mtok = 9e-4 USD
    keys = [ApiKey("alpha", hash_key(KEY), budget_usd=0.02)]
    async with gateway(TinyEngine(models()), tmp_path, keys=keys) as (app, c):
        r = await c.post("/v1/chat/completions", json=chat(stream=True, max_tokens=4), headers=AUTH)
        assert r.status_code == 200
        key = await app.state.billing.key("alpha")
        assert key.spent_usd == pytest.approx(9e-4) and key.reserved_usd == pytest.approx(0)
        results = await asyncio.gather(
            *[
                c.post(
                    "/v1/chat/completions", json=chat(max_tokens=4, stream=i % 2 == 0), headers=AUTH
                )
                for i in range(60)
            ]
        )
        ok = sum(x.status_code == 200 for x in results)
        refused = [x for x in results if x.status_code == 429]
        # a burst is admitted on worst-case reservations (2.9e-3 each), so about 6 at once
        assert ok + len(refused) == 60 and refused and ok >= 5
        assert refused[0].json()["error"]["code"] == "insufficient_quota"
        key = await app.state.billing.key("alpha")
        assert key.spent_usd <= 0.02 and key.spent_usd == pytest.approx((ok + 1) * 9e-4)
        assert key.reserved_usd == pytest.approx(0, abs=1e-12)


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    keys = [ApiKey("alpha", hash_key(KEY), rpm=2)]
    async with gateway(TinyEngine(models()), tmp_path, keys=keys) as (_, c):
        codes = [
            (await c.post("/v1/chat/completions", json=chat(), headers=AUTH)) for _ in range(3)
        ]
        assert [x.status_code for x in codes] == [200, 200, 429]
        assert codes[2].json()["error"]["code"] == "rate_limit_exceeded"
        assert int(codes[2].headers["retry-after"]) >= 1


async def test_session_affinity_keeps_follow_ups_on_the_model_that_answered(
    tmp_path: Path,
) -> None:
    cfg = parse_config(
        {
            "models": {
                "slm": {"backend": "fake", "script": "small", "card": {"name": "slm-card"}},
                "llm": {
                    "backend": "fake",
                    "script": "large",
                    "card": {"name": "llm-card", "location": "remote"},
                },
            },
            "strategies": {
                "route": {
                    "mode": "route",
                    "models": ["slm", "llm"],
                    "threshold": 0.5,
                    "scorer": {"kind": "length", "scale_chars": 50},
                }
            },
        }
    )
    long_turn = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "small"},
        {"role": "user", "content": "and now a much longer follow-up question " * 3},
    ]
    async with gateway(Engine(cfg), tmp_path, affinity=True) as (_, c):
        first = await c.post(
            "/v1/chat/completions",
            headers={**AUTH, "x-duetto-session": "s1"},
            json=chat("route", "hi"),
        )
        assert first.json()["choices"][0]["message"]["content"] == "small"
        # the router reads the whole conversation: without a session, the long one goes large
        r = await c.post(
            "/v1/chat/completions", headers=AUTH, json={"model": "route", "messages": long_turn}
        )
        assert r.json()["choices"][0]["message"]["content"] == "large"
        pinned = await c.post(
            "/v1/chat/completions",
            headers={**AUTH, "x-duetto-session": "s1"},
            json={"model": "route", "messages": long_turn},
        )
        assert pinned.json()["choices"][0]["message"]["content"] == "small"
        by_user = await c.post(
            "/v1/chat/completions",
            headers=AUTH,
            json={"model": "route", "messages": long_turn, "user": "u2"},
        )
        assert by_user.json()["choices"][0]["message"]["content"] == "large"


async def test_stored_copy_is_redacted_when_the_policy_says_so(tmp_path: Path) -> None:
    async with gateway(TinyEngine(models()), tmp_path, redact_store=True) as (app, c):
        r = await c.post(
            "/v1/chat/completions", headers=AUTH, json=chat(content="write to alice@example.com")
        )
        stored = await app.state.store.get(r.headers["x-duetto-trace-id"])
        text = json.dumps(stored.to_dict())
        assert "alice@example.com" not in text and "<EMAIL_ADDRESS_1>" in text


async def test_an_uncalibrated_strategy_refuses_to_start(tmp_path: Path) -> None:
    """Issue 14: no more serving an arbitrary adaptive threshold from 0.5 (see
    tests/unit/test_calibration_reload.py for the shadow exception and the shipped defaults)."""
    cfg = parse_config(
        {
            "models": {
                "slm": {"backend": "fake", "script": "small", "card": {"name": "slm-card"}},
                "llm": {
                    "backend": "fake",
                    "script": "large",
                    "card": {"name": "llm-card", "location": "remote"},
                },
            },
            "target": "llm_share=0.3",
            "strategies": {
                "route": {
                    "mode": "route",
                    "models": ["slm", "llm"],
                    "scorer": {"kind": "length", "scale_chars": 50},
                }
            },
        }
    )
    engine = Engine(cfg)
    with pytest.raises(ConfigError, match="'route' has neither a threshold nor a calibration"):
        async with gateway(engine, tmp_path):
            pass
