"""The loop's tables, in the trace store's database (part "loop" of `schema_version`):

    {prefix}shadows      a second answer to a stored request, made in the background:
                         kind "shadow" (a candidate beside the serving model) or "audit" (the
                         LLM beside a locally answered request)
    {prefix}labels       a score in [0, 1] of one model's answer to one request, with its source
                         ("agreement" | "judge" | "feedback" | "gold") and what it cost
    {prefix}loop_state   small shared state (the controller's thresholds), compare-and-set

Rows of shadows and labels are never updated. `examples()` joins them with the traces: one
`LabelledExample` per (request, labelled model) — what `duetto fit` reads, and only through
this API. Every call runs on the trace store's worker thread (`TraceStore.call`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from duetto.store import Migration, TraceStore, versions_table

LabelSource = Literal["agreement", "judge", "feedback", "gold"]
SOURCES: tuple[str, ...] = ("agreement", "judge", "feedback", "gold")
ShadowKind = Literal["shadow", "audit"]


@dataclass(slots=True)
class Shadow:
    """A background answer: `candidate` answered the request of trace `trace_id`. `answer`
    holds what was kept of the response (usage, confidence, mean logprob, error)."""

    trace_id: str
    candidate: str
    text: str | None
    kind: str = "shadow"
    answer: dict[str, Any] = field(default_factory=dict)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    created: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(slots=True)
class Label:
    """How good `candidate`'s answer to trace `trace_id` was: `score` in [0, 1]. `strategy` is
    the trace's requested model or strategy; `kind` says what made it: "shadow" or "audit"
    (a background answer pair), "served" (feedback on what the user got), "gold"."""

    trace_id: str
    candidate: str
    source: str
    score: float
    cost_usd: float = 0.0
    strategy: str | None = None
    kind: str = "served"
    detail: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"label source {self.source!r} is not one of {SOURCES}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"label score {self.score} is not within [0, 1]")


@dataclass(slots=True)
class LabelledExample:
    """One labelled answer to one stored request (plain data for `duetto fit`).

    `request` is the stored ChatRequest dict (messages, max_tokens); `served_by`/`served_text`
    what the user got; `candidate`/`candidate_text` the labelled answer (the served one itself
    for feedback and audits); `reference_text` the other answer of the pair (the LLM's, for an
    audit or a shadow served by the LLM); `labels` is [(source, score, cost_usd)]; `gold` the
    gold score if a human labelled it."""

    trace_id: str
    created: float
    strategy: str
    request: dict[str, Any]
    served_by: str | None
    served_text: str | None
    candidate: str
    candidate_text: str | None
    candidate_confidence: float | None = None
    candidate_logprob: float | None = None
    reference_text: str | None = None
    labels: list[tuple[str, float, float]] = field(default_factory=list)
    gold: float | None = None

    @property
    def score(self) -> float | None:
        """Gold if any, else the mean of the other labels (None without labels)."""
        if self.gold is not None:
            return self.gold
        scores = [s for _, s, _ in self.labels]
        return sum(scores) / len(scores) if scores else None


class LoopStore:
    """The loop's tables over a started `TraceStore`. `await start()` migrates them."""

    def __init__(self, traces: TraceStore) -> None:
        self.traces = traces
        self._shadows: Any = None
        self._labels: Any = None
        self._state: Any = None

    async def start(self) -> LoopStore:
        await self.traces.migrate("loop", MIGRATIONS)
        self._shadows, self._labels, self._state = _tables(self.traces.prefix)
        return self

    # ---- writes ----------------------------------------------------------------------------

    async def add_shadow(self, shadow: Shadow) -> Shadow:
        row = {
            "id": shadow.id,
            "trace_id": shadow.trace_id,
            "candidate": shadow.candidate,
            "kind": shadow.kind,
            "text": shadow.text,
            "answer_json": json.dumps(shadow.answer, default=str),
            "cost_usd": shadow.cost_usd,
            "latency_ms": shadow.latency_ms,
            "created": shadow.created,
        }
        await self.traces.call(lambda conn: conn.execute(self._shadows.insert(), [row]))
        return shadow

    async def add_label(self, label: Label) -> Label:
        await self.add_labels([label])
        return label

    async def add_labels(self, labels: Iterable[Label]) -> int:
        rows = [
            {
                "id": lb.id,
                "trace_id": lb.trace_id,
                "candidate": lb.candidate,
                "source": lb.source,
                "score": float(lb.score),
                "cost_usd": lb.cost_usd,
                "strategy": lb.strategy,
                "kind": lb.kind,
                "detail": json.dumps(lb.detail, default=str),
                "created": lb.created,
            }
            for lb in labels
        ]
        if rows:
            await self.traces.call(lambda conn: conn.execute(self._labels.insert(), rows))
        return len(rows)

    # ---- reads -----------------------------------------------------------------------------

    async def labels(
        self,
        since: float | None = None,
        source: str | None = None,
        *,
        trace_id: str | None = None,
        kind: str | None = None,
        strategy: str | None = None,
        limit: int | None = None,
    ) -> list[Label]:
        """Labels oldest first (with `limit`: the newest `limit` of them, oldest first)."""
        t = self._labels

        def q(conn: Any) -> list[Any]:
            stmt = t.select()
            for col, value in (
                ("source", source),
                ("trace_id", trace_id),
                ("kind", kind),
                ("strategy", strategy),
            ):
                if value is not None:
                    stmt = stmt.where(t.c[col] == value)
            if since is not None:
                stmt = stmt.where(t.c.created >= since)
            if limit is not None:
                stmt = stmt.order_by(t.c.created.desc(), t.c.id).limit(limit)
                return list(reversed(list(conn.execute(stmt).mappings())))
            return list(conn.execute(stmt.order_by(t.c.created, t.c.id)).mappings())

        return [_label(r) for r in await self.traces.call(q)]

    async def shadows(
        self, since: float | None = None, *, trace_id: str | None = None, kind: str | None = None
    ) -> list[Shadow]:
        t = self._shadows

        def q(conn: Any) -> list[Any]:
            stmt = t.select()
            if since is not None:
                stmt = stmt.where(t.c.created >= since)
            if trace_id is not None:
                stmt = stmt.where(t.c.trace_id == trace_id)
            if kind is not None:
                stmt = stmt.where(t.c.kind == kind)
            return list(conn.execute(stmt.order_by(t.c.created, t.c.id)).mappings())

        return [_shadow(r) for r in await self.traces.call(q)]

    async def for_trace(self, trace_id: str) -> dict[str, Any]:
        """The shadows and labels of one trace, as JSON-ready data (GET /v1/traces/{id})."""
        shadows = await self.shadows(trace_id=trace_id)
        labels = await self.labels(trace_id=trace_id)
        return {
            "shadows": [_shadow_dict(s) for s in shadows],
            "labels": [_label_dict(lb) for lb in labels],
        }

    async def examples(self, since: float | None = None) -> list[LabelledExample]:
        """Every labelled (request, model) pair with its request, both answers and its labels,
        ordered by the request's time. Labels on a trace no longer stored are skipped."""
        labels = await self.labels(since=since)
        if not labels:
            return []
        ids = sorted({lb.trace_id for lb in labels})
        traces: dict[str, Any] = {}
        for chunk in range(0, len(ids), 500):
            for rec in await self._traces_by_id(ids[chunk : chunk + 500]):
                traces[rec.id] = rec
        shadows: dict[tuple[str, str], Shadow] = {}
        for chunk in range(0, len(ids), 500):
            for s in await self._shadows_by_trace(ids[chunk : chunk + 500]):
                shadows.setdefault((s.trace_id, s.candidate), s)
        out: dict[tuple[str, str], LabelledExample] = {}
        for lb in labels:
            rec = traces.get(lb.trace_id)
            if rec is None:
                continue
            key = (lb.trace_id, lb.candidate)
            ex = out.get(key)
            if ex is None:
                ex = out[key] = _example(rec, lb.candidate, shadows)
            if lb.source == "gold":
                ex.gold = lb.score
            else:
                ex.labels.append((lb.source, lb.score, lb.cost_usd))
        return sorted(out.values(), key=lambda e: (e.created, e.trace_id, e.candidate))

    async def _traces_by_id(self, ids: list[str]) -> list[Any]:
        from duetto.store import _record, traces_table

        t = traces_table(self.traces.prefix)

        def q(conn: Any) -> list[Any]:
            return list(conn.execute(t.select().where(t.c.id.in_(ids))).mappings())

        return [_record(r) for r in await self.traces.call(q)]

    async def _shadows_by_trace(self, ids: list[str]) -> list[Shadow]:
        t = self._shadows

        def q(conn: Any) -> list[Any]:
            stmt = t.select().where(t.c.trace_id.in_(ids)).order_by(t.c.created)
            return list(conn.execute(stmt).mappings())

        return [_shadow(r) for r in await self.traces.call(q)]

    # ---- shared state ----------------------------------------------------------------------

    async def get_state(self, key: str) -> tuple[int, dict[str, Any]] | None:
        """(version, value) of a state row, None if it was never set."""
        t = self._state

        def q(conn: Any) -> Any:
            return conn.execute(t.select().where(t.c.key == key)).mappings().first()

        row = await self.traces.call(q)
        return None if row is None else (int(row["version"]), json.loads(row["value"]))

    async def put_state(self, key: str, value: dict[str, Any], expect: int | None) -> bool:
        """Write a state row if its version is still `expect` (None: the row must not exist);
        False when another replica wrote it first."""
        import sqlalchemy as sa

        t = self._state
        text = json.dumps(value, default=str)

        def q(conn: Any) -> bool:
            if expect is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            t.insert().values(key=key, version=1, value=text, updated=time.time())
                        )
                except sa.exc.IntegrityError:
                    return False
                return True
            res = conn.execute(
                t.update()
                .where(t.c.key == key, t.c.version == expect)
                .values(version=expect + 1, value=text, updated=time.time())
            )
            return bool(res.rowcount == 1)

        return bool(await self.traces.call(q))

    async def drop_all(self) -> None:
        """Drop the loop tables and forget their version (tests with a private prefix)."""

        def q(conn: Any) -> None:
            for t in (self._labels, self._shadows, self._state):
                t.drop(conn, checkfirst=True)
            versions = versions_table(self.traces.prefix)
            conn.execute(versions.delete().where(versions.c.part == "loop"))

        await self.traces.call(q)


def _example(rec: Any, candidate: str, shadows: dict[tuple[str, str], Shadow]) -> LabelledExample:
    body = rec.body
    served_text = body.get("response")
    mine = shadows.get((rec.id, candidate))
    others = [s for (tid, c), s in shadows.items() if tid == rec.id and c != candidate]
    if mine is not None:  # a shadow candidate: the served answer is its reference
        text, answer, reference = mine.text, mine.answer, served_text
    else:  # the served answer itself (feedback, gold, an audit's label)
        text, answer = served_text, _served_features(body)
        audit = [s for s in others if s.kind == "audit"]
        reference = audit[0].text if audit else None
    return LabelledExample(
        trace_id=rec.id,
        created=rec.created,
        strategy=rec.model,
        request=body.get("request") or {},
        served_by=rec.answered_by,
        served_text=served_text,
        candidate=candidate,
        candidate_text=text,
        candidate_confidence=answer.get("confidence"),
        candidate_logprob=answer.get("logprob"),
        reference_text=reference,
    )


def _served_features(body: dict[str, Any]) -> dict[str, Any]:
    """The served answer's decision score, if its trace recorded one."""
    trace = body.get("trace") or {}
    score = trace.get("score")
    return {"confidence": score} if isinstance(score, int | float) else {}


def _tables(prefix: str, metadata: Any = None) -> tuple[Any, Any, Any]:
    import sqlalchemy as sa

    md = metadata if metadata is not None else sa.MetaData()
    shadows = sa.Table(
        f"{prefix}shadows",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("trace_id", sa.String(64), nullable=False, index=True),
        sa.Column("candidate", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("answer_json", sa.Text, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("created", sa.Float, nullable=False, index=True),
    )
    labels = sa.Table(
        f"{prefix}labels",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("trace_id", sa.String(64), nullable=False, index=True),
        sa.Column("candidate", sa.String(256), nullable=False),
        sa.Column("source", sa.String(16), nullable=False, index=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("strategy", sa.String(256)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False, index=True),
    )
    state = sa.Table(
        f"{prefix}loop_state",
        md,
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    return shadows, labels, state


def _m1_loop(conn: Any, prefix: str) -> None:
    for t in _tables(prefix):
        t.create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [_m1_loop]
"""The loop tables' migrations; version n is MIGRATIONS[n - 1]. Append only."""


def _shadow(row: Any) -> Shadow:
    return Shadow(
        id=row["id"],
        trace_id=row["trace_id"],
        candidate=row["candidate"],
        kind=row["kind"],
        text=row["text"],
        answer=json.loads(row["answer_json"] or "{}"),
        cost_usd=float(row["cost_usd"]),
        latency_ms=float(row["latency_ms"]),
        created=float(row["created"]),
    )


def _label(row: Any) -> Label:
    return Label(
        id=row["id"],
        trace_id=row["trace_id"],
        candidate=row["candidate"],
        source=row["source"],
        score=float(row["score"]),
        cost_usd=float(row["cost_usd"]),
        strategy=row["strategy"],
        kind=row["kind"],
        detail=json.loads(row["detail"] or "{}"),
        created=float(row["created"]),
    )


def _shadow_dict(s: Shadow) -> dict[str, Any]:
    return {
        "id": s.id,
        "kind": s.kind,
        "candidate": s.candidate,
        "text": s.text,
        "answer": s.answer,
        "cost_usd": s.cost_usd,
        "latency_ms": s.latency_ms,
        "created": s.created,
    }


def _label_dict(lb: Label) -> dict[str, Any]:
    return {
        "id": lb.id,
        "candidate": lb.candidate,
        "source": lb.source,
        "score": lb.score,
        "cost_usd": lb.cost_usd,
        "kind": lb.kind,
        "detail": lb.detail,
        "created": lb.created,
    }
