"""JSON schema → llama.cpp grammar, and the check of an answer against its schema.

llama-cpp-python ships a copy of an older llama.cpp json-schema-to-grammar converter. Two of
its gaps let a grammar-constrained answer be invalid:

- its string characters include raw control characters: a newline sampled inside a string is
  not JSON (json.loads refuses it);
- it ignores integer bounds (minimum, maximum, exclusiveMinimum, exclusiveMaximum): a rating
  of 1..5 may come out as 0 or 7.

`schema_gbnf` closes both, and writes uniqueItems over a short enum as distinct items in enum
order. What a grammar still cannot say (number bounds, multipleOf, uniqueItems of free values,
...) is caught after generation by `schema_problem` (the `jsonschema` package); the local model
then retries once, with `capped_strings` when the first answer ran out of tokens.

llama_cpp is imported only when a grammar is built: `import duetto` stays light.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

from duetto.errors import UserError

__all__ = ["capped_strings", "int_range_gbnf", "schema_gbnf", "schema_problem"]

# llama.cpp's own integer rule allows up to 16 digits; an unbounded side stops there too.
_MAX_DIGITS = 16
# A JSON string character: anything but a quote, a backslash or a control character (JSON
# forbids raw U+0000..U+001F; U+007F is left out as llama.cpp's own json.gbnf does), or an
# escape.
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'


# --------------------------------------------------------------------------- integer ranges


def _same_length(lo: str, hi: str) -> list[str]:
    """GBNF sequences that together match the decimal strings from `lo` to `hi` (same length,
    lo <= hi, no leading zeros beyond what they have)."""
    common = 0
    while common < len(lo) and lo[common] == hi[common]:
        common += 1
    if common == len(lo):
        return [f'"{lo}"']
    prefix = f'"{lo[:common]}" ' if common else ""
    a, b = lo[common:], hi[common:]  # they differ at their first digit
    rest = len(a) - 1
    tail = f" [0-9]{{{rest}}}" if rest else ""
    low_full = a[1:] == "0" * rest  # a0 followed by any `rest` digits is inside the range
    high_full = b[1:] == "9" * rest
    out: list[str] = []
    first = int(a[0]) + (0 if low_full else 1)
    last = int(b[0]) - (0 if high_full else 1)
    if not low_full:
        out += [f'"{a[0]}" {s}' for s in _same_length(a[1:], "9" * rest)]
    if first <= last:
        digit = f"[{first}]" if first == last else f"[{first}-{last}]"
        out.append(digit + tail)
    if not high_full:
        out += [f'"{b[0]}" {s}' for s in _same_length("0" * rest, b[1:])]
    return [prefix + s for s in out]


def _natural_range(lo: int, hi: int) -> list[str]:
    """GBNF sequences for the integers lo..hi (0 <= lo <= hi), written without leading zeros."""
    out: list[str] = []
    full: list[int] = []  # lengths whose every number is in range: one `[1-9] [0-9]{a,b}`
    for digits in range(len(str(lo)), len(str(hi)) + 1):
        start = max(lo, 10 ** (digits - 1) if digits > 1 else 0)
        stop = min(hi, 10**digits - 1)
        if digits > 1 and start == 10 ** (digits - 1) and stop == 10**digits - 1:
            full.append(digits - 1)
        elif start <= stop:
            out += _same_length(str(start), str(stop))
    if full:  # consecutive lengths, by construction
        span = f"{full[0]}" if len(full) == 1 else f"{full[0]},{full[-1]}"
        out.append(f"[1-9] [0-9]{{{span}}}")
    return out


def int_range_gbnf(lo: int | None, hi: int | None) -> str:
    """A GBNF expression matching exactly the JSON integers in [lo, hi]; None leaves a side
    open (up to 16 digits, as llama.cpp's integer rule)."""
    top = 10**_MAX_DIGITS - 1
    lo = -top if lo is None else max(lo, -top)
    hi = top if hi is None else min(hi, top)
    if lo > hi:
        raise UserError(f"no integer between minimum {lo} and maximum {hi}")
    parts: list[str] = []
    if lo < 0:  # -n for n in [max(1, -hi), -lo]
        negative = _natural_range(max(1, -hi), -lo)
        parts.append('"-" (' + " | ".join(negative) + ")")
    if hi >= 0:
        parts += _natural_range(max(0, lo), hi)
    return " | ".join(parts)


def _int_bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """The integer interval of an integer schema's minimum/maximum/exclusive* (draft 4's
    boolean exclusives too)."""
    lo = hi = None
    if isinstance(schema.get("minimum"), int | float):
        lo = math.ceil(schema["minimum"])
        if schema.get("exclusiveMinimum") is True and lo == schema["minimum"]:
            lo += 1
    if isinstance(schema.get("maximum"), int | float):
        hi = math.floor(schema["maximum"])
        if schema.get("exclusiveMaximum") is True and hi == schema["maximum"]:
            hi -= 1
    ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_lo, int | float) and not isinstance(ex_lo, bool):
        bound = math.floor(ex_lo) + 1
        lo = bound if lo is None else max(lo, bound)
    if isinstance(ex_hi, int | float) and not isinstance(ex_hi, bool):
        bound = math.ceil(ex_hi) - 1
        hi = bound if hi is None else min(hi, bound)
    return lo, hi


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


# An enum this long under uniqueItems is left to the check after generation: the grammar of
# distinct items in enum order has (values × maxItems) rules.
_UNIQUE_ENUM_MAX = 24


def _unique_choices(schema: Any) -> list[Any] | None:
    """The enum values of an array schema whose items must be distinct and come from a short
    enum (deduplicated, in order); None for any other schema."""
    if not isinstance(schema, dict) or schema.get("uniqueItems") is not True:
        return None
    items = schema.get("items")
    if schema.get("type", "array") != "array" or not isinstance(items, dict):
        return None
    if "prefixItems" in schema or set(items) - {"enum", "type"}:
        return None
    values = items.get("enum")
    if not isinstance(values, list) or not values:
        return None
    distinct: list[Any] = []
    for v in values:  # by JSON value: 1 and 1.0 or True are told apart as JSON writes them
        if all(json.dumps(v) != json.dumps(d) for d in distinct):
            distinct.append(v)
    return distinct if len(distinct) <= _UNIQUE_ENUM_MAX else None


# --------------------------------------------------------------------------- the converter


@functools.cache
def _converter_class() -> type:
    """llama-cpp-python's SchemaConverter with bounded integers and JSON-only characters."""
    from llama_cpp import llama_grammar as lg

    # The base class is untyped: its methods are called through `me` (Any), so mypy passes
    # with or without llama_cpp installed.
    class Converter(lg.SchemaConverter):
        def visit(self, schema: dict[str, Any], name: str) -> str:
            me: Any = self
            rule_name = name + "-" if name in lg.RESERVED_NAMES else name or "root"
            bounded = (
                isinstance(schema, dict)
                and schema.get("type") == "integer"
                and any(k in schema for k in _BOUNDS)
                and not any(k in schema for k in ("$ref", "enum", "const", "anyOf", "oneOf"))
            )
            if bounded:
                expression = int_range_gbnf(*_int_bounds(schema))
                return str(me._add_rule(rule_name, f"({expression}) space"))
            if _unique_choices(schema) is not None:
                return str(me._add_rule(rule_name, self._unique_array(schema, rule_name)))
            base: Any = super()
            return str(base.visit(schema, name))

        def _unique_array(self, schema: dict[str, Any], name: str) -> str:
            """uniqueItems over a few enum values: the items come in enum order, each at most
            once (any order would be valid; one order keeps the grammar small)."""
            me: Any = self
            values = _unique_choices(schema) or []
            literals = [me._generate_constant_rule(v) for v in values]
            m, least = len(literals), int(schema.get("minItems", 0))
            most = min(int(schema.get("maxItems", m)), m)
            if least > most:
                raise UserError(f"uniqueItems: no array of {least} distinct items of {values}")
            rests: dict[tuple[int, int], str] = {}

            def rest(i: int, count: int) -> str:
                """What may follow `count` items, the last being value i ("" for nothing)."""
                if (i, count) not in rests:
                    options = [
                        f'"," space {literals[j]} {rest(j, count + 1)}'.rstrip()
                        for j in range(i + 1, m)
                        if count < most and m - j >= least - count
                    ]
                    body = " | ".join(options)
                    if body and count >= least:
                        body = f"({body})?"
                    rests[i, count] = (
                        str(me._add_rule(f"{name}-after-{i}-{count}", body)) if body else ""
                    )
                return rests[i, count]

            firsts = [f"{literals[i]} {rest(i, 1)}".rstrip() for i in range(m) if m - i >= least]
            inner = f"({' | '.join(firsts)})" + ("?" if least == 0 else "") if most else ""
            return f'"[" space {inner} "]" space'

        def _add_primitive(self, name: str, rule: Any) -> str:
            if name == "char":
                rule = lg.BuiltinRule(_JSON_CHAR, [])
            base: Any = super()
            return str(base._add_primitive(name, rule))

    return Converter


def schema_gbnf(schema: dict[str, Any]) -> str:
    """The GBNF grammar of JSON valid for `schema` (properties in schema order)."""
    converter = _converter_class()(
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    resolved = converter.resolve_refs(schema, "input")
    converter.visit(resolved, "")
    return str(converter.format_grammar())


# --------------------------------------------------------------------------- a shorter answer

_DATA_KEYS = frozenset({"const", "enum", "default", "examples"})  # values, not schemas


def capped_strings(schema: Any, cap: int) -> Any:
    """A copy of `schema` whose free strings (no enum, const, pattern or format) hold at most
    `cap` characters: every JSON it allows is valid for `schema`, and short. A small model that
    loops inside an unbounded string until the token cap answers this one in time."""
    if isinstance(schema, list):
        return [capped_strings(s, cap) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: v if k in _DATA_KEYS else capped_strings(v, cap) for k, v in schema.items()}
    free = not any(k in schema for k in ("enum", "const", "pattern", "format"))
    if schema.get("type") == "string" and free:
        longest = schema.get("maxLength")
        longest = cap if not isinstance(longest, int) else min(longest, cap)
        out["maxLength"] = max(longest, schema.get("minLength", 0))
    return out


# --------------------------------------------------------------------------- the check


@functools.lru_cache(maxsize=64)  # bounded: a gateway sees any number of client schemas
def _validator(key: str) -> Callable[[Any], str | None] | None:
    import jsonschema

    schema = json.loads(key)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return None  # not a schema jsonschema can judge by: the grammar is all there is
    validator = cls(schema)

    def problem(value: Any) -> str | None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{where or '(root)'}: {error.message}"

    return problem


def schema_problem(text: str, schema: dict[str, Any]) -> str | None:
    """Why `text` is not JSON valid for `schema` (short, for an error message); None if it is."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    check = _validator(json.dumps(schema, sort_keys=True))
    return None if check is None else check(value)
