"""The append-only trace store: one record per request the gateway accepted.

SQLite (WAL) by default, PostgreSQL when given a `postgresql://` URL (replicas share one), both
through SQLAlchemy Core. Every database call runs on one worker thread per store, so the event
loop never blocks on I/O and SQLite never sees two writers from one process. Appends that arrive
together are committed together (group commit): one transaction per batch, with a per-record
retry when a batch fails, so one bad record cannot take its neighbours down.

Guarantees the gateway relies on:
- `append` returns only after the record is committed (a `kill -9` afterwards loses nothing:
  WAL with synchronous=NORMAL survives a process crash; PostgreSQL commits are durable).
- Trace ids are primary keys and rows are never updated: a request is stored at most once, and
  the gateway appends each accepted request exactly once.

Schema evolution (the simonw/llm way): each part of the database (`traces` here, `billing` in
`duetto.gateway.billing`) has a list of numbered forward migrations, plain functions of
(connection, table prefix). `migrate` runs those not yet applied, in order and once each, and
records the part's version in the `schema_version` table. Migration 1 is the schema as it was
before versions existed (created only if missing), so a database from then opens and is
upgraded in place. Never edit a released migration: append a new one. Other parts of the
gateway reuse this store's engine and worker through `call`.

SQLAlchemy is imported when a store starts, never by `import duetto`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DB = "sqlite:///duetto-gateway.db"
_BATCH = 512

Migration = Callable[[Any, str], None]
"""One forward schema step: (SQLAlchemy connection inside a transaction, table prefix)."""


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
    """The store. `await start()` creates or migrates the traces table; `await close()`
    drains. A database migrated by a newer duetto keeps its version (migrations only go
    forward)."""

    def __init__(self, url: str | None = None, *, prefix: str = "duetto_") -> None:
        self.url = normalise_url(url)
        self.prefix = prefix
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: Any = None  # sqlalchemy Engine
        self._traces: Any = None  # sqlalchemy Table
        # appends: one DBAPI connection the worker keeps, and the INSERT in the driver's own
        # paramstyle (SQLAlchemy's statement machinery was most of an append's CPU)
        self._raw: Any = None
        self._insert_sql = ""
        self._columns: list[str] = []
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

        with db.begin() as conn:
            self._migrate(conn, "traces", MIGRATIONS)
        self._db = db
        self._traces = traces_table(self.prefix)
        quote = db.dialect.identifier_preparer.quote
        self._columns = [c.name for c in self._traces.columns]
        mark = "?" if db.dialect.paramstyle == "qmark" else "%s"
        self._insert_sql = "INSERT INTO {} ({}) VALUES ({})".format(
            quote(self._traces.name),
            ", ".join(quote(c) for c in self._columns),
            ", ".join([mark] * len(self._columns)),
        )

    async def migrate(self, part: str, migrations: Sequence[Migration]) -> int:
        """Bring `part` of the schema up to date (see the module docstring); its version."""
        return int(await self._call(lambda conn: self._migrate(conn, part, migrations)))

    def _migrate(self, conn: Any, part: str, migrations: Sequence[Migration]) -> int:
        import sqlalchemy as sa

        if self.dialect == "postgresql":
            # two replicas starting together must not race on CREATE TABLE or a migration
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7431)"))
        versions = versions_table(self.prefix)
        versions.create(conn, checkfirst=True)
        found = conn.execute(
            sa.select(versions.c.version).where(versions.c.part == part)
        ).scalar_one_or_none()
        current = int(found or 0)
        for version in range(current + 1, len(migrations) + 1):
            migrations[version - 1](conn, self.prefix)
        if current < len(migrations):
            conn.execute(versions.delete().where(versions.c.part == part))
            conn.execute(versions.insert().values(part=part, version=len(migrations)))
        return max(current, len(migrations))

    async def version(self, part: str = "traces") -> int:
        """The schema version recorded for `part` (0: never migrated)."""
        import sqlalchemy as sa

        versions = versions_table(self.prefix)

        def q(conn: Any) -> int:
            stmt = sa.select(versions.c.version).where(versions.c.part == part)
            return int(conn.execute(stmt).scalar_one_or_none() or 0)

        return int(await self._call(q))

    # ---- the worker thread -----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._drop_raw(invalidate=False)
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

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run `fn(connection)` in one transaction on the store's worker thread."""
        return await self._call(fn)

    def _append_batch(self, jobs: list[_Job]) -> None:
        rows = [_row(j.arg) for j in jobs]
        try:
            self._insert(rows)
        except Exception:
            self._drop_raw(invalidate=True)
            for j, row in zip(jobs, rows, strict=True):  # isolate the failing record
                try:
                    with self._db.begin() as conn:
                        conn.execute(self._traces.insert(), [row])
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

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One transaction for the batch, straight through the driver."""
        if self._raw is None:
            self._raw = self._db.raw_connection()
        raw = self._raw
        cursor = raw.cursor()
        try:
            cursor.executemany(self._insert_sql, [tuple(r[c] for c in self._columns) for r in rows])
            raw.commit()
        except Exception:
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
        finally:
            cursor.close()

    def _drop_raw(self, *, invalidate: bool) -> None:
        """Give the append connection back (after a failure: discard it, it may be broken)."""
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.invalidate() if invalidate else raw.close()

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
            t = self._traces
            return conn.execute(t.select().where(t.c.id == trace_id)).mappings().first()

        row = await self._call(q)
        return _record(row) if row is not None else None

    async def count(self) -> int:
        import sqlalchemy as sa

        def q(conn: Any) -> int:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(self._traces)).scalar_one()
            )

        return int(await self._call(q))

    async def ids(self) -> list[str]:
        def q(conn: Any) -> list[str]:
            return [
                r[0]
                for r in conn.execute(self._traces.select().with_only_columns(self._traces.c.id))
            ]

        return list(await self._call(q))

    async def recent(self, limit: int = 50) -> list[TraceRecord]:
        def q(conn: Any) -> list[Any]:
            t = self._traces
            stmt = t.select().order_by(t.c.created.desc()).limit(limit)
            return list(conn.execute(stmt).mappings())

        return [_record(r) for r in await self._call(q)]

    async def drop_all(self) -> None:
        """Drop the traces and the version table (tests with a private prefix; drop the
        billing tables first)."""
        await self._call(lambda conn: _drop(conn, self.prefix))


def _drop(conn: Any, prefix: str) -> None:
    import sqlalchemy as sa

    for name in ("traces", "schema_version"):
        sa.Table(f"{prefix}{name}", sa.MetaData()).drop(conn, checkfirst=True)


def traces_table(prefix: str, metadata: Any = None) -> Any:
    """The traces table as it is today (what every migration so far adds up to)."""
    import sqlalchemy as sa

    return sa.Table(
        f"{prefix}traces",
        metadata if metadata is not None else sa.MetaData(),
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


def versions_table(prefix: str) -> Any:
    """`schema_version`: one row per part of the schema (traces, billing) and its version."""
    import sqlalchemy as sa

    return sa.Table(
        f"{prefix}schema_version",
        sa.MetaData(),
        sa.Column("part", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )


def _m1_traces(conn: Any, prefix: str) -> None:
    """The traces table as created before schema versions (kept if it exists)."""
    traces_table(prefix).create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [_m1_traces]
"""The traces' migrations; version n is MIGRATIONS[n - 1]. Append only."""


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
