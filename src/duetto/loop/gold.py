"""Import a human-labelled audit file (gold) into the loop's labels: `duetto labels import`.

Each line names a request by its trace id or by its text (the last user message, compared up
to white space and case, so every stored request with that text gets the label) and gives a
gold answer or a score. A gold answer scores the served answer and every shadow answer of that
request (`labels.gold_score`); a score is the served answer's. Lines matching no stored request
are counted, not fatal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duetto.answers import prompt_key
from duetto.loop.labels import GoldItem, gold_score, parse_gold
from duetto.loop.store import Label, LoopStore
from duetto.store import TraceStore, traces_table


@dataclass
class GoldReport:
    items: int = 0
    matched: int = 0
    labels: int = 0
    unmatched: list[int] = field(default_factory=list)  # line numbers (1-based, non-blank)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "matched": self.matched,
            "labels": self.labels,
            "unmatched": len(self.unmatched),
        }


def _last_user(body: dict[str, Any]) -> str | None:
    for m in reversed((body.get("request") or {}).get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return str(m.get("content") or "")
    return None


async def _stored(traces: TraceStore) -> list[tuple[str, str | None, str, str | None, str]]:
    """(id, answered_by, model, response, key of the last user message) of every ok trace."""
    import json

    t = traces_table(traces.prefix)

    def q(conn: Any) -> list[Any]:
        cols = (t.c.id, t.c.answered_by, t.c.model, t.c.body)
        return list(conn.execute(t.select().with_only_columns(*cols).where(t.c.status == "ok")))

    out = []
    for tid, by, model, raw in await traces.call(q):
        body = json.loads(raw)
        out.append((tid, by, model, body.get("response"), prompt_key(_last_user(body) or "")))
    return out


async def import_gold(store: LoopStore, path: str | Path) -> GoldReport:
    """Read `path` (JSONL) and store its gold labels. ValueError for a malformed file (nothing
    is stored then)."""
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    items = parse_gold(text.splitlines())
    report = GoldReport(items=len(items))
    traces = await _stored(store.traces)
    by_id = {row[0]: row for row in traces}
    by_text: dict[str, list[tuple[str, str | None, str, str | None, str]]] = {}
    for row in traces:
        by_text.setdefault(row[4], []).append(row)
    labels: list[Label] = []
    for n, item in enumerate(items, 1):
        rows = _matches(item, by_id, by_text)
        if not rows:
            report.unmatched.append(n)
            continue
        report.matched += 1
        for tid, by, model, response, _ in rows:
            labels += await _labels_for(store, item, tid, by, model, response)
    report.labels = await store.add_labels(labels)
    return report


def _matches(
    item: GoldItem,
    by_id: dict[str, Any],
    by_text: dict[str, list[Any]],
) -> list[Any]:
    if item.trace_id is not None:
        row = by_id.get(item.trace_id)
        return [row] if row is not None else []
    return by_text.get(prompt_key(item.request or ""), [])


async def _labels_for(
    store: LoopStore,
    item: GoldItem,
    trace_id: str,
    served_by: str | None,
    strategy: str,
    response: str | None,
) -> list[Label]:
    detail: dict[str, Any] = {"gold_answer": item.answer} if item.answer is not None else {}
    served = served_by or strategy
    if item.answer is None:
        assert item.score is not None
        return [
            Label(
                trace_id, served, "gold", item.score, strategy=strategy, kind="gold", detail=detail
            )
        ]
    out = []
    if response is not None:
        score = gold_score(response, item.answer)
        out.append(
            Label(trace_id, served, "gold", score, strategy=strategy, kind="gold", detail=detail)
        )
    for s in await store.shadows(trace_id=trace_id):
        if s.text is not None:
            score = gold_score(s.text, item.answer)
            out.append(
                Label(
                    trace_id,
                    s.candidate,
                    "gold",
                    score,
                    strategy=strategy,
                    kind="gold",
                    detail={**detail, "answer_kind": s.kind},
                )
            )
    return out
