"""Tool calls and structured output as the strategies see them: pure checks, no model call.

    calls_of(response)          the response's tool calls (none for a text answer)
    calls_valid(request, resp)  every call names an offered tool and its arguments are a JSON
                                object valid for that tool's `parameters` (a free verifier
                                signal for a cascade)
    format_valid(request, resp) a response_format json_schema / json_object answer parses and
                                matches the schema (True when no JSON was asked)
    calls_key(response)         a comparable key of the calls (fusion votes on it)
    shown(response)             the answer as a judge reads it: its text, or its calls
    trace_calls(response)       what a trace records of the calls: names, never arguments

Schema checking is `pipeline.json_validator`'s subset (type, properties, required, enum,
items, additionalProperties). Tool calls are read by attribute or key, so a `ToolCall` and
OpenAI's dict shape both work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from duetto.messages import ChatRequest, ChatResponse
from duetto.strategies.pipeline import json_validator, schema_ok


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        if key in ("name", "arguments") and isinstance(obj.get("function"), Mapping):
            return obj["function"].get(key)
        return obj.get(key)
    return getattr(obj, key, None)


def calls_of(response: ChatResponse) -> tuple[Any, ...]:
    return tuple(getattr(response, "tool_calls", None) or ())


def _parameters(request: ChatRequest) -> dict[str, dict[str, Any] | None]:
    """Offered function name -> its parameters schema (None: any arguments)."""
    out: dict[str, dict[str, Any] | None] = {}
    for tool in getattr(request, "tools", None) or ():
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out[fn["name"]] = dict(params) if isinstance(params, Mapping) else None
    return out


def _arguments(call: Any) -> Any:
    raw = _get(call, "arguments")
    if raw is None:
        return {}
    if isinstance(raw, str):
        return json.loads(raw)  # ValueError on bad JSON: the caller's "invalid"
    return raw


def calls_valid(request: ChatRequest, response: ChatResponse) -> bool:
    """Every tool call names an offered tool; its arguments are a JSON object that matches the
    tool's parameters schema. False for a response without calls."""
    calls = calls_of(response)
    if not calls:
        return False
    offered = _parameters(request)
    for call in calls:
        name = _get(call, "name")
        if name not in offered:
            return False
        try:
            args = _arguments(call)
        except ValueError:
            return False
        schema = offered[name]
        if not isinstance(args, dict) or (schema is not None and not schema_ok(args, schema)):
            return False
    return True


def format_valid(request: ChatRequest, response: ChatResponse) -> bool:
    """A JSON answer asked by response_format parses (and matches its schema, if given)."""
    fmt = request.response_format or {}
    kind = fmt.get("type")
    if kind not in ("json_object", "json_schema"):
        return True
    spec = fmt.get("json_schema") if kind == "json_schema" else None
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    return json_validator(dict(schema) if isinstance(schema, Mapping) else None)(response.text)


def calls_key(response: ChatResponse) -> str | None:
    """Calls with the same functions and the same arguments (parsed) get the same key; None
    when the response has no calls or their arguments do not parse."""
    calls = calls_of(response)
    if not calls:
        return None
    try:
        parts = sorted(json.dumps([_get(c, "name"), _arguments(c)], sort_keys=True) for c in calls)
    except (TypeError, ValueError):
        return None
    return "calls:" + "|".join(parts)


def shown(response: ChatResponse) -> str:
    """The text, or the calls as `name(arguments)` lines for an answer that calls tools."""
    calls = calls_of(response)
    if not calls:
        return response.text
    lines = [f"call {_get(c, 'name')}({_get(c, 'arguments') or ''})" for c in calls]
    return "\n".join([response.text.strip(), *lines]).strip()


def trace_calls(response: ChatResponse) -> list[str]:
    """The called functions' names, for a trace (the arguments are answer content)."""
    return [str(_get(c, "name")) for c in calls_of(response)]
