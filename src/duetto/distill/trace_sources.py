"""Where distillation traces come from: the gateway's trace store (SQLite or PostgreSQL) or a
JSONL file, read into `TraceExample`s; and which step of a stored trace gave the answer.

How a stored record is read (see `duetto.gateway.records`): the prompt is the last user message
of `body.request.messages`, the answer `body.response`. The task is an explicit `task` in the
body or request (or `request.metadata.task`) when present, else the requested model or
strategy name (`record.model`: a gateway route per task). The model that answered is found by
walking the trace from the root to the answer's leaf (`answering_path`); it is the teacher when
its usage counted a remote call. Its verifier score is that of the cascade level that verified
and accepted it; an LLM that answered as the last, unverified level of a cascade has none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duetto.errors import DataError, UserError
from duetto.scoring.redact import PLACEHOLDER
from duetto.trace import Step

JSONL_FORMAT = (
    'one JSON object per line: {"prompt": str (or "messages": [{role, content}]), '
    '"answer": str (or "label"), optional "task", "model", "score", "accepted", "remote", '
    '"gold", "id"}'
)
# Roles of helper calls whose output is not the answer (a judge picks, a verifier scores).
HELPER_ROLES = frozenset({"judge", "verify", "verifier", "hint", "redact"})


@dataclass(slots=True)
class TraceExample:
    """One answered request, from the store or a JSONL line."""

    prompt: str
    answer: str
    task: str | None = None
    model: str | None = None  # the model (card name) whose answer was returned
    remote: bool | None = None  # that model is outside this process (a remote LLM call)
    score: float | None = None  # the verifier score of that answer, if one verified it
    accepted: bool = True
    gold: str | None = None  # a reference answer, when the source has one (JSONL only)
    system: str | None = None  # the first system message, if any
    source_id: str = ""
    created: float = 0.0

    @property
    def redacted(self) -> bool:
        return bool(PLACEHOLDER.search(self.prompt) or PLACEHOLDER.search(self.answer))


# --------------------------------------------------------------------------- reading


def is_store(source: str) -> bool:
    """A URL, or a file that starts like a SQLite database, is a store; anything else is JSONL."""
    if "://" in source:
        return True
    path = Path(source)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return False
    if path.is_file():
        with path.open("rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    return path.suffix.lower() in (".db", ".sqlite", ".sqlite3")


def load_traces(source: str) -> tuple[str, list[TraceExample]]:
    """("store" | "jsonl", the examples in the order they were written)."""
    if is_store(source):
        return "store", [e for e in map(example_from_record, read_store(source)) if e is not None]
    return "jsonl", read_jsonl(source)


def read_jsonl(path: str | Path) -> list[TraceExample]:
    p = Path(path)
    if not p.is_file():
        raise DataError("trace file not found", file=str(p), expected=JSONL_FORMAT)
    out: list[TraceExample] = []
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"line {n}: invalid JSON ({exc.msg})", file=str(p)) from exc
            if not isinstance(obj, dict):
                raise DataError(f"line {n}: not a JSON object", file=str(p), expected=JSONL_FORMAT)
            out.append(_from_json(obj, n, str(p)))
    return out


def _from_json(obj: dict[str, Any], n: int, file: str) -> TraceExample:
    def bad(what: str) -> DataError:
        return DataError(f"line {n}: {what}", file=file, expected=JSONL_FORMAT)

    prompt, system = obj.get("prompt"), None
    if prompt is None and isinstance(obj.get("messages"), list):
        prompt, system = _prompt_of(obj["messages"])
    answer = obj.get("answer", obj.get("label"))
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad("no prompt text (`prompt` or `messages`)")
    if not isinstance(answer, str):
        raise bad("no answer text (`answer` or `label`)")
    for key, kind in (
        ("task", str),
        ("model", str),
        ("gold", str),
        ("accepted", bool),
        ("remote", bool),
    ):
        if obj.get(key) is not None and not isinstance(obj[key], kind):
            raise bad(f"`{key}` must be a {kind.__name__}")
    score = obj.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        raise bad("`score` must be a number")
    return TraceExample(
        prompt=prompt,
        answer=answer,
        task=obj.get("task"),
        model=obj.get("model"),
        remote=obj.get("remote", True),
        score=float(score) if score is not None else None,
        accepted=obj.get("accepted", True),
        gold=obj.get("gold"),
        system=system,
        source_id=str(obj.get("id", f"line {n}")),
        created=float(n),
    )


def _prompt_of(messages: Sequence[Any]) -> tuple[str | None, str | None]:
    """(the last user message, the first system message) of an OpenAI message list."""
    prompt = system = None
    for m in messages:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if not isinstance(content, str):
            continue
        if m.get("role") == "user":
            prompt = content
        elif m.get("role") == "system" and system is None:
            system = content
    return prompt, system


def read_store(url: str) -> list[Any]:
    """Every record of a trace store (TraceRecord), oldest first. A SQLite file is checked first
    so that a wrong path never creates an empty store."""
    from duetto.store import TraceStore, normalise_url

    full = normalise_url(url)
    if full.startswith("sqlite:///"):
        _check_sqlite(full[len("sqlite:///") :], url)

    async def read() -> list[Any]:
        store = TraceStore(full)
        try:
            await store.start()
            n = await store.count()
            records = await store.recent(n) if n else []
        finally:
            await store.close()
        return list(reversed(records))

    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(read())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from async code
            return pool.submit(asyncio.run, read()).result()
    except UserError:
        raise
    except Exception as exc:  # connection refused, bad URL, authentication
        raise DataError(
            f"cannot read the trace store: {type(exc).__name__}: {exc}", file=url
        ) from exc


def _check_sqlite(path: str, shown: str) -> None:
    if not path or path == ":memory:" or not Path(path).is_file():
        raise DataError(
            "trace store not found",
            file=shown,
            expected="a SQLite file written by `duetto serve` or a store URL",
        )
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='duetto_traces'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise DataError(f"not a SQLite database ({exc})", file=shown) from exc
    if found is None:
        raise DataError("no duetto_traces table: not a duetto trace store", file=shown)


def example_from_record(record: Any) -> TraceExample | None:
    """A stored gateway record as an example (None: nothing to learn from, e.g. no prompt)."""
    body: dict[str, Any] = record.body or {}
    request = body.get("request") or {}
    prompt, system = _prompt_of(request.get("messages") or [])
    if prompt is None:
        return None
    meta = request.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    task = body.get("task") or request.get("task") or meta.get("task") or record.model
    model, remote, score = record.answered_by, None, None
    if isinstance(body.get("trace"), dict):
        path = answering_path(Step.from_dict(body["trace"]))
        leaf = path[-1]
        model, remote, score = leaf.name, leaf.usage.remote_calls > 0, verifier_score(path)
    return TraceExample(
        prompt=prompt,
        answer=body.get("response") or "",
        task=str(task),
        model=model,
        remote=remote,
        score=score,
        accepted=record.status == "ok",
        system=system,
        source_id=record.id,
        created=record.created,
    )


# --------------------------------------------------------------------------- traces


def answering_path(root: Step) -> list[Step]:
    """The steps from the root to the leaf whose text was returned.

    A node that names its answer is followed: a cascade's `extra.answered_by`, a route's
    `extra.chosen` (a name), a fusion's `extra.chosen` (a candidate index), the gateway's
    fallback `extra.fallback_to`. Otherwise the answer is its last child that is not a helper
    (judge, verifier, hint): every strategy returns its last model's text."""
    path = [root]
    step = root
    while step.children:
        step = _answering_child(step)
        path.append(step)
    return path


def _answering_child(step: Step) -> Step:
    extra = step.extra or {}
    for key in ("answered_by", "fallback_to", "chosen"):
        hint = extra.get(key)
        if isinstance(hint, int) and not isinstance(hint, bool) and 0 <= hint < len(step.children):
            return step.children[hint]
        if isinstance(hint, str):
            for child in reversed(step.children):
                if child.name == hint or _contains(child, hint):
                    return child
    for child in reversed(step.children):
        if child.role not in HELPER_ROLES:
            return child
    return step.children[-1]


def _contains(step: Step, name: str) -> bool:
    return any(c.name == name or _contains(c, name) for c in step.children)


def verifier_score(path: Sequence[Step]) -> float | None:
    """The score of the verified level that accepted this answer (a cascade's draft node)."""
    for step in reversed(path):
        if step.role == "draft" and step.decision == "accepted" and step.score is not None:
            return float(step.score)
    return None
