"""Leakage measured where it happens (issue 16 item 4): per-tier counts of what reached an
untrusted model, in /metrics, the dashboard data and the stored trace (stream and non-stream);
the sampled re-scan by a second opinion counts residual leaks; a full re-scan queue drops the
sample, never the request."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from duetto.gateway import create_app
from duetto.messages import ChatRequest, Message
from duetto.models.base import ModelCard
from duetto.privacy.leaks import by_tier, residual, sent_entities
from duetto.privacy.rules import rules_detect
from duetto.scoring import pii
from duetto.scoring.pii import Entity
from duetto.testing.scripted import ScriptedModel
from gateway_kit import TinyEngine, asgi_client, gateway_settings

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-leaks"
AUTH = {"Authorization": f"Bearer {KEY}"}
UNTRUSTED = ModelCard("remote-card", location="remote", trusted=False)
SECRET = "password=Tr0ub4dor&3xQ"
EMAIL = "ana.lopez@example.org"
NAME = "Ana Lopez"  # no rule catches a bare name: the second opinion does
TEXT = f"Log in with {SECRET} and mail the report to {EMAIL}, says {NAME}."


@pytest.fixture(autouse=True)
def regex_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap process-wide detector, whatever an earlier test installed (restored after)."""
    monkeypatch.setattr(pii, "_detector", pii.regex_detect)


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path, second_opinion: Any = None, **kw: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    engine = TinyEngine(
        {"slm": ScriptedModel("slm-card", "local"), "llm": ScriptedModel(UNTRUSTED, "remote")}
    )
    app = create_app(engine, gateway_settings(tmp_path, {"alpha": KEY}, **kw))  # type: ignore[arg-type]
    app.state.gateway.leaks.second_opinion = second_opinion
    async with asgi_client(app) as client:
        yield app, client


def body(model: str = "llm", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": TEXT}], **kw}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


def test_the_inline_rules_see_the_secret_and_the_email_not_the_name() -> None:
    found = sent_entities(TEXT, rules_detect)
    assert by_tier(found) == {"secret": 1, "contact": 1}
    # placeholders are never counted
    assert by_tier(sent_entities("mail <EMAIL_ADDRESS_1> now", rules_detect)) == {}
    person = Entity("PERSON", TEXT.index(NAME), TEXT.index(NAME) + len(NAME), NAME)
    assert residual([person, *found], found) == [person]


@pytest.mark.parametrize("stream", [False, True])
async def test_per_tier_counts_in_metrics_dashboard_and_trace(tmp_path: Path, stream: bool) -> None:
    async with gateway(tmp_path) as (_, c):
        r = await c.post("/v1/chat/completions", json=body(stream=stream), headers=AUTH)
        assert r.status_code == 200
        trace_id = r.headers["x-duetto-trace-id"]
        # a trusted model receives the same text: nothing left the device
        assert (await c.post("/v1/chat/completions", json=body("slm"), headers=AUTH)).is_success
        text = (await c.get("/metrics")).text
        for tier, n in (("secret", 1), ("contact", 1), ("identifier", 0)):
            got = metric(text, "duetto_pii_sent_by_tier_total", tier=tier, model="remote-card")
            assert got == n, (tier, got)
        data = (await c.get("/dashboard/data")).json()
        assert data["pii_sent_by_tier"] == {"secret": 1, "contact": 1}
        assert data["pii_sent"] == 2
        stored = (await c.get(f"/v1/traces/{trace_id}", headers=AUTH)).json()
        assert stored["pii_sent_by_tier"] == {"secret": 1, "contact": 1}
        assert stored["trace"]["extra"]["pii_tiers"] == {"secret": 1, "contact": 1}
        assert SECRET not in json.dumps(stored["pii_sent_by_tier"])  # counts only
        assert data["leak_rescans"]["scanned"] == 0  # no second opinion stronger than the rules


async def test_rescan_at_share_one_counts_the_residual_leak(tmp_path: Path) -> None:
    seen: list[str] = []

    def second_opinion(text: str) -> list[Entity]:  # e.g. the NER: finds the name, the rest too
        seen.append(text)
        start = text.find(NAME)
        return [*rules_detect(text), Entity("PERSON", start, start + len(NAME), NAME, 0.85)]

    async with gateway(tmp_path, second_opinion, leak_rescan_share=1.0) as (app, c):
        for stream in (False, True):
            r = await c.post("/v1/chat/completions", json=body(stream=stream), headers=AUTH)
            assert r.status_code == 200
        await app.state.gateway.leaks.drain()
        text = (await c.get("/metrics")).text
        assert metric(text, "duetto_leak_rescans_total", outcome="scanned") == 2
        got = metric(text, "duetto_residual_leaks_total", tier="contact", model="remote-card")
        assert got == 2  # the name, once per request; the secret and e-mail were caught inline
        assert metric(text, "duetto_residual_leaks_total", tier="secret") == 0
        data = (await c.get("/dashboard/data")).json()
        assert data["residual_leaks_by_tier"] == {"contact": 2}
    assert seen == [TEXT, TEXT]  # what was sent, exactly


async def test_a_full_rescan_queue_drops_the_sample_not_the_request(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def stuck(text: str) -> list[Entity]:  # a second opinion slower than the traffic
        await release.wait()
        return []

    async with gateway(tmp_path, stuck, leak_rescan_share=1.0, leak_rescan_queue=1) as (app, c):
        rs = await asyncio.gather(
            *[c.post("/v1/chat/completions", json=body(), headers=AUTH) for _ in range(6)]
        )
        assert [r.status_code for r in rs] == [200] * 6
        text = (await c.get("/metrics")).text
        # one in the worker, one queued, the rest dropped and counted
        assert metric(text, "duetto_leak_rescans_total", outcome="dropped") >= 4
        assert metric(text, "duetto_pii_sent_by_tier_total", tier="secret") == 6  # all counted
        release.set()
        await app.state.gateway.leaks.drain()
        text = (await c.get("/metrics")).text
        scanned = metric(text, "duetto_leak_rescans_total", outcome="scanned")
        dropped = metric(text, "duetto_leak_rescans_total", outcome="dropped")
        assert scanned in (1, 2) and scanned + dropped == 6  # each sample scanned or dropped
        assert await app.state.store.count() == 6  # every request recorded


def test_leaf_keeps_tier_counts_in_its_trace_step() -> None:
    model = ScriptedModel(UNTRUSTED, "ok")
    model.pii_counter = lambda text: {"secret": 1, "contact": 2}
    r = model.complete_sync(ChatRequest(messages=(Message("user", "x"),)))
    assert r.usage.pii_sent == 3 and r.trace.extra["pii_tiers"] == {"secret": 1, "contact": 2}
    model.pii_counter = lambda text: 4  # a plain count still works
    r = model.complete_sync(ChatRequest(messages=(Message("user", "x"),)))
    assert r.usage.pii_sent == 4 and "pii_tiers" not in r.trace.extra
