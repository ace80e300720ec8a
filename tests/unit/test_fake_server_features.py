"""FakeOpenAIServer as a full OpenAI upstream: tools, JSON schema, n, logprobs, parts, usage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from duetto.testing import FakeOpenAIServer
from duetto.testing.instances import instance_for, schema_in
from gateway_kit import sse_events

pytestmark = pytest.mark.timeout(30)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "days", "unit"],
        },
    },
}
MAGIC = {
    "type": "function",
    "function": {
        "name": "magic_function",
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "integer"}},
            "required": ["input"],
        },
    },
}


def chat(content: Any, **kw: Any) -> dict[str, Any]:
    return {"model": "fake-llm", "messages": [{"role": "user", "content": content}], **kw}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with FakeOpenAIServer() as server, httpx.Client(base_url=server.base_url) as c:
        yield c


def test_tools_give_a_tool_call_with_arguments_valid_for_the_schema(client: httpx.Client) -> None:
    body = client.post(
        "/chat/completions",
        json=chat("What is the value of magic_function(3)?", tools=[WEATHER, MAGIC]),
    ).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "magic_function"  # named in the prompt
    assert json.loads(call["function"]["arguments"]) == {"input": 3}
    forced = client.post(
        "/chat/completions",
        json=chat(
            "Weather in 'Paris' for 2 days",
            tools=[MAGIC, WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        ),
    ).json()
    args = json.loads(forced["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    jsonschema.validate(args, WEATHER["function"]["parameters"])  # type: ignore[index]
    assert args == {"city": "Paris", "days": 2, "unit": "c"}


def test_text_after_a_tool_result_and_with_tool_choice_none(client: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "magic_function(3)?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "magic_function", "arguments": '{"input": 3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]
    body = client.post(
        "/chat/completions", json={"model": "m", "messages": messages, "tools": [MAGIC]}
    ).json()
    message = body["choices"][0]["message"]
    assert message["content"] == "the tool returned: 5" and "tool_calls" not in message
    none = client.post("/chat/completions", json=chat("hi", tools=[MAGIC], tool_choice="none"))
    assert none.json()["choices"][0]["message"]["content"] == "echo: hi"


def test_json_schema_and_json_object(client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 5},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "pet": {"anyOf": [{"$ref": "#/$defs/Pet"}, {"type": "null"}]},
        },
        "required": ["name", "age", "tags", "pet"],
        "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}}},
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "P", "schema": schema, "strict": True}}
    body = client.post("/chat/completions", json=chat("Jason is 25", response_format=fmt)).json()
    value = json.loads(body["choices"][0]["message"]["content"])
    jsonschema.validate(value, schema)
    assert value["age"] == 25 and value["pet"] == {"kind": "cat"}
    # json_object: the first schema written in the prompt (instructor's JSON mode)
    prompt = "Return JSON matching: " + json.dumps(schema) + " for Jason, 25"
    obj = client.post(
        "/chat/completions", json=chat(prompt, response_format={"type": "json_object"})
    ).json()
    jsonschema.validate(json.loads(obj["choices"][0]["message"]["content"]), schema)
    plain = client.post("/chat/completions", json=chat(prompt)).json()
    text = plain["choices"][0]["message"]["content"]
    assert text.startswith("```json\n") and text.endswith("\n```")
    jsonschema.validate(json.loads(text[8:-4]), schema)


def test_n_logprobs_and_usage_details(client: httpx.Client) -> None:
    body = client.post(
        "/chat/completions", json=chat("a b", n=2, logprobs=True, top_logprobs=2)
    ).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert {c["message"]["content"] for c in body["choices"]} == {"echo: a b"}
    entry = body["choices"][1]["logprobs"]["content"][0]
    assert entry["token"] == "echo:" and [t["token"] for t in entry["top_logprobs"]] == [
        "echo:",
        "echo:~1",
    ]
    usage = body["usage"]
    assert usage["completion_tokens"] == 6  # 3 tokens x 2 choices
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


def test_streamed_tool_call_logprobs_and_choices(client: httpx.Client) -> None:
    r = client.post(
        "/chat/completions",
        json=chat(
            "magic_function(7)",
            tools=[MAGIC],
            tool_choice="required",
            stream=True,
            stream_options={"include_usage": True},
        ),
    )
    chunks = sse_events(r.text)
    assert chunks[-1] == "[DONE]" and chunks[-2]["usage"]["completion_tokens"] > 0
    pieces = [
        tc for c in chunks[:-1] for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or ()
    ]
    assert pieces[0]["id"] and pieces[0]["function"]["name"] == "magic_function"
    assert all("id" not in p for p in pieces[1:])
    args = "".join(p["function"]["arguments"] for p in pieces)
    assert json.loads(args) == {"input": 7}
    finishes = [ch["finish_reason"] for c in chunks[:-1] for ch in c["choices"]]
    assert "tool_calls" in finishes
    r = client.post("/chat/completions", json=chat("x y", stream=True, n=2, logprobs=True))
    chunks = sse_events(r.text)
    by_index: dict[int, str] = {}
    lps = 0
    for c in chunks[:-1]:
        for ch in c["choices"]:
            by_index[ch["index"]] = by_index.get(ch["index"], "") + (
                ch["delta"].get("content") or ""
            )
            lps += len((ch.get("logprobs") or {}).get("content") or ())
    assert by_index == {0: "echo: x y", 1: "echo: x y"} and lps == 6


def test_content_parts_are_accepted_or_refused_like_a_real_upstream() -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    with FakeOpenAIServer() as vision, httpx.Client(base_url=vision.base_url) as c:
        body = c.post("/chat/completions", json=chat(parts)).json()
        assert body["choices"][0]["message"]["content"] == "echo: what is this?"
        assert vision.requests[0]["messages"][0]["content"][1]["type"] == "image_url"
        bad = c.post("/chat/completions", json=chat([{"type": "video", "video": {}}]))
        assert bad.status_code == 400 and "video" in bad.json()["error"]["message"]
        assert c.post("/chat/completions", json=chat("x", n=0)).status_code == 400
        assert c.post("/chat/completions", json=chat("x", tools=[{"x": 1}])).status_code == 400
    with (
        FakeOpenAIServer(parts=("text",)) as text_only,
        httpx.Client(base_url=text_only.base_url) as c,
    ):
        r = c.post("/chat/completions", json=chat(parts))
        assert r.status_code == 400 and "image_url" in r.json()["error"]["message"]


def test_custom_tool_arguments() -> None:
    def args(name: str, params: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"input": 42, "tool": name}

    with FakeOpenAIServer(tool_arguments=args) as s, httpx.Client(base_url=s.base_url) as c:
        body = c.post("/chat/completions", json=chat("go", tools=[MAGIC])).json()
    fn = body["choices"][0]["message"]["tool_calls"][0]["function"]
    assert json.loads(fn["arguments"]) == {"input": 42, "tool": "magic_function"}


def test_instances_cover_common_schema_shapes() -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "score": {"type": "number", "exclusiveMinimum": 10},
            "ok": {"type": ["boolean", "null"]},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"const": "x"}]},
            "code": {"type": "string", "minLength": 30},
        },
    }
    value = instance_for(schema, "score 3")
    jsonschema.validate(value, schema)
    assert schema_in(["no schema here", 'see {"properties": {"a": {}}} ok']) == {
        "properties": {"a": {}}
    }
    assert schema_in(["{not json"]) is None
