"""The Chat Completions fields in duetto's core types: message round trips, the request table
both ways (every field), the cache key, streamed tool calls, and OpenAIModel against the fake
upstream (tools, n, logprobs, usage details, extra options)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from duetto.messages import ChatRequest, ContentPart, Message, ToolCall, ToolCallDelta
from duetto.models.base import ModelCard
from duetto.models.openai import OpenAIModel
from duetto.openai_wire import (
    OWN_KEYS,
    Chunks,
    StreamState,
    choice_block,
    choice_of,
    request_options,
    request_payload,
    usage_block,
    usage_details,
)
from duetto.testing import FakeOpenAIServer
from duetto.usage import Usage

pytestmark = pytest.mark.timeout(30)

TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {
        "role": "user",
        "name": "alice",
        "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-1"}},
            {"type": "text", "text": "and add"},
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "3"},
]


def test_messages_round_trip_every_field() -> None:
    msgs = [Message.from_dict(m) for m in MESSAGES]
    assert [m.to_dict() for m in msgs] == MESSAGES
    user = msgs[1]
    assert user.text == "look\nand add" and user.name == "alice"
    assert user.part_types == {"text", "image_url", "input_audio", "file"}
    assert msgs[2].tool_calls == (ToolCall("call_1", "add", "{}"),) and msgs[2].text == ""
    assert msgs[3].role == "tool" and msgs[3].tool_call_id == "call_1"
    # replacing the text keeps the other parts, in place
    redacted = user.with_text("[PERSON]")
    assert [p.type for p in redacted.parts] == ["text", "image_url", "input_audio", "file"]
    assert redacted.text == "[PERSON]" and redacted.name == "alice"
    assert Message("user", "hi").to_dict() == {"role": "user", "content": "hi"}
    assert Message.from_dict({"role": "developer", "content": "x"}).role == "system"
    for bad in (
        {"role": "robot", "content": "x"},
        {"role": "user", "content": [{"type": "video"}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": "u"}]},
        {"role": "tool", "content": "x"},
        {"role": "user", "content": 3},
    ):
        with pytest.raises(ValueError):
            Message.from_dict(bad)
    assert ContentPart.image("u").to_dict() == {"type": "image_url", "image_url": {"url": "u"}}


def test_request_table_round_trips_every_field() -> None:
    req = ChatRequest.from_dicts(
        MESSAGES,
        max_tokens=9,
        temperature=0.5,
        stop=("END",),
        seed=4,
        response_format={"type": "json_object"},
        tools=(TOOL,),
        tool_choice={"type": "function", "function": {"name": "add"}},
        parallel_tool_calls=False,
        n=2,
        logprobs=True,
        top_logprobs=3,
        user="u",
        client_metadata={"k": "v"},
        extra={"reasoning_effort": "low", "service_tier": "flex", "model": "ignored"},
    )
    body = request_payload(req, "m")
    assert body["messages"] == MESSAGES and body["model"] == "m"
    assert body["metadata"] == {"k": "v"} and body["reasoning_effort"] == "low"
    back = ChatRequest.from_dicts(body["messages"], **request_options(body, keep_extra=True))
    assert back == req  # compare=True fields
    assert back.extra == {"reasoning_effort": "low", "service_tier": "flex"}
    assert back.client_metadata == {"k": "v"} and back.response_format == req.response_format
    assert req.forced_tool() == "add" and req.needs_tool_call and req.choices_wanted == 2
    assert "tools" in OWN_KEYS and "reasoning_effort" not in OWN_KEYS
    # nothing set, nothing sent
    bare = ChatRequest.of("x", max_tokens=None, temperature=None, seed=None)
    assert request_payload(bare, "m") == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
    }


def test_cache_key_covers_what_changes_the_answer() -> None:
    base = ChatRequest.of("x")
    assert base.key() == ChatRequest.of("x").key()
    variants = [
        ChatRequest.of("x", tools=(TOOL,)),
        ChatRequest.of("x", tools=(TOOL,), tool_choice="required"),
        ChatRequest.of("x", n=2),
        ChatRequest.of("x", logprobs=True),
        ChatRequest.of("x", logprobs=True, top_logprobs=2),
        ChatRequest.of("x", extra={"top_p": 0.1}),
        ChatRequest(messages=(Message("user", (ContentPart.image("u"),)),)),
    ]
    keys = {base.key(), *(v.key() for v in variants)}
    assert len(keys) == len(variants) + 1
    # who asked does not change the answer
    assert ChatRequest.of("x", user="a", client_metadata={"a": "b"}).key() == base.key()


def test_usage_details_and_choices() -> None:
    block = {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    details = usage_details(block)
    assert details == {"cached_tokens": 3, "reasoning_tokens": 1}
    u = Usage(cached_tokens=3, reasoning_tokens=1) + Usage(cached_tokens=1)
    rendered = usage_block(5, 2, usage_details(u))
    assert rendered["prompt_tokens_details"]["cached_tokens"] == 4
    assert rendered["completion_tokens_details"]["reasoning_tokens"] == 1
    choice = choice_of(
        {
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": MESSAGES[2]["tool_calls"],
            },
            "finish_reason": "tool_calls",
            "logprobs": {"content": [{"token": "a", "logprob": -0.5, "top_logprobs": []}]},
        }
    )
    assert choice.tool_calls[0].name == "add" and choice.logprobs == [-0.5]
    out = choice_block(1, choice, with_logprobs=True)
    assert out["message"]["content"] is None and out["finish_reason"] == "tool_calls"
    assert out["logprobs"]["content"][0]["token"] == "a"
    legacy = choice_of({"message": {"function_call": {"name": "f", "arguments": "{}"}}})
    assert legacy.tool_calls[0].name == "f"


def test_stream_state_assembles_tool_calls_and_choices() -> None:
    w = Chunks("id", "m", include_usage=False)
    events = (
        w.role()
        + w.tool_calls([ToolCallDelta(0, "call_9", "add", "")])
        + w.tool_calls([ToolCallDelta(0, arguments='{"a": 1,')])
        + w.tool_calls([ToolCallDelta(0, arguments=' "b": 2}')])
        + w.delta("other", index=1)
        + w.choice_finish(1, "stop")
        + w.finish("tool_calls")
        + Chunks.DONE
    )
    state = StreamState()
    seen: list[ToolCallDelta] = []
    for line in events.decode().splitlines():
        state.feed(line)
        seen.extend(state.last_tool_calls)
    assert seen[0].id == "call_9" and "".join(d.arguments for d in seen) == '{"a": 1, "b": 2}'
    assert state.first.tool_calls() == (ToolCall("call_9", "add", '{"a": 1, "b": 2}'),)
    assert state.finish == "tool_calls" and state.done
    (other,) = state.choices()
    assert other.text == "other" and other.finish_reason == "stop"


CARD = ModelCard("up", location="remote", trusted=True)


@pytest.fixture(scope="module")
def fake() -> Any:
    with FakeOpenAIServer() as server:
        yield server


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_openai_model_tools_n_logprobs_details(fake: FakeOpenAIServer, stream: bool) -> None:
    model = OpenAIModel(CARD, fake.base_url, "fake-llm", retries=0)
    try:
        req = ChatRequest.of("add 2 and 5", tools=(TOOL,), max_tokens=None, seed=None)

        async def run(r: ChatRequest) -> Any:
            if not stream:
                return await model.complete(r), []
            chunks = [c async for c in model.stream(r)]
            return chunks[-1].response, chunks[:-1]

        r, chunks = await run(req)
        assert r.finish_reason == "tool_calls" and r.text == ""
        assert r.tool_calls[0].name == "add" and json.loads(r.tool_calls[0].arguments) == {
            "a": 2,
            "b": 5,
        }
        if stream:
            assert any(c.tool_calls for c in chunks)
        r, chunks = await run(ChatRequest.of("a b", n=3, logprobs=True, top_logprobs=2))
        assert [c.text for c in r.choices] == ["echo: a b"] * 3
        assert r.token_logprobs is not None and len(r.token_logprobs[0]["top_logprobs"]) == 2
        assert r.logprobs == [-0.1] * 3 and r.usage.tokens_out == 9
        if stream:
            assert sum(len(c.logprobs or ()) for c in chunks) == 3
        sent = fake.requests[-1]
        assert sent["n"] == 3 and sent["top_logprobs"] == 2
    finally:
        await model.aclose()


def test_standin_tool_choice_dialect() -> None:
    from duetto.models.standin.server import standin_tool_choice

    one = {"tools": [TOOL]}
    assert standin_tool_choice(one)["tool_choice"] == "auto"  # OpenAI's default with tools
    named = standin_tool_choice({**one, "tool_choice": "required"})["tool_choice"]
    assert named == {"type": "function", "function": {"name": "add"}}
    two = {"tools": [TOOL, TOOL], "tool_choice": "required"}
    assert standin_tool_choice(two)["tool_choice"] == "auto"
    assert standin_tool_choice({"messages": []}) == {"messages": []}
