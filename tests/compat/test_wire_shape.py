"""The strictest differential check: the same request, sent as raw JSON directly and through
duetto, must come back as the same answer: the same fields with the same values, apart from
what names the server (ids, `created`, `model`, `system_fingerprint`) and duetto's own
`duetto` block. A field duetto drops, adds or changes shows up here even where no client
library looks at it."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from compat.env import THROUGH_DUETTO, CompatEnv, Target

pytestmark = pytest.mark.timeout(60)

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
}
USER = [{"role": "user", "content": "What is the weather in 'Paris'?"}]
REQUESTS: dict[str, dict[str, Any]] = {
    "plain": {"messages": USER},
    "options": {"messages": USER, "stop": ["weather"], "max_tokens": 3, "seed": 1},
    "tools": {"messages": USER, "tools": [TOOL]},
    "tool_result": {
        "messages": [
            *USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [TOOL],
    },
    "n_logprobs": {"messages": USER, "n": 2, "logprobs": True, "top_logprobs": 2},
    "json_schema": {"messages": USER, "response_format": SCHEMA},
    "json_object": {"messages": USER, "response_format": {"type": "json_object"}},
}
_IDS = re.compile(r"call_[A-Za-z0-9_]+")


def normal(body: dict[str, Any]) -> dict[str, Any]:
    """The answer without what names the server that produced it."""
    out = {
        k: v
        for k, v in body.items()
        if k not in ("id", "created", "model", "system_fingerprint", "duetto")
    }
    return json.loads(_IDS.sub("call_<id>", json.dumps(out, sort_keys=True)))


def post(t: Target, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{t.base_url}/chat/completions",
        json={"model": t.model, **body},
        headers={"Authorization": f"Bearer {t.api_key}"},
        timeout=20,
    )


def streamed(t: Target, body: dict[str, Any]) -> dict[str, Any]:
    """A streamed answer folded into what a client assembles from it."""
    text: dict[int, str] = {}
    calls: dict[tuple[int, int], dict[str, str]] = {}
    finish: dict[int, str] = {}
    usage = None
    payload = {"model": t.model, **body, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST",
        f"{t.base_url}/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer {t.api_key}"},
        timeout=20,
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk["choices"]:
                i = c["index"]
                text[i] = text.get(i, "") + (c["delta"].get("content") or "")
                for d in c["delta"].get("tool_calls") or ():
                    call = calls.setdefault((i, d["index"]), {"name": "", "arguments": ""})
                    fn = d.get("function") or {}
                    call["name"] += fn.get("name") or ""
                    call["arguments"] += fn.get("arguments") or ""
                if c.get("finish_reason"):
                    finish[i] = c["finish_reason"]
    return {"text": text, "calls": sorted(calls.items()), "finish": finish, "usage": usage}


@pytest.fixture(params=THROUGH_DUETTO)
def target(request: pytest.FixtureRequest, env: CompatEnv) -> Target:
    """Here every case compares a through-duetto target with the direct answer."""
    return env.target(request.param)


@pytest.mark.parametrize("case", list(REQUESTS))
def test_same_answer(case: str, target: Target, env: CompatEnv) -> None:
    direct = post(env.target("direct"), REQUESTS[case])
    through = post(target, REQUESTS[case])
    assert direct.status_code == 200, direct.text
    assert (through.status_code, normal(through.json())) == (200, normal(direct.json()))


@pytest.mark.parametrize("case", list(REQUESTS))
def test_same_streamed_answer(case: str, target: Target, env: CompatEnv) -> None:
    assert streamed(target, REQUESTS[case]) == streamed(env.target("direct"), REQUESTS[case])


def test_same_error_for_a_bad_request(target: Target, env: CompatEnv) -> None:
    bad = {"messages": [{"role": "user", "content": "hi"}], "n": 0}
    direct = post(env.target("direct"), bad)
    through = post(target, bad)
    assert direct.status_code == through.status_code == 400
    assert set(through.json()["error"]) == set(direct.json()["error"])
