"""What each API key may spend, shared by every replica: keys, budgets and reservations.

Budgets follow reserve → settle | release: before a call the gateway reserves the request's
worst-case cost (`worst_case_cost`), atomically in the database all replicas share; after the
call it settles the actual cost from the trace (streams included), or releases the reservation
when nothing was spent. A request is admitted only if spent + reserved + its worst case fits the
budget, so replicas cannot overspend by more than one request's estimate error.

- `reserve` is one conditional UPDATE (spent + reserved + amount <= budget), atomic on both
  engines (a row lock on PostgreSQL, the database write lock on SQLite). Each reservation is a
  row; `settle`/`release` delete it first and touch the key only if it existed, so they are
  idempotent. Reservations older than a TTL (a crashed replica's) are released by `sweep`.

The tables live in the trace store's database and reuse its engine and worker thread
(`TraceStore.call`), with their own numbered migrations (part "billing" of `schema_version`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from duetto.errors import OverBudget
from duetto.gateway.auth import ApiKey
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.store import Migration, TraceStore, versions_table

TEMPLATE_TOKENS_PER_MESSAGE = 8  # chat-template tokens around each message (upper bound)
_EPS = 1e-12  # float sums of many small costs drift by ~1e-16


@dataclass(slots=True)
class KeyRecord:
    """A key's row: the key as configured, plus what it has spent and holds in reservations."""

    name: str
    key_hash: str
    budget_usd: float | None = None
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    rpm: int | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """USD held on a key's budget until the call settles or releases it."""

    id: str
    key: str
    amount_usd: float


def worst_case_cost(
    cards: Sequence[ModelCard], request: ChatRequest, unset_max_tokens: int | None = None
) -> float:
    """An upper bound of a request's cost over the models it may call, in order.

    Input tokens are bounded by one per UTF-8 byte of the conversation plus template tokens; each
    call may also receive every earlier call's output (pipelines), up to `max_tokens` each."""
    prompt = sum(len(m.text.encode()) + TEMPLATE_TOKENS_PER_MESSAGE for m in request.messages)
    total = 0.0
    fed = 0
    for card in cards:
        # no limit set: `unset_max_tokens` (the gateway's default_max_tokens), else the context
        out = request.max_tokens or unset_max_tokens or card.context_size
        out *= request.choices_wanted
        total += card.cost(prompt + fed, out)
        fed += out
    return total


def partial_cost(cards: Sequence[ModelCard], request: ChatRequest, streamed_chars: int) -> float:
    """What a call cut short may have cost: the prompt on every priced model, plus what was
    streamed (at least one token per 4 characters) on the most expensive one."""
    prompt = sum(len(m.text.encode()) + TEMPLATE_TOKENS_PER_MESSAGE for m in request.messages)
    if not cards:
        return 0.0
    out = (streamed_chars + 3) // 4
    return sum(c.cost(prompt, 0) for c in cards) + max(c.cost(0, out) for c in cards)


class Billing:
    """Keys and reservations in the store's database. `await start()` after the store's."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self._keys: Any = None
        self._reservations: Any = None

    async def start(self) -> Billing:
        await self.store.migrate("billing", MIGRATIONS)
        self._keys, self._reservations = _tables(self.store.prefix)
        return self

    # ---- keys ------------------------------------------------------------------------------

    async def upsert_key(self, key: ApiKey) -> None:
        """Create a key or update its hash, budget and rate limit; never resets what it spent."""

        def q(conn: Any) -> None:
            from sqlalchemy.dialects import postgresql, sqlite

            t = self._keys
            # the same key under another name (a renamed key): retire the old row's hash
            for (other,) in conn.execute(
                t.select()
                .with_only_columns(t.c.name)
                .where(t.c.key_hash == key.key_hash, t.c.name != key.name)
            ):
                retired = hashlib.sha256(f"retired:{other}".encode()).hexdigest()
                conn.execute(t.update().where(t.c.name == other).values(key_hash=retired))

            dialect: Any = postgresql if self.store.dialect == "postgresql" else sqlite
            stmt = dialect.insert(t).values(
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

        await self.store.call(q)

    async def find_key(self, key_hash: str) -> ApiKey | None:
        row = await self._key_row(self._keys.c.key_hash, key_hash)
        return ApiKey(row.name, row.key_hash, row.budget_usd, row.rpm) if row else None

    async def key(self, name: str) -> KeyRecord | None:
        return await self._key_row(self._keys.c.name, name)

    async def _key_row(self, column: Any, value: str) -> KeyRecord | None:
        def q(conn: Any) -> Any:
            return conn.execute(self._keys.select().where(column == value)).mappings().first()

        row = await self.store.call(q)
        return KeyRecord(**dict(row)) if row is not None else None

    # ---- reservations ----------------------------------------------------------------------

    async def reserve(self, key: str, reservation_id: str, amount: float) -> bool:
        """Atomically hold `amount` USD of `key`'s budget; False when it would exceed it."""
        import sqlalchemy as sa

        def q(conn: Any) -> bool:
            t = self._keys
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
                self._reservations.insert().values(
                    id=reservation_id, key=key, amount=amount, created=time.time()
                )
            )
            return True

        return bool(await self.store.call(q))

    async def settle(self, reservation_id: str, cost_usd: float) -> bool:
        """Replace a reservation by the actual cost. False if it was already settled/released."""
        return bool(await self.store.call(lambda conn: self._close(conn, reservation_id, cost_usd)))

    async def release(self, reservation_id: str) -> bool:
        return await self.settle(reservation_id, 0.0)

    def _close(self, conn: Any, reservation_id: str, cost_usd: float) -> bool:
        r = self._reservations
        row = conn.execute(
            r.delete().where(r.c.id == reservation_id).returning(r.c.key, r.c.amount)
        ).first()
        if row is None:
            return False
        t = self._keys
        conn.execute(
            t.update()
            .where(t.c.name == row[0])
            .values(reserved_usd=t.c.reserved_usd - row[1], spent_usd=t.c.spent_usd + cost_usd)
        )
        return True

    async def sweep(self, older_than_s: float) -> int:
        """Release reservations older than `older_than_s` (left by a crashed replica)."""

        def q(conn: Any) -> int:
            r = self._reservations
            stale = [
                row[0]
                for row in conn.execute(
                    r.select()
                    .with_only_columns(r.c.id)
                    .where(r.c.created < time.time() - older_than_s)
                )
            ]
            return sum(self._close(conn, rid, 0.0) for rid in stale)

        return int(await self.store.call(q))

    async def drop_all(self) -> None:
        """Drop the billing tables and forget their version (tests with a private prefix)."""

        def q(conn: Any) -> None:
            for t in (self._reservations, self._keys):
                t.drop(conn, checkfirst=True)
            versions = versions_table(self.store.prefix)
            conn.execute(versions.delete().where(versions.c.part == "billing"))

        await self.store.call(q)


class Budgets:
    """reserve / settle / release for one caller; keys without a budget skip it."""

    def __init__(self, billing: Billing) -> None:
        self.billing = billing

    async def reserve(self, who: ApiKey, amount: float) -> Reservation | None:
        """The reservation; None when the caller has no budget. Raises OverBudget."""
        if who.name is None or who.budget_usd is None:
            return None
        held = Reservation(uuid.uuid4().hex, who.name, amount)
        if not await self.billing.reserve(who.name, held.id, amount):
            raise OverBudget(who.name, who.budget_usd)
        return held

    async def settle(self, reservation: Reservation | None, cost_usd: float) -> None:
        if reservation is not None:
            await self.billing.settle(reservation.id, cost_usd)

    async def release(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            await self.billing.release(reservation.id)

    async def state(self, name: str) -> KeyRecord | None:
        return await self.billing.key(name)


def _tables(prefix: str, metadata: Any = None) -> tuple[Any, Any]:
    """The keys and reservations tables as they are today."""
    import sqlalchemy as sa

    md = metadata if metadata is not None else sa.MetaData()
    keys = sa.Table(
        f"{prefix}keys",
        md,
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("budget_usd", sa.Float),
        sa.Column("spent_usd", sa.Float, nullable=False, default=0.0),
        sa.Column("reserved_usd", sa.Float, nullable=False, default=0.0),
        sa.Column("rpm", sa.Integer),
    )
    reservations = sa.Table(
        f"{prefix}reservations",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    return keys, reservations


def _m1_keys_and_reservations(conn: Any, prefix: str) -> None:
    """The tables as created before schema versions (kept if they exist)."""
    for table in _tables(prefix):
        table.create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [_m1_keys_and_reservations]
"""Billing's migrations; version n is MIGRATIONS[n - 1]. Append only."""
