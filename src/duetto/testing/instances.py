"""A JSON value valid for a JSON schema, made up from a prompt: how the fake OpenAI server
answers `json_schema` response formats and fills a tool call's arguments.

Deterministic and cheap. Numbers are taken from the prompt in order (so "magic_function(3)"
gives `{"input": 3}`), strings are the schema's enum/const/default, else the first quoted
text of the prompt, else the prompt itself (cut to maxLength). Covers what clients generate
from pydantic models: object/properties/required, arrays with minItems, enum, const, anyOf /
oneOf / allOf (first branch), $ref into $defs/definitions, nullable types, min/max bounds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTED = re.compile(r"[\"“']([^\"”']{1,200})[\"”']")


class _Source:
    """The prompt's numbers and strings, handed out in order."""

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt.strip()
        self.numbers: Iterator[str] = iter(_NUMBER.findall(prompt))
        quoted = _QUOTED.findall(prompt)
        self.text = quoted[0] if quoted else self.prompt or "text"

    def number(self) -> float | None:
        value = next(self.numbers, None)
        return float(value) if value is not None else None


def instance_for(schema: Any, prompt: str = "") -> Any:
    """A value valid for `schema` (a JSON schema dict; `True`/`{}` allow anything)."""
    return _make(schema, _Source(prompt), schema if isinstance(schema, dict) else {}, 0)


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        if not part:
            continue
        node = (
            node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else {}
        )
    return node if node is not None else {}


def _make(schema: Any, src: _Source, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 12:
        return {} if depth == 0 else None
    if "$ref" in schema:
        return _make(_resolve(schema["$ref"], root), src, root, depth + 1)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key) or () if not _is_null(b)]
        if branches:
            return _make(branches[0], src, root, depth + 1)
        if schema.get(key):
            return None
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for branch in schema["allOf"]:
            branch = _resolve(branch["$ref"], root) if "$ref" in branch else branch
            for k, v in branch.items():
                if k in ("properties",) and isinstance(v, dict):
                    merged.setdefault(k, {}).update(v)
                elif k == "required":
                    merged.setdefault(k, []).extend(v)
                else:
                    merged.setdefault(k, v)
        return _make(merged, src, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else ("array" if "items" in schema else None)
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _make(sub, src, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 0)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        prefix = schema.get("prefixItems") or []
        items = [_make(sub, src, root, depth + 1) for sub in prefix]
        items += [_make(schema.get("items", {}), src, root, depth + 1) for _ in range(count)]
        return items[: max(count, len(prefix))]
    if kind in ("integer", "number"):
        return _number(schema, src, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "string":
        return _string(schema, src)
    return src.text  # no type: anything goes


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _number(schema: dict[str, Any], src: _Source, integer: bool) -> int | float:
    value = src.number()
    if value is None:
        value = 1.0
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(low, int | float) and value < low + ("exclusiveMinimum" in schema):
        value = low + (1 if "exclusiveMinimum" in schema else 0)
    if isinstance(high, int | float) and value > high - ("exclusiveMaximum" in schema):
        value = high - (1 if "exclusiveMaximum" in schema else 0)
    return int(value) if integer else value


def _string(schema: dict[str, Any], src: _Source) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2024-01-01T00:00:00Z"
    if fmt == "date":
        return "2024-01-01"
    if fmt == "email":
        return "user@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com"
    if fmt == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    text = src.text
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if isinstance(high, int):
        text = text[:high]
    return text + "x" * max(0, low - len(text))


def schema_in(texts: list[str]) -> dict[str, Any] | None:
    """The first JSON schema (an object with `properties`) written inside any of `texts`:
    how JSON-mode clients (instructor's JSON / MD_JSON modes) state the shape they want."""
    decoder = json.JSONDecoder()
    for text in texts:
        if '"properties"' not in text:
            continue
        start = text.find("{")
        while start >= 0:
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                value = None
            if isinstance(value, dict) and isinstance(value.get("properties"), dict):
                return value
            start = text.find("{", start + 1)
    return None
