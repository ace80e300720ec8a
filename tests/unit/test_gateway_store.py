"""The trace store on SQLite and (when reachable) PostgreSQL: exactly-once appends, group
commit, atomic budget reservations, idempotent settle/release, crash sweep."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duetto.store import KeyRecord, TraceRecord, TraceStore, normalise_url

PG_URL = "postgresql://postgres@localhost:5432/test"


def pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TraceStore]:
    if request.param == "postgresql":
        if not pg_reachable():
            pytest.skip("PostgreSQL is not reachable on localhost:5432")
        s = TraceStore(PG_URL, prefix=f"t{uuid.uuid4().hex[:8]}_")
    else:
        s = TraceStore(str(tmp_path / "traces.db"))
    await s.start()
    try:
        yield s
    finally:
        if s.dialect == "postgresql":
            await s.drop_all()
        await s.close()


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


async def test_reservations_never_overspend_under_concurrency(store: TraceStore) -> None:
    await store.upsert_key(KeyRecord("team", "a" * 64, budget_usd=1.0))
    granted = await asyncio.gather(*[store.reserve("team", f"r{i}", 0.15) for i in range(40)])
    assert sum(granted) == 6  # 6 × 0.15 = 0.9 ≤ 1.0 < 7 × 0.15
    key = await store.key("team")
    assert key is not None and key.reserved_usd == pytest.approx(0.9)
    assert await store.settle("r0", 0.05)
    assert not await store.settle("r0", 0.05)  # idempotent
    assert await store.release("r1")
    key = await store.key("team")
    assert key is not None
    assert key.spent_usd == pytest.approx(0.05) and key.reserved_usd == pytest.approx(0.6)
    assert await store.sweep(older_than_s=-1) == 4  # a crashed replica's reservations
    key = await store.key("team")
    assert key is not None and key.reserved_usd == pytest.approx(0.0, abs=1e-9)
    # updating the key (new budget) keeps what it spent
    await store.upsert_key(KeyRecord("team", "b" * 64, budget_usd=2.0))
    key = await store.key("team")
    assert key is not None and key.spent_usd == pytest.approx(0.05) and key.budget_usd == 2.0
    assert (await store.find_key("b" * 64)) is not None and await store.find_key("a" * 64) is None


async def test_unlimited_keys_always_reserve(store: TraceStore) -> None:
    await store.upsert_key(KeyRecord("free", "c" * 64, budget_usd=None))
    assert all(await asyncio.gather(*[store.reserve("free", f"u{i}", 10.0) for i in range(5)]))
    assert not await store.reserve("ghost", "g", 0.0)  # unknown key


async def test_a_renamed_key_takes_over_its_hash(store: TraceStore) -> None:
    await store.upsert_key(KeyRecord("old-name", "d" * 64, budget_usd=1.0))
    await store.upsert_key(KeyRecord("new-name", "d" * 64, budget_usd=1.0))
    found = await store.find_key("d" * 64)
    assert found is not None and found.name == "new-name"
    old = await store.key("old-name")
    assert old is not None and old.key_hash != "d" * 64
