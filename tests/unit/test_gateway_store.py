"""The trace store and the gateway's billing tables on SQLite and PostgreSQL: exactly-once
appends, group commit, schema versions and migrations (an old database is upgraded), atomic
budget reservations, idempotent settle/release, crash sweep."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from duetto import store as store_module
from duetto.errors import OverBudget
from duetto.gateway import billing as billing_module
from duetto.gateway.auth import ApiKey
from duetto.gateway.billing import Billing, Budgets, Reservation
from duetto.store import TraceRecord, TraceStore, normalise_url

PG_URL = "postgresql://postgres@localhost:5432/test"


def pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def require_pg() -> None:
    """CI provides PostgreSQL on localhost:5432: there, a missing server fails the test."""
    if pg_reachable():
        return
    if os.environ.get("CI"):
        pytest.fail("PostgreSQL is not reachable on localhost:5432 (CI must provide it)")
    pytest.skip("PostgreSQL is not reachable on localhost:5432")


def db_url(kind: str, tmp_path: Path) -> tuple[str, str]:
    """(URL, table prefix): a file per test on SQLite, a private prefix on PostgreSQL."""
    if kind == "postgresql":
        require_pg()
        return PG_URL, f"t{uuid.uuid4().hex[:8]}_"
    return str(tmp_path / "traces.db"), "duetto_"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TraceStore]:
    url, prefix = db_url(request.param, tmp_path)
    s = TraceStore(url, prefix=prefix)
    await s.start()
    try:
        yield s
    finally:
        if s.dialect == "postgresql":
            await s.drop_all()
        await s.close()


@pytest.fixture
async def billing(store: TraceStore) -> AsyncIterator[Billing]:
    b = await Billing(store).start()
    try:
        yield b
    finally:
        if store.dialect == "postgresql":
            await b.drop_all()


def api_key(name: str, digest: str, budget: float | None) -> ApiKey:
    return ApiKey(name, digest, budget_usd=budget)


def test_urls() -> None:
    assert normalise_url(None).startswith("sqlite:///")
    assert normalise_url("/tmp/x.db") == "sqlite:////tmp/x.db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


async def test_appends_are_committed_once(store: TraceStore) -> None:
    ids = [f"dt-{i}" for i in range(300)]
    await asyncio.gather(
        *[
            store.append(
                TraceRecord(id=i, model="m", status="ok", cost_usd=0.5, body={"response": i})
            )
            for i in ids
        ]
    )
    assert await store.count() == 300
    assert sorted(await store.ids()) == sorted(ids)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await store.append(TraceRecord(id="dt-7", model="m", status="ok"))
    got = await store.get("dt-7")
    assert got is not None and got.body == {"response": "dt-7"} and got.cost_usd == 0.5
    assert await store.count() == 300  # the duplicate did not land, neighbours did
    assert await store.get("nope") is None
    assert len(await store.recent(5)) == 5


async def test_a_bad_record_does_not_sink_its_batch(store: TraceStore) -> None:
    await store.append(TraceRecord(id="dup", model="m", status="ok"))
    results = await asyncio.gather(
        *[store.append(TraceRecord(id=f"ok-{i}", model="m", status="ok")) for i in range(20)],
        store.append(TraceRecord(id="dup", model="m", status="ok")),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Exception) for r in results) == 1
    assert await store.count() == 21


async def test_reservations_never_overspend_under_concurrency(billing: Billing) -> None:
    await billing.upsert_key(api_key("team", "a" * 64, 1.0))
    granted = await asyncio.gather(*[billing.reserve("team", f"r{i}", 0.15) for i in range(40)])
    assert sum(granted) == 6  # 6 × 0.15 = 0.9 ≤ 1.0 < 7 × 0.15
    key = await billing.key("team")
    assert key is not None and key.reserved_usd == pytest.approx(0.9)
    assert await billing.settle("r0", 0.05)
    assert not await billing.settle("r0", 0.05)  # idempotent
    assert await billing.release("r1")
    key = await billing.key("team")
    assert key is not None
    assert key.spent_usd == pytest.approx(0.05) and key.reserved_usd == pytest.approx(0.6)
    assert await billing.sweep(older_than_s=-1) == 4  # a crashed replica's reservations
    key = await billing.key("team")
    assert key is not None and key.reserved_usd == pytest.approx(0.0, abs=1e-9)
    # updating the key (new budget) keeps what it spent
    await billing.upsert_key(api_key("team", "b" * 64, 2.0))
    key = await billing.key("team")
    assert key is not None and key.spent_usd == pytest.approx(0.05) and key.budget_usd == 2.0
    assert (await billing.find_key("b" * 64)) is not None and await billing.find_key(
        "a" * 64
    ) is None


async def test_unlimited_keys_always_reserve(billing: Billing) -> None:
    await billing.upsert_key(api_key("free", "c" * 64, None))
    assert all(await asyncio.gather(*[billing.reserve("free", f"u{i}", 10.0) for i in range(5)]))
    assert not await billing.reserve("ghost", "g", 0.0)  # unknown key


async def test_a_renamed_key_takes_over_its_hash(billing: Billing) -> None:
    await billing.upsert_key(api_key("old-name", "d" * 64, 1.0))
    await billing.upsert_key(api_key("new-name", "d" * 64, 1.0))
    found = await billing.find_key("d" * 64)
    assert found is not None and found.name == "new-name"
    old = await billing.key("old-name")
    assert old is not None and old.key_hash != "d" * 64


async def test_budgets_return_a_reservation_or_raise_over_budget(billing: Billing) -> None:
    budgets = Budgets(billing)
    team = api_key("team", "e" * 64, 1.0)
    await billing.upsert_key(team)
    assert await budgets.reserve(ApiKey(None), 5.0) is None  # open gateway: nothing to hold
    assert await budgets.reserve(api_key("free", "f" * 64, None), 5.0) is None  # no budget
    held = await budgets.reserve(team, 0.75)
    assert isinstance(held, Reservation) and held.key == "team" and held.amount_usd == 0.75
    with pytest.raises(OverBudget, match="team") as exc:
        await budgets.reserve(team, 0.5)  # 0.75 held + 0.5 > 1.0
    assert exc.value.status == 429 and exc.value.code == "insufficient_quota"
    await budgets.settle(held, 0.25)
    state = await budgets.state("team")
    assert state is not None and state.spent_usd == pytest.approx(0.25)
    assert state.reserved_usd == pytest.approx(0.0, abs=1e-12)
    assert await budgets.reserve(team, 0.5) is not None  # 0.25 spent + 0.5 fits now


# ---- schema versions and migrations ---------------------------------------------------------

# The schema at main before schema versions existed (commit 5ac457a), as its CREATE statements:
# what `duetto serve` left in databases until then.
OLD_SCHEMA = [
    """CREATE TABLE {p}keys (
        name VARCHAR(128) NOT NULL, key_hash VARCHAR(64) NOT NULL, budget_usd FLOAT,
        spent_usd FLOAT NOT NULL, reserved_usd FLOAT NOT NULL, rpm INTEGER,
        PRIMARY KEY (name), UNIQUE (key_hash))""",
    """CREATE TABLE {p}reservations (
        id VARCHAR(64) NOT NULL, "key" VARCHAR(128) NOT NULL, amount FLOAT NOT NULL,
        created FLOAT NOT NULL, PRIMARY KEY (id))""",
    """CREATE TABLE {p}traces (
        id VARCHAR(64) NOT NULL, created FLOAT NOT NULL, "key" VARCHAR(128),
        model VARCHAR(256) NOT NULL, answered_by VARCHAR(256), status VARCHAR(16) NOT NULL,
        http_status INTEGER NOT NULL, stream BOOLEAN NOT NULL, fallback BOOLEAN NOT NULL,
        cost_usd FLOAT NOT NULL, llm_only_cost_usd FLOAT NOT NULL, latency_ms FLOAT NOT NULL,
        body TEXT NOT NULL, PRIMARY KEY (id))""",
    "CREATE INDEX ix_{p}traces_created ON {p}traces (created)",
    'CREATE INDEX ix_{p}traces_key ON {p}traces ("key")',
    """INSERT INTO {p}traces VALUES ('old-1', 1700000000.0, 'team', 'cascade', 'slm', 'ok',
        200, false, false, 0.25, 1.5, 12.0, '{{"response": "from before"}}')""",
    """INSERT INTO {p}keys VALUES ('team', '{h}', 2.0, 0.25, 0.0, 60)""",
]


def make_old_database(url: str, prefix: str) -> None:
    import sqlalchemy as sa

    db = sa.create_engine(normalise_url(url))
    try:
        with db.begin() as conn:
            for stmt in OLD_SCHEMA:
                conn.execute(sa.text(stmt.format(p=prefix, h="a" * 64)))
    finally:
        db.dispose()


def table_names(url: str) -> set[str]:
    import sqlalchemy as sa

    db = sa.create_engine(normalise_url(url))
    try:
        return set(sa.inspect(db).get_table_names())
    finally:
        db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_an_old_database_opens_and_is_migrated(kind: str, tmp_path: Path) -> None:
    url, prefix = db_url(kind, tmp_path)
    make_old_database(url, prefix)
    assert f"{prefix}schema_version" not in table_names(url)
    store = await TraceStore(url, prefix=prefix).start()
    billing = Billing(store)
    try:
        await billing.start()
        assert f"{prefix}schema_version" in table_names(url)
        assert await store.version("traces") == len(store_module.MIGRATIONS) == 1
        assert await store.version("billing") == len(billing_module.MIGRATIONS) == 1
        old = await store.get("old-1")  # the rows from before are read as they were
        assert old is not None and old.body == {"response": "from before"}
        assert old.key == "team" and old.answered_by == "slm" and old.cost_usd == 0.25
        assert old.stream is False and old.llm_only_cost_usd == 1.5
        team = await billing.key("team")
        assert team is not None and team.spent_usd == 0.25 and team.budget_usd == 2.0
        assert team.rpm == 60 and (await billing.find_key("a" * 64)) == ApiKey(
            "team", "a" * 64, 2.0, 60
        )
        await store.append(TraceRecord(id="new-1", model="m", status="ok"))
        assert sorted(await store.ids()) == ["new-1", "old-1"]
        assert await billing.reserve("team", "r1", 1.75)  # 0.25 spent + 1.75 = the budget
        assert not await billing.reserve("team", "r2", 0.01)
    finally:
        if kind == "postgresql":
            await billing.drop_all()
            await store.drop_all()
        await store.close()
    if kind == "postgresql":
        assert not {t for t in table_names(url) if t.startswith(prefix)}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_migrations_run_once_each_in_order(kind: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    url, prefix = db_url(kind, tmp_path)
    ran: list[str] = []

    def m1(conn: Any, p: str) -> None:
        ran.append("m1")
        conn.execute(sa.text(f"CREATE TABLE {p}notes (id INTEGER PRIMARY KEY)"))

    def m2(conn: Any, p: str) -> None:
        ran.append("m2")
        conn.execute(sa.text(f"ALTER TABLE {p}notes ADD COLUMN text VARCHAR(20)"))

    def m3(conn: Any, p: str) -> None:
        ran.append("m3")
        conn.execute(sa.text(f"INSERT INTO {p}notes (id, text) VALUES (1, 'hello')"))

    def notes(conn: Any) -> list[Any]:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT id, text FROM {prefix}notes"))]

    store = await TraceStore(url, prefix=prefix).start()
    try:
        assert await store.version("notes") == 0
        assert await store.migrate("notes", [m1, m2]) == 2
        assert await store.migrate("notes", [m1, m2]) == 2  # nothing left to run
        assert ran == ["m1", "m2"] and await store.version("notes") == 2
        assert await store.migrate("notes", [m1, m2, m3]) == 3  # only the new one runs
        assert ran == ["m1", "m2", "m3"] and await store.call(notes) == [(1, "hello")]
        assert await store.version("traces") == 1  # the parts are versioned apart
    finally:
        await store.call(lambda conn: conn.execute(sa.text(f"DROP TABLE {prefix}notes")))
        if kind == "postgresql":
            await store.drop_all()
        await store.close()
    reopened = await TraceStore(url, prefix=prefix).start()  # a restart re-runs nothing
    try:
        if kind == "sqlite":
            assert await reopened.version("notes") == 3
    finally:
        if kind == "postgresql":
            await reopened.drop_all()
        await reopened.close()


async def test_appends_survive_a_broken_connection(store: TraceStore) -> None:
    """Appends go straight through a DBAPI connection the store keeps: when it breaks (a
    database restart), the batch is retried through the engine's pool and a new one is taken."""
    await store.append(TraceRecord(id="a", model="m", status="ok"))
    await store.call(lambda _: store._raw.dbapi_connection.close())  # under the store's feet
    await store.append(TraceRecord(id="b", model="m", status="ok", body={"x": [1, "é"]}))
    await store.append(TraceRecord(id="c", model="m", status="ok"))
    assert sorted(await store.ids()) == ["a", "b", "c"]
    got = await store.get("b")
    assert got is not None and got.body == {"x": [1, "é"]} and got.stream is False
