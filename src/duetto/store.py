"""Append-only trace store, plus the API keys and budgets the gateway shares between replicas.

SQLite (WAL) by default, PostgreSQL when given a `postgresql://` URL, both through SQLAlchemy
Core. Every database call runs on one worker thread per store, so the event loop never blocks
on I/O and SQLite never sees two writers from one process. Appends that arrive together are
committed together (group commit): one transaction per batch, with a per-record retry when a
batch fails, so one bad record cannot take its neighbours down.

Guarantees the gateway relies on:
- `append` returns only after the record is committed (a `kill -9` afterwards loses nothing:
  WAL with synchronous=NORMAL survives a process crash; PostgreSQL commits are durable).
- Trace ids are primary keys and rows are never updated: a request is stored at most once, and
  the gateway appends each accepted request exactly once.
- Budgets: `reserve` is one conditional UPDATE (spent + reserved + amount <= budget), atomic on
  both engines (a row lock on PostgreSQL, the database write lock on SQLite), so concurrent
  replicas cannot overspend. Each reservation is a row; `settle`/`release` delete it first and
  touch the key only if it existed, so they are idempotent. Reservations older than a TTL (a
  crashed replica's) are released by `sweep`.

SQLAlchemy is imported when a store starts, never by `import duetto`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DB = "sqlite:///duetto-gateway.db"
_BATCH = 512
_EPS = 1e-12  # float sums of many small costs drift by ~1e-16


@dataclass(slots=True)
class TraceRecord:
    """One accepted request as stored. `body` holds usage, trace, request and response."""

    id: str
    model: str  # requested model or strategy
    status: str  # ok | error | cancelled
    http_status: int = 200
    key: str | None = None
    answered_by: str | None = None  # the model or strategy whose answer was returned
    stream: bool = False
    fallback: bool = False
    cost_usd: float = 0.0
    llm_only_cost_usd: float = 0.0  # the counterfactual: the same request on the LLM alone
    latency_ms: float = 0.0
    created: float = field(default_factory=time.time)
    body: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "key": self.key,
            "model": self.model,
            "answered_by": self.answered_by,
            "status": self.status,
            "http_status": self.http_status,
            "stream": self.stream,
            "fallback": self.fallback,
            "cost_usd": self.cost_usd,
            "llm_only_cost_usd": self.llm_only_cost_usd,
            "latency_ms": self.latency_ms,
            **self.body,
        }


@dataclass(slots=True)
class KeyRecord:
    name: str
    key_hash: str
    budget_usd: float | None = None
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    rpm: int | None = None


@dataclass(slots=True)
class _Job:
    kind: str  # "append" | "call"
    arg: Any
    future: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None


def normalise_url(url: str | None) -> str:
    """`postgresql://` → the psycopg 3 driver; a bare path → SQLite file."""
    if not url:
        return DEFAULT_DB
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{Path(url)}"
    return url


class TraceStore:
    """The store. `await start()` creates the tables if needed; `await close()` drains."""

    def __init__(self, url: str | None = None, *, prefix: str = "duetto_") -> None:
        self.url = normalise_url(url)
        self.prefix = prefix
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: Any = None  # sqlalchemy Engine
        self._t: Any = None  # table namespace
        self.appended = 0
        self.failed = 0

    @property
    def dialect(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> TraceStore:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="duetto-store", daemon=True)
            self._thread.start()
            await self._call(self._setup)
        return self

    async def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, 30)
        self._thread = None
        if self._db is not None:
            self._db.dispose()

    def _setup(self, _: Any) -> None:
        import sqlalchemy as sa

        kw: dict[str, Any] = {}
        if self.dialect == "postgresql":
            kw = {"pool_size": 2, "max_overflow": 0, "pool_pre_ping": True}
        db = sa.create_engine(self.url, **kw)
        if self.dialect == "sqlite":

            @sa.event.listens_for(db, "connect")
            def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
                cur.execute("PRAGMA busy_timeout=10000")  # other processes on the same file
                cur.close()

        md = sa.MetaData()
        p = self.prefix
        traces = sa.Table(
            f"{p}traces",
            md,
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("created", sa.Float, nullable=False, index=True),
            sa.Column("key", sa.String(128), index=True),
            sa.Column("model", sa.String(256), nullable=False),
            sa.Column("answered_by", sa.String(256)),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("http_status", sa.Integer, nullable=False),
            sa.Column("stream", sa.Boolean, nullable=False),
            sa.Column("fallback", sa.Boolean, nullable=False),
            sa.Column("cost_usd", sa.Float, nullable=False),
            sa.Column("llm_only_cost_usd", sa.Float, nullable=False),
            sa.Column("latency_ms", sa.Float, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
        )
        keys = sa.Table(
            f"{p}keys",
            md,
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("budget_usd", sa.Float),
            sa.Column("spent_usd", sa.Float, nullable=False, default=0.0),
            sa.Column("reserved_usd", sa.Float, nullable=False, default=0.0),
            sa.Column("rpm", sa.Integer),
        )
        reservations = sa.Table(
            f"{p}reservations",
            md,
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("key", sa.String(128), nullable=False),
            sa.Column("amount", sa.Float, nullable=False),
            sa.Column("created", sa.Float, nullable=False),
        )
        with db.begin() as conn:
            if self.dialect == "postgresql":
                # two replicas starting together must not race on CREATE TABLE
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7431)"))
            md.create_all(conn, checkfirst=True)
        self._db = db
        self._t = _Tables(traces, keys, reservations)

    # ---- the worker thread -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < _BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            appends = [j for j in batch if j.kind == "append"]
            if appends:
                self._append_batch(appends)
            for j in batch:
                if j.kind == "call":
                    try:
                        _resolve(j, self._run(j.arg), None)
                    except Exception as exc:
                        _resolve(j, None, exc)

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        if self._db is None:  # only _setup runs before the engine exists
            return fn(None)
        with self._db.begin() as conn:
            return fn(conn)

    def _append_batch(self, jobs: list[_Job]) -> None:
        rows = [_row(j.arg) for j in jobs]
        try:
            with self._db.begin() as conn:
                conn.execute(self._t.traces.insert(), rows)
        except Exception:
            for j, row in zip(jobs, rows, strict=True):  # isolate the failing record
                try:
                    with self._db.begin() as conn:
                        conn.execute(self._t.traces.insert(), [row])
                except Exception as exc:
                    self.failed += 1
                    _resolve(j, None, exc)
                else:
                    self.appended += 1
                    _resolve(j, None, None)
            return
        self.appended += len(jobs)
        for j in jobs:
            _resolve(j, None, None)

    async def _call(self, fn: Callable[[Any], Any]) -> Any:
        if self._thread is None:
            raise RuntimeError("the store is not started")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job("call", fn, fut, loop))
        return await fut

    # ---- traces ----------------------------------------------------------------------------

    async def append(self, record: TraceRecord) -> None:
        """Store one record; returns once it is committed. Raises on a duplicate id."""
        if self._thread is None:
            raise RuntimeError("the store is not started")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job("append", record, fut, loop))
        await fut

    def append_nowait(self, record: TraceRecord) -> None:
        """Queue one record without waiting (used where the caller is being cancelled)."""
        self._queue.put(_Job("append", record, None, None))

    async def get(self, trace_id: str) -> TraceRecord | None:
        def q(conn: Any) -> Any:
            t = self._t.traces
            return conn.execute(t.select().where(t.c.id == trace_id)).mappings().first()

        row = await self._call(q)
        return _record(row) if row is not None else None

    async def count(self) -> int:
        import sqlalchemy as sa

        def q(conn: Any) -> int:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(self._t.traces)).scalar_one()
            )

        return int(await self._call(q))

    async def ids(self) -> list[str]:
        def q(conn: Any) -> list[str]:
            return [
                r[0]
                for r in conn.execute(
                    self._t.traces.select().with_only_columns(self._t.traces.c.id)
                )
            ]

        return list(await self._call(q))

    async def recent(self, limit: int = 50) -> list[TraceRecord]:
        def q(conn: Any) -> list[Any]:
            t = self._t.traces
            stmt = t.select().order_by(t.c.created.desc()).limit(limit)
            return list(conn.execute(stmt).mappings())

        return [_record(r) for r in await self._call(q)]

    # ---- keys and budgets ------------------------------------------------------------------

    async def upsert_key(self, key: KeyRecord) -> None:
        """Create a key or update its hash, budget and rate limit; never resets what it spent."""

        def q(conn: Any) -> None:
            import hashlib

            from sqlalchemy.dialects import postgresql, sqlite

            t = self._t.keys
            # the same key under another name (a renamed key): retire the old row's hash
            for (other,) in conn.execute(
                t.select()
                .with_only_columns(t.c.name)
                .where(t.c.key_hash == key.key_hash, t.c.name != key.name)
            ):
                retired = hashlib.sha256(f"retired:{other}".encode()).hexdigest()
                conn.execute(t.update().where(t.c.name == other).values(key_hash=retired))

            dialect: Any = postgresql if self.dialect == "postgresql" else sqlite
            stmt = dialect.insert(self._t.keys).values(
                name=key.name,
                key_hash=key.key_hash,
                budget_usd=key.budget_usd,
                spent_usd=0.0,
                reserved_usd=0.0,
                rpm=key.rpm,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={"key_hash": key.key_hash, "budget_usd": key.budget_usd, "rpm": key.rpm},
            )
            conn.execute(stmt)

        await self._call(q)

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        def q(conn: Any) -> Any:
            t = self._t.keys
            return conn.execute(t.select().where(t.c.key_hash == key_hash)).mappings().first()

        row = await self._call(q)
        return KeyRecord(**dict(row)) if row is not None else None

    async def key(self, name: str) -> KeyRecord | None:
        def q(conn: Any) -> Any:
            t = self._t.keys
            return conn.execute(t.select().where(t.c.name == name)).mappings().first()

        row = await self._call(q)
        return KeyRecord(**dict(row)) if row is not None else None

    async def reserve(self, key: str, reservation_id: str, amount: float) -> bool:
        """Atomically hold `amount` USD of `key`'s budget; False when it would exceed it."""
        import sqlalchemy as sa

        def q(conn: Any) -> bool:
            t = self._t.keys
            stmt = (
                t.update()
                .where(t.c.name == key)
                .where(
                    sa.or_(
                        t.c.budget_usd.is_(None),
                        t.c.spent_usd + t.c.reserved_usd + amount <= t.c.budget_usd + _EPS,
                    )
                )
                .values(reserved_usd=t.c.reserved_usd + amount)
            )
            if conn.execute(stmt).rowcount != 1:
                return False
            conn.execute(
                self._t.reservations.insert().values(
                    id=reservation_id, key=key, amount=amount, created=time.time()
                )
            )
            return True

        return bool(await self._call(q))

    async def settle(self, reservation_id: str, cost_usd: float) -> bool:
        """Replace a reservation by the actual cost. False if it was already settled/released."""
        return bool(
            await self._call(lambda conn: self._close_reservation(conn, reservation_id, cost_usd))
        )

    async def release(self, reservation_id: str) -> bool:
        return await self.settle(reservation_id, 0.0)

    def _close_reservation(self, conn: Any, reservation_id: str, cost_usd: float) -> bool:
        r = self._t.reservations
        row = conn.execute(
            r.delete().where(r.c.id == reservation_id).returning(r.c.key, r.c.amount)
        ).first()
        if row is None:
            return False
        t = self._t.keys
        conn.execute(
            t.update()
            .where(t.c.name == row[0])
            .values(reserved_usd=t.c.reserved_usd - row[1], spent_usd=t.c.spent_usd + cost_usd)
        )
        return True

    async def sweep(self, older_than_s: float) -> int:
        """Release reservations older than `older_than_s` (left by a crashed replica)."""

        def q(conn: Any) -> int:
            r = self._t.reservations
            stale = [
                row[0]
                for row in conn.execute(
                    r.select()
                    .with_only_columns(r.c.id)
                    .where(r.c.created < time.time() - older_than_s)
                )
            ]
            return sum(self._close_reservation(conn, rid, 0.0) for rid in stale)

        return int(await self._call(q))

    async def drop_all(self) -> None:
        """Drop this store's tables (tests with a private prefix)."""

        def q(conn: Any) -> None:
            for t in (self._t.reservations, self._t.keys, self._t.traces):
                t.drop(conn, checkfirst=True)

        await self._call(q)


@dataclass(slots=True)
class _Tables:
    traces: Any
    keys: Any
    reservations: Any


def _resolve(job: _Job, result: Any, exc: BaseException | None) -> None:
    fut, loop = job.future, job.loop
    if fut is None or loop is None:
        return

    def done() -> None:
        if fut.done():
            return  # the waiter was cancelled
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed
        loop.call_soon_threadsafe(done)


def _row(r: TraceRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "created": r.created,
        "key": r.key,
        "model": r.model,
        "answered_by": r.answered_by,
        "status": r.status,
        "http_status": r.http_status,
        "stream": r.stream,
        "fallback": r.fallback,
        "cost_usd": r.cost_usd,
        "llm_only_cost_usd": r.llm_only_cost_usd,
        "latency_ms": r.latency_ms,
        "body": json.dumps(r.body, default=str),
    }


def _record(row: Any) -> TraceRecord:
    d = dict(row)
    d["body"] = json.loads(d["body"])
    d["stream"], d["fallback"] = bool(d["stream"]), bool(d["fallback"])
    return TraceRecord(**d)
