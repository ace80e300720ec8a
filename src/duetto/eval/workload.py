"""Workloads: the requests an evaluation runs, each with its reference answer and scorer.

A workload file is JSONL (one object per line) or CSV (one row per item, with a header). Each
row has `prompt` (a string) or `messages` (an OpenAI chat list), and optionally `system`,
`reference`, `task`, `scorer`, `choices`, `id`, `tags` and `max_tokens`. In CSV, `messages` is a
JSON string and `choices`/`tags` are JSON lists or `|`-separated strings.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from duetto.answers import choice_index
from duetto.errors import DataError
from duetto.messages import ChatRequest

SCORERS = ("exact", "choice", "numeric", "contains", "judge", "none")
DEFAULT_MAX_TOKENS = 256

ROW_FORMAT = (
    "one object per row with 'prompt' (string) or 'messages' (list of {role, content}), "
    "optional 'system', 'reference', 'task', 'scorer' (one of " + "|".join(SCORERS) + "), "
    "'choices' (list of strings), 'id', 'tags' (list of strings), 'max_tokens' (int)"
)
_KNOWN_KEYS = {
    "prompt",
    "messages",
    "system",
    "reference",
    "task",
    "scorer",
    "choices",
    "id",
    "tags",
    "max_tokens",
}


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One request of a workload and how to score the answer to it."""

    id: str
    request: ChatRequest
    reference: str | None = None
    task: str | None = None
    scorer: str = "exact"  # exact | choice | numeric | contains | judge | none
    choices: tuple[str, ...] = ()  # option texts; position i has the label "A" + i
    tags: tuple[str, ...] = ()  # e.g. ("easy",), ("hard",), ("easy", "pii")


class _RowError(ValueError):
    """A malformed row; turned into a DataError naming the file and line."""


def load_workload(path: str | Path) -> list[WorkItem]:
    """Read a JSONL or CSV workload; a bad row raises DataError with file, line and format."""
    p = Path(path)
    if not p.is_file():
        raise DataError("workload file not found", file=str(p), expected="a .jsonl or .csv file")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = _jsonl_rows(p)
    elif suffix == ".csv":
        rows = _csv_rows(p)
    else:
        raise DataError(
            f"unknown workload extension {suffix!r}", file=str(p), expected="a .jsonl or .csv file"
        )
    return _items_from_rows(rows, source=str(p), default_prefix=p.stem)


def demo_workload() -> list[WorkItem]:
    """The built-in demo workload (easy/hard/PII items written for duetto)."""
    res = resources.files("duetto.data").joinpath("demo.jsonl")
    text = res.read_text(encoding="utf-8")
    rows = _parse_jsonl_text(text, source="duetto/data/demo.jsonl")
    return _items_from_rows(rows, source="duetto/data/demo.jsonl", default_prefix="demo")


def split(
    items: Sequence[WorkItem], frac: float = 0.5, seed: int = 0
) -> tuple[list[WorkItem], list[WorkItem]]:
    """Split into (calibration, held-out), stratified by task; both keep the input order."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"frac must be in [0, 1], got {frac}")
    by_task: dict[str | None, list[int]] = {}
    for i, item in enumerate(items):
        by_task.setdefault(item.task, []).append(i)
    rng = random.Random(seed)
    calib_idx: set[int] = set()
    for task in sorted(by_task, key=lambda t: "" if t is None else t):
        idx = list(by_task[task])
        rng.shuffle(idx)
        calib_idx.update(idx[: math.floor(frac * len(idx) + 0.5)])
    calib = [it for i, it in enumerate(items) if i in calib_idx]
    heldout = [it for i, it in enumerate(items) if i not in calib_idx]
    return calib, heldout


# --- parsing ----------------------------------------------------------------------------------


def _parse_jsonl_text(text: str, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"line {lineno}: not valid JSON ({e.msg})", file=source, expected=ROW_FORMAT
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"line {lineno}: a JSON {type(row).__name__}, not an object",
                file=source,
                expected=ROW_FORMAT,
            )
        yield lineno, row


def _jsonl_rows(p: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    return _parse_jsonl_text(p.read_text(encoding="utf-8"), source=str(p))


def _csv_rows(p: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not ({"prompt", "messages"} & set(reader.fieldnames)):
            raise DataError(
                "line 1: the header has neither 'prompt' nor 'messages'",
                file=str(p),
                expected=ROW_FORMAT,
            )
        for row in reader:
            # Empty CSV cells mean "absent"; line_num is the physical line the row ended on.
            yield reader.line_num, {k: v for k, v in row.items() if k and v not in (None, "")}


def _items_from_rows(
    rows: Iterator[tuple[int, dict[str, Any]]], source: str, default_prefix: str
) -> list[WorkItem]:
    items: list[WorkItem] = []
    seen: dict[str, int] = {}
    for lineno, row in rows:
        try:
            item = _item_from_row(row, default_id=f"{default_prefix}-{lineno}")
        except _RowError as e:
            raise DataError(f"line {lineno}: {e}", file=source, expected=ROW_FORMAT) from None
        if item.id in seen:
            raise DataError(
                f"line {lineno}: duplicate id {item.id!r} (first on line {seen[item.id]})",
                file=source,
                expected="unique ids",
            )
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise DataError("no items", file=source, expected=ROW_FORMAT)
    return items


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise _RowError(f"'{key}' is not a valid JSON list") from None
        else:
            return tuple(s.strip() for s in text.split("|") if s.strip())
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise _RowError(f"'{key}' must be a list of strings")
    return tuple(str(v) for v in value)


def _optional_str(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _RowError(f"'{key}' must be a string")
    return str(value)


def _item_from_row(row: dict[str, Any], default_id: str) -> WorkItem:
    unknown = set(row) - _KNOWN_KEYS
    if unknown:
        raise _RowError(f"unknown field(s) {sorted(unknown)}")
    task = _optional_str(row, "task")
    request = _request_from_row(row, task)

    scorer = _optional_str(row, "scorer") or (
        "exact" if row.get("reference") is not None else "none"
    )
    if scorer not in SCORERS:
        raise _RowError(f"scorer {scorer!r} is not one of {', '.join(SCORERS)}")
    reference = _optional_str(row, "reference")
    if reference is None and scorer not in ("none", "judge"):
        raise _RowError(f"scorer {scorer!r} needs a 'reference'")
    choices = _str_list(row["choices"], "choices") if "choices" in row else ()
    if scorer == "choice":
        _check_choice_reference(reference or "", choices)
    tags = _str_list(row["tags"], "tags") if "tags" in row else ()
    item_id = _optional_str(row, "id") or default_id
    return WorkItem(item_id, request, reference, task, scorer, choices, tags)


def _request_from_row(row: dict[str, Any], task: str | None) -> ChatRequest:
    max_tokens = row.get("max_tokens", DEFAULT_MAX_TOKENS)
    try:
        max_tokens = int(max_tokens)
    except (TypeError, ValueError):
        raise _RowError("'max_tokens' must be an integer") from None
    if max_tokens <= 0:
        raise _RowError("'max_tokens' must be positive")
    system = _optional_str(row, "system")
    if "prompt" in row:
        if "messages" in row:
            raise _RowError("has both 'prompt' and 'messages'; give one")
        prompt = row["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise _RowError("'prompt' must be a non-empty string")
        return ChatRequest.of(prompt, system=system, max_tokens=max_tokens, task=task)
    if "messages" not in row:
        raise _RowError("has neither 'prompt' nor 'messages'")
    messages = row["messages"]
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            raise _RowError("'messages' is not a valid JSON list") from None
    if not isinstance(messages, list) or not messages:
        raise _RowError("'messages' must be a non-empty list")
    for m in messages:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("system", "user", "assistant")
            or not isinstance(m.get("content"), str)
        ):
            raise _RowError("each message needs 'role' (system|user|assistant) and 'content'")
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return ChatRequest.from_dicts(messages, max_tokens=max_tokens, task=task)


def _check_choice_reference(reference: str, choices: tuple[str, ...]) -> None:
    if len(choices) < 2:
        raise _RowError("scorer 'choice' needs at least two 'choices'")
    if choice_index(reference, choices) is None:
        raise _RowError(
            f"reference {reference!r} is neither a choice nor a choice label "
            f"(A-{chr(64 + len(choices))})"
        )
