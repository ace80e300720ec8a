"""Load a new calibration while serving: validated, versioned, optionally canaried, shared.

    POST /admin/calibration      {"calibration": {...duetto.fitted file...}, "canary_share": 0.1}
    GET  /admin/calibration      the version serving, the canary (if any), the history
    DELETE /admin/calibration/canary   stop a canary (everything back on the current version)

A calibration is applied by building every strategy afresh over the running models with the new
state (`Engine.build_strategies`) and swapping the dict: requests in flight finish on the objects
they hold, and a file that does not fit (schema, unknown strategy, NaN threshold, a content that
no longer matches its version) raises before anything changes, so the running one is kept.

With `canary_share` in (0, 1) the new calibration decides that share of the requests to the
strategies it calibrates (their traces say `"canary": true`); the rest keep the current one.
Posting it again with share 1 (the default) promotes it. Every trace records the
`calibration_version` that decided it.

Promotions are rows in the trace store's database (part "calibration"), so they survive restarts
and every replica on one PostgreSQL follows them: each polls the last row every `poll_s` seconds
(one indexed query) and applies what it has not applied yet. A row a replica cannot apply (its
config differs) is logged and skipped; that replica keeps serving what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from duetto.errors import ConfigError
from duetto.fitted import check_fitted, version_of
from duetto.models.base import ChatModel
from duetto.store import Migration, TraceStore

if TYPE_CHECKING:
    from duetto.engine import Engine

log = logging.getLogger("duetto.gateway.calibration")


@dataclass(frozen=True, slots=True)
class Promotion:
    """One row: a calibration promoted to `share` of the traffic (1.0: all of it)."""

    seq: int
    version: str
    state: dict[str, Any]
    share: float
    created: float
    by: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "version": self.version,
            "share": self.share,
            "created": self.created,
            "by": self.by,
            "made_by": self.state.get("made_by"),
        }


class CalibrationBook:
    """The promotions table, in the trace store's database (its engine and worker thread)."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store

    async def start(self) -> CalibrationBook:
        await self.store.migrate("calibration", MIGRATIONS)
        return self

    async def add(self, state: Mapping[str, Any], share: float, by: str | None) -> Promotion:
        table = _table(self.store.prefix)
        version = version_of(state) or ""
        body = json.dumps(state, allow_nan=False)
        now = time.time()

        def q(conn: Any) -> int:
            row = conn.execute(
                table.insert().values(version=version, body=body, share=share, created=now, by=by)
            )
            return int(row.inserted_primary_key[0])

        seq = await self.store.call(q)
        return Promotion(seq, version, dict(state), share, now, by)

    async def latest(self, *, full: bool = False, before: int | None = None) -> Promotion | None:
        """The last row (with `full`, the last one promoted to all traffic; `before`: older
        than that seq)."""
        import sqlalchemy as sa

        table = _table(self.store.prefix)
        query = sa.select(table).order_by(table.c.seq.desc()).limit(1)
        if full:
            query = query.where(table.c.share >= 1.0)
        if before is not None:
            query = query.where(table.c.seq < before)

        def q(conn: Any) -> Any:
            return conn.execute(query).first()

        row = await self.store.call(q)
        return None if row is None else _promotion(row)

    async def history(self, limit: int = 20) -> list[Promotion]:
        import sqlalchemy as sa

        table = _table(self.store.prefix)
        query = sa.select(table).order_by(table.c.seq.desc()).limit(limit)

        def q(conn: Any) -> list[Any]:
            return list(conn.execute(query))

        return [_promotion(r) for r in await self.store.call(q)]


@dataclass(slots=True)
class Canary:
    version: str
    strategies: dict[str, ChatModel]
    share: float
    names: frozenset[str]  # the strategies the canary calibrates


class Calibrations:
    """What decides each request: the engine's current calibration, or a canary's."""

    def __init__(
        self,
        engine: Engine | Any,
        store: TraceStore,
        poll_s: float = 5.0,
        seed: int | None = None,
        shadow: frozenset[str] = frozenset(),
    ) -> None:
        self.engine = engine
        self.book = CalibrationBook(store)
        self.poll_s = poll_s
        self.shadow = shadow  # shadow-only candidates may stay uncalibrated
        self.canary: Canary | None = None
        self.applied_seq = 0  # the last promotion row this replica applied (or skipped)
        self.reloads = 0
        # called with the new strategies after a promotion swapped them in (e.g. the loop's
        # controller then steers the new objects); must not raise
        self.on_change: list[Callable[[dict[str, ChatModel]], None]] = []
        self._rng = random.Random(seed)
        self._task: asyncio.Task[None] | None = None

    @property
    def version(self) -> str | None:
        return getattr(self.engine, "calibration_version", None)

    async def start(self) -> None:
        await self.book.start()
        await self.sync()
        if self.poll_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # ---- deciding a request ------------------------------------------------------------------

    def choose(self, requested: str, model: ChatModel) -> tuple[ChatModel, dict[str, Any]]:
        """The model that decides this request, and what its trace records about calibration."""
        canary = self.canary
        if canary is not None and requested in canary.names and self._rng.random() < canary.share:
            return canary.strategies[requested], {
                "calibration_version": canary.version,
                "canary": True,
            }
        return model, {"calibration_version": self.version}

    # ---- changing it -------------------------------------------------------------------------

    def check(self, state: Any) -> dict[str, ChatModel]:
        """The strategies `state` would build; ConfigError when it does not fit this config."""
        if not isinstance(state, Mapping):
            raise ConfigError("expected a calibration object (a duetto.fitted file)", "calibration")
        if not hasattr(self.engine, "build_strategies"):
            raise ConfigError("this gateway's engine has no configured strategies to calibrate")
        check_fitted(state, self.engine.cfg.strategies)
        built: dict[str, ChatModel] = self.engine.build_strategies(state)
        from duetto.strategies.base import Tunable

        open_ = [
            n
            for n, s in built.items()
            if isinstance(s, Tunable)
            and s.threshold is None
            and getattr(s, "policy", None) is None
            and n not in self.shadow
        ]
        for name in [n for n in built if n in self.shadow]:
            strategy = built[name]
            if isinstance(strategy, Tunable) and strategy.threshold is None:
                from duetto.calibrate import Target, online_policy

                text = self.engine.cfg.strategies[name].target or self.engine.cfg.target
                policy = online_policy(Target.parse(text or "quality=0.95"))
                strategy.policy = policy  # type: ignore[attr-defined]
        if open_:
            raise ConfigError(
                f"it leaves {', '.join(open_)} without a threshold (a calibration covers every "
                "thresholded strategy: `duetto fit --base` keeps the current entries)",
                f"strategies.{open_[0]}",
            )
        return built

    async def submit(self, state: Any, share: float = 1.0, by: str | None = None) -> Promotion:
        """Validate, record (every replica follows), apply here. Raises ConfigError, keeping
        the running calibration, for a bad file."""
        if not 0.0 < share <= 1.0:
            raise ConfigError("canary_share must be in (0, 1]", "canary_share")
        built = self.check(state)
        promotion = await self.book.add(state, share, by)
        self._apply(promotion, built)
        return promotion

    async def stop_canary(self, by: str | None = None) -> Promotion | None:
        """Everything back on the current calibration (recorded, so every replica stops)."""
        if self.canary is None:
            return None
        current = getattr(self.engine, "fitted", None)
        if current is None:
            self.canary = None
            return None
        return await self.submit(dict(current), 1.0, by)

    async def sync(self) -> bool:
        """Apply the newest promotion if this replica has not yet; True when something changed."""
        latest = await self.book.latest()
        if latest is None or latest.seq <= self.applied_seq:
            return False
        if latest.share < 1.0:  # a canary: make sure the base is the last full promotion
            base = await self.book.latest(full=True, before=latest.seq)
            if base is not None and base.version != self.version:
                self._try_apply(base)
        self._try_apply(latest)
        self.applied_seq = latest.seq
        return True

    def _try_apply(self, promotion: Promotion) -> None:
        try:
            self._apply(promotion, self.check(promotion.state))
        except ConfigError as exc:
            log.error(
                "calibration %s (promotion %d) does not fit this replica's config, kept %s: %s",
                promotion.version,
                promotion.seq,
                self.version,
                exc,
            )

    def _apply(self, promotion: Promotion, built: dict[str, ChatModel]) -> None:
        self.applied_seq = max(self.applied_seq, promotion.seq)
        self.reloads += 1
        if promotion.share >= 1.0:
            old = self.version
            self.engine.strategies, self.engine.fitted = built, promotion.state
            self.canary = None
            for hook in self.on_change:
                try:
                    hook(built)
                except Exception:
                    log.exception("a calibration hook failed")
            log.warning("calibration %s now serves (was %s)", promotion.version, old)
            return
        names = frozenset(promotion.state.get("strategies", {}))
        self.canary = Canary(promotion.version, built, promotion.share, names)
        log.warning(
            "calibration %s is a canary on %.0f%% of %s (current: %s)",
            promotion.version,
            100 * promotion.share,
            ", ".join(sorted(names)),
            self.version,
        )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.sync()
            except Exception:  # a database hiccup must not stop the polling
                log.exception("could not check for a promoted calibration")

    def status(self) -> dict[str, Any]:
        fitted = getattr(self.engine, "fitted", None) or {}
        canary = self.canary
        return {
            "version": self.version,
            "made_by": fitted.get("made_by"),
            "created": (fitted.get("version") or {}).get("created"),
            "strategies": sorted(fitted.get("strategies", {})),
            "canary": None
            if canary is None
            else {
                "version": canary.version,
                "share": canary.share,
                "strategies": sorted(canary.names),
            },
            "applied_seq": self.applied_seq,
        }


def _table(prefix: str, metadata: Any = None) -> Any:
    import sqlalchemy as sa

    return sa.Table(
        f"{prefix}calibrations",
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("by", sa.String(128)),
    )


def _promotion(row: Any) -> Promotion:
    return Promotion(
        int(row.seq), row.version, json.loads(row.body), float(row.share), row.created, row.by
    )


def _m1_calibrations(conn: Any, prefix: str) -> None:
    _table(prefix).create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [_m1_calibrations]
"""The calibration part's migrations; version n is MIGRATIONS[n - 1]. Append only."""
