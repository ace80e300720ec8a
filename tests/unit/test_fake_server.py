"""FakeOpenAIServer (a real loopback HTTP server) and the network guard."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest

from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.models.openai import OpenAIModel
from duetto.testing import FakeOpenAIServer, RemoteNetworkBlocked, blocked_attempts
from duetto.testing.guard import is_loopback_host, no_remote_network
from gateway_kit import sse_events

pytestmark = pytest.mark.timeout(20)


def chat(content: str, **kw: Any) -> dict[str, Any]:
    return {"model": "fake-llm", "messages": [{"role": "user", "content": content}], **kw}


def test_models_and_completion_shapes(fake_openai: FakeOpenAIServer) -> None:
    assert fake_openai.base_url.startswith("http://127.0.0.1:")
    assert fake_openai.base_url.endswith("/v1")
    with httpx.Client(base_url=fake_openai.base_url) as client:
        models = client.get("/models").json()
        assert models["object"] == "list" and models["data"][0]["id"] == "fake-llm"
        body = client.post("/chat/completions", json=chat("hello there")).json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "echo: hello there",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    usage = body["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert fake_openai.counts["requests"] == 2 and fake_openai.counts["chat"] == 1
    assert fake_openai.requests == [chat("hello there")]


def test_stream_chunk_shapes(fake_openai: FakeOpenAIServer) -> None:
    with httpx.Client(base_url=fake_openai.base_url) as client:
        r = client.post(
            "/chat/completions",
            json=chat("a b c", stream=True, stream_options={"include_usage": True}),
        )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: a b c"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finals] == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert fake_openai.counts["streams"] == 1


def test_scripts_truncation_and_errors() -> None:
    def shout(messages: list[dict[str, Any]]) -> str:
        return str(messages[-1]["content"]).upper()

    with FakeOpenAIServer(script=shout) as server, httpx.Client(base_url=server.base_url) as c:
        assert (
            c.post("/chat/completions", json=chat("hi")).json()["choices"][0]["message"]["content"]
            == "HI"
        )
    with (
        FakeOpenAIServer(script={"q": "one two three four"}) as server,
        httpx.Client(base_url=server.base_url) as c,
    ):
        short = c.post("/chat/completions", json=chat("q", max_tokens=2)).json()["choices"][0]
        assert short["message"]["content"] == "one two" and short["finish_reason"] == "length"
        other = c.post("/chat/completions", json=chat("unknown")).json()["choices"][0]
        assert other["message"]["content"] == "echo: unknown"
        bad = c.post("/chat/completions", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        assert c.get("/nope").status_code == 404
        assert server.counts["bad_requests"] == 1


def test_fail_next_is_exact_and_sets_retry_after(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.fail_next(2, status=429, retry_after=1.5)
    with httpx.Client(base_url=fake_openai.base_url) as client:
        statuses = [client.post("/chat/completions", json=chat("x")) for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["retry-after"] == "1.5"
    assert statuses[0].json()["error"]["type"] == "rate_limit_error"
    assert [e.fault for e in fake_openai.exchanges] == ["error", "error", None]


async def _statuses(seed: int, n: int) -> list[int]:
    # sequential requests: the seeded faults then fall on the same request numbers
    async with (
        FakeOpenAIServer(error_rate=0.3, error_status=503, seed=seed) as server,
        httpx.AsyncClient(base_url=server.base_url) as client,
    ):
        return [
            (await client.post("/chat/completions", json=chat("x"))).status_code for _ in range(n)
        ]


async def test_random_faults_are_seeded() -> None:
    first, again, other = await _statuses(7, 40), await _statuses(7, 40), await _statuses(8, 40)
    assert first == again
    assert first != other
    assert set(first) == {200, 503}
    assert 4 <= first.count(503) <= 20  # 30% of 40, loosely


def test_latency_is_injected() -> None:
    with (
        FakeOpenAIServer(latency_s=0.15) as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        client.get("/models")  # connect first: time only the handler
        t0 = time.perf_counter()
        client.post("/chat/completions", json=chat("x"))
        assert time.perf_counter() - t0 >= 0.15


@pytest.mark.parametrize("slow", ["hang", "latency"])
def test_stop_ends_a_slow_request_quickly(slow: str) -> None:
    server = FakeOpenAIServer(hang_s=60, latency_s=60 if slow == "latency" else 0).start()
    if slow == "hang":
        server.fail_next(1, kind="timeout")
    with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server.base_url) as client:
        client.post("/chat/completions", json=chat("x"), timeout=httpx.Timeout(0.2))
    t0 = time.perf_counter()
    server.stop()
    assert time.perf_counter() - t0 < 1.0  # uvicorn alone would wait out its 2 s grace period
    assert server.counts["chat"] == 1


async def test_async_context_manager_and_concurrency() -> None:
    card = ModelCard("llm", location="remote")
    async with FakeOpenAIServer(latency_s=0.05) as server:
        model = OpenAIModel(card, server.base_url, "fake-llm")
        t0 = time.perf_counter()
        answers = await asyncio.gather(
            *(model.complete(ChatRequest.of(f"q{i}")) for i in range(40))
        )
        elapsed = time.perf_counter() - t0
        await model.aclose()
    assert sorted(a.text for a in answers) == sorted(f"echo: q{i}" for i in range(40))
    assert server.counts["chat"] == 40
    assert elapsed < 40 * 0.05 / 2  # served concurrently, not one after another


def test_record_false_keeps_counts_only() -> None:
    with FakeOpenAIServer(record=False) as server, httpx.Client(base_url=server.base_url) as c:
        c.post("/chat/completions", json=chat("x"))
        assert server.exchanges == [] and server.counts["chat"] == 1
        server.reset()
        assert server.counts["chat"] == 0


# ---- the network guard (installed for every test by tests/conftest.py) -----------------


def test_guard_blocks_remote_connect_and_dns() -> None:
    with pytest.raises(RemoteNetworkBlocked, match=r"10\.255\.255\.1"), socket.socket() as s:
        s.connect(("10.255.255.1", 80))
    with pytest.raises(RemoteNetworkBlocked, match=r"api\.openai\.com"):
        socket.getaddrinfo("api.openai.com", 443)
    with pytest.raises(RemoteNetworkBlocked):
        httpx.get("http://example.com/")
    assert len(blocked_attempts(clear=True)) == 3  # cleared so the fixture does not fail us


async def test_guard_error_is_not_hidden_as_model_unavailable() -> None:
    model = OpenAIModel(ModelCard("llm"), "https://api.openai.com/v1", "gpt-4o", retries=3)
    with pytest.raises(RemoteNetworkBlocked):
        await model.complete(ChatRequest.of("hi"))
    await model.aclose()
    assert blocked_attempts(clear=True)


def test_guard_allows_loopback(fake_openai: FakeOpenAIServer) -> None:
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "::1", "localhost", "127.8.9.1"))
    assert not any(is_loopback_host(h) for h in ("10.0.0.1", "example.com", "8.8.8.8"))
    url = fake_openai.base_url.replace("127.0.0.1", "localhost")
    assert httpx.get(url + "/models").status_code == 200
    with no_remote_network():  # nested use keeps the outer guard
        pass
    with pytest.raises(RemoteNetworkBlocked):
        socket.getaddrinfo("example.org", 80)
    blocked_attempts(clear=True)
