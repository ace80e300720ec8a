"""The whole Chat Completions request and response through the gateway (ASGI, in process) in
front of the fake OpenAI upstream (a real loopback server): tools, tool results, streamed
tool-call deltas, n, logprobs, content parts, usage details, unknown fields forwarded, nothing
invented, 400s for malformed input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from duetto.gateway import create_app
from duetto.models.base import ModelCard
from duetto.models.openai import OpenAIModel
from duetto.testing import FakeOpenAIServer
from gateway_kit import TinyEngine, asgi_client, gateway_settings, sse_events

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-wire"
AUTH = {"Authorization": f"Bearer {KEY}"}
# the fake upstream takes everything: its card says so (routing respects capabilities)
CARD = ModelCard(
    "upstream",
    location="remote",
    trusted=True,
    tools=True,
    json_schema=True,
    vision=True,
    audio=True,
    logprobs=True,
)
MAGIC = {
    "type": "function",
    "function": {
        "name": "magic_function",
        "description": "applies magic",
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "integer"}},
            "required": ["input"],
        },
    },
}
IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYAAAAAMAA"
    "SsJTYQAAAAASUVORK5CYII="
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
async def gw(upstream: FakeOpenAIServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    upstream.reset()
    model = OpenAIModel(CARD, upstream.base_url, "fake-llm", retries=0)
    app = create_app(TinyEngine({"llm": model}), gateway_settings(tmp_path, {"a": KEY}))  # type: ignore[arg-type]
    async with asgi_client(app) as client:
        yield client
    await model.aclose()


def chat(content: Any = "hello", **kw: Any) -> dict[str, Any]:
    return {"model": "llm", "messages": [{"role": "user", "content": content}], **kw}


async def test_tool_call_round_trip_forwards_everything_and_invents_nothing(
    gw: httpx.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    r = await gw.post(
        "/v1/chat/completions",
        headers=AUTH,
        json=chat(
            "What is magic_function(3)?",
            tools=[MAGIC],
            tool_choice="auto",
            parallel_tool_calls=False,
            reasoning_effort="low",
            user="u-1",
            metadata={"team": "x"},
        ),
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "magic_function"
    assert json.loads(call["function"]["arguments"]) == {"input": 3}
    sent = upstream.requests[-1]
    assert sent["tools"] == [MAGIC] and sent["tool_choice"] == "auto"
    assert sent["parallel_tool_calls"] is False and sent["reasoning_effort"] == "low"
    assert sent["user"] == "u-1" and sent["metadata"] == {"team": "x"}
    for invented in ("temperature", "seed", "max_tokens", "n", "logprobs"):
        assert invented not in sent, invented
    # the next turn: the assistant's call and the tool result reach the upstream intact
    history = [
        {"role": "user", "content": "What is magic_function(3)?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "5"},
    ]
    r = await gw.post(
        "/v1/chat/completions",
        headers=AUTH,
        json={"model": "llm", "messages": history, "tools": [MAGIC]},
    )
    assert r.json()["choices"][0]["message"]["content"] == "the tool returned: 5"
    assert upstream.requests[-1]["messages"] == history


async def test_streamed_tool_call_deltas(gw: httpx.AsyncClient) -> None:
    r = await gw.post(
        "/v1/chat/completions",
        headers=AUTH,
        json=chat(
            "magic_function(7)",
            tools=[MAGIC],
            tool_choice={"type": "function", "function": {"name": "magic_function"}},
            stream=True,
            stream_options={"include_usage": True},
        ),
    )
    chunks = sse_events(r.text)
    assert chunks[-1] == "[DONE]"
    pieces = [
        tc for c in chunks[:-1] for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or ()
    ]
    assert pieces[0]["id"].startswith("call_") and pieces[0]["type"] == "function"
    assert pieces[0]["function"]["name"] == "magic_function"
    assert json.loads("".join(p["function"]["arguments"] for p in pieces)) == {"input": 7}
    finishes = [ch["finish_reason"] for c in chunks[:-1] for ch in c["choices"]]
    assert finishes[-1] == "tool_calls"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] > 0


async def test_n_logprobs_and_usage_details(gw: httpx.AsyncClient) -> None:
    r = await gw.post(
        "/v1/chat/completions", headers=AUTH, json=chat("a b", n=2, logprobs=True, top_logprobs=2)
    )
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert all(c["message"]["content"] == "echo: a b" for c in body["choices"])
    entries = body["choices"][1]["logprobs"]["content"]
    assert [e["token"] for e in entries] == ["echo:", " a", " b"]
    assert len(entries[0]["top_logprobs"]) == 2
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert "reasoning_tokens" in body["usage"]["completion_tokens_details"]
    plain = (await gw.post("/v1/chat/completions", headers=AUTH, json=chat("a"))).json()
    assert plain["choices"][0]["logprobs"] is None  # not asked for: not sent
    # streamed: n=2 and logprobs
    r = await gw.post(
        "/v1/chat/completions",
        headers=AUTH,
        json=chat("a b", n=2, logprobs=True, stream=True),
    )
    text: dict[int, str] = {}
    tokens = 0
    for c in sse_events(r.text)[:-1]:
        for ch in c["choices"]:
            text[ch["index"]] = text.get(ch["index"], "") + (ch["delta"].get("content") or "")
            tokens += len((ch.get("logprobs") or {}).get("content") or ())
    assert text == {0: "echo: a b", 1: "echo: a b"} and tokens == 6


async def test_image_and_file_parts_reach_an_upstream_that_takes_them(
    gw: httpx.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    parts = [
        {"type": "text", "text": "what is in this image?"},
        {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
        },
    ]
    body = {"model": "llm", "messages": [{"role": "user", "content": parts, "name": "alice"}]}
    r = await gw.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: what is in this image?"
    sent = upstream.requests[-1]["messages"][0]
    assert sent["content"] == parts and sent["name"] == "alice"


async def test_json_schema_is_forwarded_and_answered(gw: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "N", "schema": schema, "strict": True}}
    r = await gw.post("/v1/chat/completions", headers=AUTH, json=chat("4", response_format=fmt))
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"n": 4}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (chat(tools=[{"type": "function"}]), "tools"),
        (chat(tools=[{"type": "function", "function": {"name": "bad name!"}}]), "tools"),
        (chat(tool_choice="auto"), "tool_choice"),
        (
            chat(tools=[MAGIC], tool_choice={"type": "function", "function": {"name": "other"}}),
            "tool_choice",
        ),
        (chat([{"type": "video", "video": {}}]), "messages"),
        (chat([{"type": "image_url", "image_url": {}}]), "messages"),
        (chat(n=0), "n"),
        (chat(top_logprobs=2), "top_logprobs"),
        (
            {"model": "llm", "messages": [{"role": "tool", "content": "5"}]},
            "tool_call_id",
        ),
    ],
)
async def test_malformed_requests_get_openai_400s(
    gw: httpx.AsyncClient, body: dict[str, Any], needle: str
) -> None:
    r = await gw.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and needle in error["message"]


async def test_the_openai_client_round_trip(gw: httpx.AsyncClient) -> None:
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key=KEY, http_client=gw)
    tools = [MAGIC]
    first = await client.chat.completions.create(
        model="llm",
        messages=[{"role": "user", "content": "magic_function(3)"}],
        tools=tools,  # type: ignore[arg-type]
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "magic_function"  # type: ignore[union-attr]
    stream = await client.chat.completions.create(
        model="llm",
        messages=[
            {"role": "user", "content": "magic_function(3)"},
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "5"},
        ],
        tools=tools,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == "the tool returned: 5" and usage is not None and usage.total_tokens > 0
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="llm", messages=[{"role": "user", "content": "x"}], n=0
        )


@pytest.mark.parametrize(
    "message",
    [
        {"role": "tool", "content": "5", "tool_call_id": None},
        {"role": "tool", "content": "5", "tool_call_id": ""},
        {"role": "function", "content": "5"},  # legacy: a function message without its name
    ],
)
async def test_a_message_the_core_types_refuse_is_a_400_not_a_500(
    gw: httpx.AsyncClient, message: dict[str, Any]
) -> None:
    """The fuzz suite found a legacy function message the schema admitted and Message.from_dict
    refused: a 500. Whatever the core types refuse is the client's error."""
    body = {"model": "llm", "messages": [{"role": "user", "content": "hi"}, message]}
    r = await gw.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
