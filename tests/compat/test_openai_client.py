"""The official `openai` client, unmodified: the features an application uses, each run
directly against the upstream and through duetto (raw model name, and a route strategy)."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from compat.env import CompatEnv, Target

pytestmark = pytest.mark.timeout(60)

HELLO = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
# a 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def client(t: Target) -> openai.OpenAI:
    return openai.OpenAI(base_url=t.base_url, api_key=t.api_key, max_retries=0, timeout=20)


def sent(env: CompatEnv) -> dict[str, Any]:
    """The body the upstream received for the last chat request (from duetto or the client)."""
    bodies = env.upstream.requests
    assert bodies, "the upstream received no chat request"
    return bodies[-1]


def test_plain_completion(target: Target) -> None:
    r = client(target).chat.completions.create(model=target.model, messages=HELLO)
    assert r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens > 0


def test_streaming_with_usage(target: Target) -> None:
    chunks = list(
        client(target).chat.completions.create(
            model=target.model,
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0


def test_stop(target: Target, env: CompatEnv) -> None:
    r = client(target).chat.completions.create(model=target.model, messages=HELLO, stop=["there"])
    assert r.choices[0].message.content == "echo: hello "
    assert sent(env)["stop"] == ["there"]


def test_max_completion_tokens(target: Target, env: CompatEnv) -> None:
    r = client(target).chat.completions.create(
        model=target.model, messages=HELLO, max_completion_tokens=2
    )
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "echo: hello"
    body = sent(env)
    assert 2 in (body.get("max_completion_tokens"), body.get("max_tokens"))


def test_unset_options_not_invented(target: Target, env: CompatEnv) -> None:
    client(target).chat.completions.create(model=target.model, messages=HELLO)
    body = sent(env)
    invented = {k: body[k] for k in ("temperature", "seed", "max_tokens", "top_p") if k in body}
    assert invented == {}


def test_seed_user_metadata_forwarded(target: Target, env: CompatEnv) -> None:
    client(target).chat.completions.create(
        model=target.model,
        messages=HELLO,
        seed=7,
        temperature=0.3,
        user="user-42",
        metadata={"app": "compat"},
        store=False,
    )
    body = sent(env)
    assert (body.get("seed"), body.get("temperature")) == (7, 0.3)
    assert body.get("user") == "user-42"
    assert body.get("metadata") == {"app": "compat"}


def test_reasoning_effort_and_unknown_fields_forwarded(target: Target, env: CompatEnv) -> None:
    client(target).chat.completions.create(
        model=target.model,
        messages=HELLO,
        reasoning_effort="low",
        extra_body={"x_vendor_option": {"a": 1}},
    )
    body = sent(env)
    assert body.get("reasoning_effort") == "low"
    assert body.get("x_vendor_option") == {"a": 1}


def test_message_name_and_developer_role(target: Target, env: CompatEnv) -> None:
    r = client(target).chat.completions.create(
        model=target.model,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hello there", "name": "alice"},
        ],
    )
    assert r.choices[0].message.content == "echo: hello there"
    user = sent(env)["messages"][-1]
    assert user.get("name") == "alice"


def test_n_2(target: Target) -> None:
    r = client(target).chat.completions.create(model=target.model, messages=HELLO, n=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content for c in r.choices)


def test_logprobs(target: Target) -> None:
    r = client(target).chat.completions.create(
        model=target.model, messages=HELLO, logprobs=True, top_logprobs=2
    )
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content
    assert "".join(t.token for t in lp.content) == r.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 for t in lp.content)


def test_streamed_logprobs(target: Target) -> None:
    chunks = list(
        client(target).chat.completions.create(
            model=target.model, messages=HELLO, logprobs=True, stream=True
        )
    )
    tokens = [
        t.token
        for c in chunks
        if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content
        for t in c.choices[0].logprobs.content
    ]
    assert "".join(tokens) == "echo: hello there"


def _weather_call(t: Target, **kw: Any) -> Any:
    return client(t).chat.completions.create(
        model=t.model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        **kw,
    )


def test_tools_round_trip(target: Target, env: CompatEnv) -> None:
    first = _weather_call(target)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    args = json.loads(calls[0].function.arguments)
    assert isinstance(args.get("city"), str)
    assert sent(env)["tools"] == [WEATHER]
    second = client(target).chat.completions.create(
        model=target.model,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21 C"},
        ],
    )
    assert second.choices[0].finish_reason == "stop"
    assert "sunny, 21 C" in (second.choices[0].message.content or "")
    history = sent(env)["messages"]
    assert history[1]["tool_calls"][0]["id"] == calls[0].id
    assert history[2] == {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21 C"}


def test_tool_choice_and_parallel_tool_calls(target: Target, env: CompatEnv) -> None:
    forced = {"type": "function", "function": {"name": "get_weather"}}
    r = _weather_call(target, tool_choice=forced, parallel_tool_calls=False)
    calls = r.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    body = sent(env)
    assert body.get("tool_choice") == forced
    assert body.get("parallel_tool_calls") is False


def test_tool_choice_none_answers_in_text(target: Target) -> None:
    r = _weather_call(target, tool_choice="none")
    assert not r.choices[0].message.tool_calls
    assert r.choices[0].message.content


def test_streamed_tool_call(target: Target) -> None:
    stream = client(target).chat.completions.create(
        model=target.model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        stream=True,
    )
    name, args, finish = "", "", None
    for c in stream:
        if not c.choices:
            continue
        for d in c.choices[0].delta.tool_calls or ():
            name += (d.function and d.function.name) or ""
            args += (d.function and d.function.arguments) or ""
        finish = c.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls"
    assert isinstance(json.loads(args).get("city"), str)


class Person(BaseModel):
    name: str
    age: int


def test_parse_json_schema(target: Target, env: CompatEnv) -> None:
    r = client(target).chat.completions.parse(
        model=target.model,
        messages=[{"role": "user", "content": "Ada, 36"}],
        response_format=Person,
    )
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Person)
    rf = sent(env)["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True


def test_json_object(target: Target) -> None:
    r = client(target).chat.completions.create(
        model=target.model,
        messages=[{"role": "user", "content": "Give me a JSON object."}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)


def test_image_input(target: Target, env: CompatEnv) -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    r = client(target).chat.completions.create(
        model=target.model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello there"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                ],
            }
        ],
    )
    assert r.choices[0].message.content
    parts = sent(env)["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": url, "detail": "low"}} in parts


def test_usage_details(target: Target) -> None:
    r = client(target).chat.completions.create(model=target.model, messages=HELLO)
    u = r.usage
    assert u is not None
    assert u.prompt_tokens_details is not None and u.completion_tokens_details is not None


def test_bad_request_is_bad_request_error(target: Target) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(target).chat.completions.create(
            model=target.model, messages=HELLO, extra_body={"messages": "not a list"}
        )
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict) and "message" in body


def test_models_list(target: Target) -> None:
    ids = {m.id for m in client(target).models.list()}
    assert target.model in ids
