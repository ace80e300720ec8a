"""OpenAIModel against FakeOpenAIServer over a real loopback socket (and a few MockTransport
cases for what the fake server cannot produce)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from duetto.answers import estimate_tokens
from duetto.errors import (
    BrokenStream,
    ModelTimeout,
    ModelUnavailable,
    RateLimited,
    UpstreamError,
    UserError,
)
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ModelCard
from duetto.models.openai import OpenAIModel
from duetto.openai_wire import StreamState
from duetto.testing import FakeOpenAIServer

pytestmark = pytest.mark.timeout(20)

CARD = ModelCard(
    "llm", location="remote", trusted=False, price_in_per_mtok=2.0, price_out_per_mtok=8.0
)
ANSWER = "Paris is the capital of France"


def model_for(server: FakeOpenAIServer, **kw: object) -> OpenAIModel:
    kw.setdefault("backoff_s", 0.01)
    return OpenAIModel(CARD, server.base_url, "fake-llm", **kw)  # type: ignore[arg-type]


async def collect(model: OpenAIModel, request: ChatRequest) -> tuple[list[str], ChatResponse]:
    deltas: list[str] = []
    async for chunk in model.stream(request):
        if chunk.response is not None:
            return deltas, chunk.response
        deltas.append(chunk.delta)
    raise AssertionError("stream ended without a final response")


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(script={"capital of France?": ANSWER}) as s:
        yield s


async def test_complete_reads_text_usage_and_accounts(server: FakeOpenAIServer) -> None:
    model = model_for(server)
    request = ChatRequest.of("capital of France?", system="Be brief.", max_tokens=64, stop=("\n",))
    response = await model.complete(request)
    await model.aclose()

    assert response.text == ANSWER
    assert response.finish_reason == "stop"
    assert response.usage.tokens_out == len(ANSWER.split())  # the server's usage block
    assert "tokens_estimated" not in response.trace.extra
    assert response.usage.cost_usd == pytest.approx(
        CARD.cost(response.usage.tokens_in, response.usage.tokens_out)
    )
    assert response.usage.remote_calls == 1 and response.usage.calls == 1
    sent = server.requests[-1]
    assert sent["model"] == "fake-llm" and sent["max_tokens"] == 64 and sent["stop"] == ["\n"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert "stream" not in sent and "logprobs" not in sent


async def test_logprobs_requested_and_parsed(server: FakeOpenAIServer) -> None:
    model = model_for(server, logprobs=True)
    response = await model.complete(ChatRequest.of("capital of France?"))
    _, streamed = await collect(model, ChatRequest.of("capital of France?"))
    await model.aclose()
    assert server.requests[0]["logprobs"] is True
    n = len(ANSWER.split())
    assert response.logprobs == [server.settings.logprob] * n
    assert streamed.logprobs == response.logprobs
    assert response.confidence == pytest.approx(2.718281828**server.settings.logprob)


async def test_stream_deltas_concatenate_with_usage_and_ttft() -> None:
    async with FakeOpenAIServer(script=ANSWER, chunk_delay_s=0.02) as server:
        model = model_for(server)
        deltas, response = await collect(model, ChatRequest.of("anything"))
        await model.aclose()
    assert len(deltas) == len(ANSWER.split())
    assert "".join(deltas) == response.text == ANSWER
    assert response.usage.tokens_out == len(ANSWER.split())
    assert "tokens_estimated" not in response.trace.extra
    body = server.requests[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    ttft = response.usage.ttft_ms
    assert ttft is not None and 0 < ttft < response.usage.latency_ms
    # six chunks 20 ms apart: the first token comes well before the last
    assert response.usage.latency_ms - ttft >= 5 * 20 * 0.8


async def test_bytes_equal_what_the_server_saw(server: FakeOpenAIServer) -> None:
    model = model_for(server)
    response = await model.complete(ChatRequest.of("capital of France?"))
    _, streamed = await collect(model, ChatRequest.of("capital of France?"))
    await model.aclose()
    plain, stream = server.exchanges
    for r, seen in ((response, plain), (streamed, stream)):
        assert r.usage.bytes_sent == seen.request_bytes  # request line + headers + body
        assert r.trace.extra["body_bytes_received"] == seen.response_body_bytes > 0
        assert r.usage.bytes_received > seen.response_body_bytes  # + status line and headers
    assert streamed.usage.bytes_received > response.usage.bytes_received  # SSE framing


async def test_retries_after_500s_and_sums_bytes(server: FakeOpenAIServer) -> None:
    server.fail_next(2, status=500)
    model = model_for(server, retries=2)
    response = await model.complete(ChatRequest.of("capital of France?"))
    await model.aclose()
    assert response.text == ANSWER
    assert response.trace.extra["attempts"] == 3
    assert [e.status for e in server.exchanges] == [500, 500, 200]
    assert response.usage.bytes_sent == sum(e.request_bytes for e in server.exchanges)
    assert response.trace.extra["body_bytes_received"] == sum(
        e.response_body_bytes for e in server.exchanges
    )


async def test_gives_up_after_retries(server: FakeOpenAIServer) -> None:
    server.fail_next(3, status=503)
    model = model_for(server, retries=2)
    with pytest.raises(UpstreamError) as info:
        await model.complete(ChatRequest.of("x"))
    await model.aclose()
    assert info.value.status == 503 and info.value.retryable
    assert "injected failure" in info.value.body
    assert server.counts["chat"] == 3


async def test_stream_retried_when_nothing_was_yielded(server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=502)
    model = model_for(server)
    deltas, response = await collect(model, ChatRequest.of("capital of France?"))
    await model.aclose()
    assert "".join(deltas) == ANSWER
    assert response.trace.extra["attempts"] == 2


async def test_429_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=429, retry_after=0.3)
    model = model_for(server, backoff_s=0.001)
    t0 = time.perf_counter()
    response = await model.complete(ChatRequest.of("capital of France?"))
    elapsed = time.perf_counter() - t0
    await model.aclose()
    assert response.text == ANSWER
    assert elapsed >= 0.3  # the backoff alone would have waited about a millisecond


async def test_retry_after_is_capped(server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=429, retry_after=30)
    model = model_for(server, max_retry_after_s=0.05)
    t0 = time.perf_counter()
    await model.complete(ChatRequest.of("x"))
    await model.aclose()
    assert time.perf_counter() - t0 < 1.0


async def test_persistent_429_raises_rate_limited(server: FakeOpenAIServer) -> None:
    server.fail_next(2, status=429)
    model = model_for(server, retries=1)
    with pytest.raises(RateLimited) as info:
        await model.complete(ChatRequest.of("x"))
    await model.aclose()
    assert info.value.status == 429


async def test_400_is_not_retried(server: FakeOpenAIServer) -> None:
    server.fail_next(1, status=400)
    model = model_for(server, retries=3)
    with pytest.raises(UpstreamError) as info:
        await model.complete(ChatRequest.of("x"))
    await model.aclose()
    assert info.value.status == 400 and not info.value.retryable
    assert not isinstance(info.value, RateLimited)
    assert server.counts["chat"] == 1


async def test_timeout_raises_model_timeout_in_time(server: FakeOpenAIServer) -> None:
    server.fail_next(1, kind="timeout")
    model = model_for(server, timeout=httpx.Timeout(0.3, connect=1.0), retries=0)
    t0 = time.perf_counter()
    with pytest.raises(ModelTimeout):
        await model.complete(ChatRequest.of("x"))
    elapsed = time.perf_counter() - t0
    await model.aclose()
    assert 0.3 <= elapsed < 0.8


async def test_timeout_then_success_counts_both_attempts(server: FakeOpenAIServer) -> None:
    server.fail_next(1, kind="timeout")
    model = model_for(server, timeout=httpx.Timeout(0.2, connect=1.0), retries=1)
    response = await model.complete(ChatRequest.of("capital of France?"))
    await model.aclose()
    assert response.text == ANSWER and response.trace.extra["attempts"] == 2
    assert response.usage.bytes_sent == sum(e.request_bytes for e in server.exchanges)


async def test_cut_stream_raises_broken_stream_without_retry(server: FakeOpenAIServer) -> None:
    server.fail_next(1, kind="broken")
    model = model_for(server, retries=2)
    deltas: list[str] = []
    with pytest.raises(BrokenStream):
        async for chunk in model.stream(ChatRequest.of("capital of France?")):
            deltas.append(chunk.delta)
    await model.aclose()
    assert deltas and ANSWER.startswith("".join(deltas)) and "".join(deltas) != ANSWER
    assert server.counts["chat"] == 1  # part of the answer was out: a retry would repeat it


async def test_cut_body_of_plain_completion_is_retried(server: FakeOpenAIServer) -> None:
    server.fail_next(1, kind="broken")
    model = model_for(server)
    response = await model.complete(ChatRequest.of("capital of France?"))
    await model.aclose()
    assert response.text == ANSWER and response.trace.extra["attempts"] == 2


async def test_connection_refused_is_model_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAIModel(CARD, f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff_s=0.01)
    with pytest.raises(ModelUnavailable):
        await model.complete(ChatRequest.of("x"))
    await model.aclose()


async def test_official_openai_client_works_against_fake_server(
    server: FakeOpenAIServer,
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    completion = await client.chat.completions.create(
        model="fake-llm", messages=[{"role": "user", "content": "capital of France?"}]
    )
    assert completion.choices[0].message.content == ANSWER
    assert completion.usage is not None and completion.usage.completion_tokens == 6
    stream = await client.chat.completions.create(
        model="fake-llm",
        messages=[{"role": "user", "content": "capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == ANSWER and usage is not None and usage.completion_tokens == 6
    models = await client.models.list()
    assert [m.id for m in models.data] == ["fake-llm"]
    await client.close()


# ---- what the fake server does not produce: MockTransport --------------------------------


def mock_model(handler: object, **kw: object) -> OpenAIModel:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    return OpenAIModel(CARD, "http://mock/v1", "m", transport=transport, **kw)  # type: ignore[arg-type]


async def test_api_key_from_env_and_extra_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})

    monkeypatch.setenv("DUETTO_TEST_KEY", "sk-secret")
    model = mock_model(handler, api_key_env="DUETTO_TEST_KEY", headers={"X-Team": "a"})
    response = await model.complete(ChatRequest.of("hello there"))
    await model.aclose()
    assert seen[0].headers["authorization"] == "Bearer sk-secret"
    assert seen[0].headers["x-team"] == "a"
    assert seen[0].headers["accept-encoding"] == "identity"
    assert "sk-secret" not in repr(model)
    # no usage block: a rough estimate, flagged
    assert response.trace.extra["tokens_estimated"] is True
    assert response.usage.tokens_in == estimate_tokens("hello there")


def test_missing_key_env_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUETTO_NO_SUCH_KEY", raising=False)
    with pytest.raises(UserError, match="DUETTO_NO_SUCH_KEY"):
        OpenAIModel(CARD, "http://x/v1", "m", api_key_env="DUETTO_NO_SUCH_KEY")


async def test_stream_without_finish_or_done_is_broken() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "par"}, "finish_reason": None}]}

    def handler(request: httpx.Request) -> httpx.Response:
        body = f"data: {json.dumps(chunk)}\n\n".encode()
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    model = mock_model(handler, retries=0)
    with pytest.raises(BrokenStream):
        await collect(model, ChatRequest.of("x"))
    await model.aclose()


async def test_error_in_a_200_body_is_upstream_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error": {"message": "model overloaded"}})

    model = mock_model(handler, retries=3)
    with pytest.raises(UpstreamError, match="overloaded"):
        await model.complete(ChatRequest.of("x"))
    await model.aclose()


def test_complete_sync_twice_uses_a_client_per_loop(fake_openai: FakeOpenAIServer) -> None:
    model = model_for(fake_openai)
    first = model.complete_sync(ChatRequest.of("one"))
    second = model.complete_sync(ChatRequest.of("two"))
    assert (first.text, second.text) == ("echo: one", "echo: two")


def test_sse_parser_handles_comments_usage_and_done() -> None:
    state = StreamState()
    lines = [
        ": keep-alive",
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
        "",
        'data: {"choices":[{"index":0,"delta":{"content":"Hi"},'
        '"logprobs":{"content":[{"token":"Hi","logprob":-0.5}]}}]}',
        "event: ignored",
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}',
        'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}',
        "data: [DONE]",
    ]
    deltas = [state.feed(line) for line in lines]
    assert [d for d in deltas if d] == ["Hi"]
    assert state.finish == "length" and state.done and state.error is None
    assert state.usage == {"prompt_tokens": 3, "completion_tokens": 1}
    assert state.logprobs == [-0.5]
