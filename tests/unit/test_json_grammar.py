"""json_grammar's pure parts: integer ranges, bounds, capped strings, the schema check."""

from __future__ import annotations

import random
import re

import pytest

from duetto.errors import UserError
from duetto.models.json_grammar import (
    _int_bounds,
    _unique_choices,
    capped_strings,
    int_range_gbnf,
    schema_problem,
)

TOP = 10**16 - 1


def _as_regex(expression: str) -> re.Pattern[str]:
    """The GBNF expression (literals, [a-b] classes, {n} / {a,b}, groups) as a Python regex."""
    rx = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), expression)
    return re.compile("^(?:" + rx.replace(" ", "") + ")$")


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(1, 5), (0, 0), (7, 7), (15, 42), (-7, 12), (-100, -3), (99, 100), (123, 98765), (0, 999)],
)
def test_int_range_matches_exactly_the_range(lo: int, hi: int) -> None:
    rx = _as_regex(int_range_gbnf(lo, hi))
    for n in range(lo - 150, hi + 151):
        assert bool(rx.match(str(n))) == (lo <= n <= hi), n
    assert not rx.match("-0") and not rx.match("01") and not rx.match("+1")


def test_int_range_random_intervals() -> None:
    rng = random.Random(13)
    for _ in range(200):
        lo = rng.randint(-(10**6), 10**6)
        hi = lo + rng.randint(0, 2000)
        rx = _as_regex(int_range_gbnf(lo, hi))
        for n in [*range(lo - 30, lo + 30), *range(hi - 30, hi + 30), rng.randint(lo, hi)]:
            assert bool(rx.match(str(n))) == (lo <= n <= hi), (lo, hi, n)


def test_open_sides_stop_at_16_digits() -> None:
    positive = _as_regex(int_range_gbnf(1, None))
    assert positive.match("1") and positive.match(str(TOP)) and not positive.match("0")
    assert not positive.match(str(TOP + 1)) and not positive.match("-1")
    anything = _as_regex(int_range_gbnf(None, None))
    assert anything.match(str(-TOP)) and anything.match("0") and not anything.match("-0")
    assert int_range_gbnf(0, None) == "[0-9] | [1-9] [0-9]{1,15}"
    with pytest.raises(UserError, match="no integer"):
        int_range_gbnf(5, 4)


@pytest.mark.parametrize(
    ("schema", "bounds"),
    [
        ({"minimum": 1, "maximum": 5}, (1, 5)),
        ({"minimum": 0.5, "maximum": 4.5}, (1, 4)),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, (1, 9)),
        ({"exclusiveMinimum": 0.5}, (1, None)),
        ({"minimum": 3, "exclusiveMinimum": True, "maximum": 8, "exclusiveMaximum": True}, (4, 7)),
        ({"minimum": 2, "exclusiveMinimum": 5}, (6, None)),
        ({"maximum": -1}, (None, -1)),
    ],
)
def test_int_bounds_of_every_draft(schema: dict, bounds: tuple) -> None:
    assert _int_bounds({"type": "integer", **schema}) == bounds


def test_unique_choices_only_for_short_enums() -> None:
    labels = {"type": "array", "uniqueItems": True, "items": {"enum": ["a", "b", "a", 1]}}
    assert _unique_choices(labels) == ["a", "b", 1]
    assert _unique_choices({**labels, "uniqueItems": False}) is None
    assert _unique_choices({**labels, "items": {"type": "string"}}) is None
    assert _unique_choices({**labels, "items": {"enum": list(range(100))}}) is None


def test_capped_strings_bounds_free_strings_only() -> None:
    schema = {
        "type": "object",
        "properties": {
            "notes": {"type": "string"},
            "long": {"type": "string", "maxLength": 500, "minLength": 2},
            "short": {"type": "string", "maxLength": 5},
            "wide": {"type": "string", "minLength": 60},
            "code": {"type": "string", "pattern": "^[0-9]+$"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "fixed": {"const": {"type": "string"}},
        },
    }
    capped = capped_strings(schema, 40)
    props = capped["properties"]
    assert props["notes"]["maxLength"] == 40 and props["long"]["maxLength"] == 40
    assert props["short"]["maxLength"] == 5 and props["wide"]["maxLength"] == 60
    assert "maxLength" not in props["code"] and props["tags"]["items"]["maxLength"] == 40
    assert props["fixed"] == {"const": {"type": "string"}}  # a value, not a schema
    assert "maxLength" not in schema["properties"]["notes"]  # the original is untouched


def test_schema_problem_says_what_is_wrong() -> None:
    pytest.importorskip("jsonschema")
    schema = {
        "type": "object",
        "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["rating"],
    }
    assert schema_problem('{"rating": 3}', schema) is None
    assert "rating" in (schema_problem('{"rating": 7}', schema) or "")
    assert (schema_problem('{"rating": 3', schema) or "").startswith("not JSON")
    assert "required" in (schema_problem("{}", schema) or "")
    # a schema jsonschema rejects cannot judge an answer: only JSON-ness is checked
    assert schema_problem("{}", {"type": 12}) is None
