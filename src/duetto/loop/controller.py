"""The audit controller's glue: thresholds moved on audit evidence, shared through the store.

The decision is `duetto.calibrate.audited_threshold` (pure). Here: which labels count (the
audits made since the threshold last moved, at most `window`), the state row per strategy in
`loop_state` (compare-and-set, so two replicas never move one threshold twice for the same
evidence, and a restart keeps the moved threshold), and applying it to the strategy (its
adaptive policy restarts from it, or its fixed threshold is replaced).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from duetto.calibrate import audited_threshold
from duetto.loop.audit import Estimate, estimate, per_request
from duetto.loop.store import LoopStore

log = logging.getLogger("duetto.loop")


def threshold_of(strategy: Any) -> float | None:
    policy = getattr(strategy, "policy", None)
    if policy is not None:
        return float(policy.threshold)
    t = getattr(strategy, "threshold", None)
    return None if t is None else float(t)


def set_threshold(strategy: Any, value: float) -> None:
    policy = getattr(strategy, "policy", None)
    if policy is not None and hasattr(policy, "reset"):
        policy.reset(value)
    else:
        strategy.threshold = value


@dataclass
class Moves:
    """What the controller did to one strategy (metrics and the dashboard)."""

    threshold: float | None = None
    moves: int = 0
    last_move: float | None = None
    reason: str | None = None
    version: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class Controller:
    def __init__(
        self,
        store: LoopStore,
        strategies: dict[str, Any],
        targets: dict[str, float],
        *,
        step: float,
        min_labels: int,
        window: int,
        enabled: bool = True,
        hi: float = 1.0,
    ) -> None:
        self.store = store
        self.strategies = strategies  # name -> a thresholded strategy
        self.targets = targets
        self.step = step
        self.min_labels = min_labels
        self.window = window
        self.enabled = enabled
        self.hi = hi
        self.state: dict[str, Moves] = {n: Moves(threshold_of(s)) for n, s in strategies.items()}

    @staticmethod
    def key(name: str) -> str:
        return f"threshold:{name}"

    async def load(self) -> None:
        """Apply the thresholds stored by an earlier run or another replica."""
        for name in self.strategies:
            await self._sync(name)

    async def _sync(self, name: str) -> tuple[int, dict[str, Any]] | None:
        row = await self.store.get_state(self.key(name))
        st = self.state[name]
        if row is not None and row[0] != st.version:
            version, value = row
            st.version = version
            st.threshold = float(value["threshold"])
            st.moves = int(value.get("moves", 0))
            st.last_move = value.get("moved_at")
            st.reason = value.get("reason")
            set_threshold(self.strategies[name], st.threshold)
        return row

    async def step_once(self, name: str, local_share: float) -> Estimate:
        """Re-read the shared state, estimate from the audits since the last move, and move
        the threshold toward the LLM if the interval's lower bound is below the target."""
        row = await self._sync(name)
        st = self.state[name]
        since = st.last_move
        labels = await self.store.labels(
            since=since, kind="audit", strategy=name, limit=self.window * 3
        )
        scores = per_request(labels)[-self.window :]
        target = self.targets.get(name)
        est = estimate(scores, local_share, target)
        current = threshold_of(self.strategies[name])
        if (
            not self.enabled
            or target is None
            or current is None
            or est.n < self.min_labels
            or not est.below_target
        ):
            return est
        new = audited_threshold(current, est.ci_low, target, self.step, self.hi)
        if new is None:
            return est
        now = time.time()
        reason = (
            f"estimated quality {est.mean:.3f} (95% CI {est.ci_low:.3f}-{est.ci_high:.3f}, "
            f"{est.n} audits) below the target {target:g}"
        )
        value = {"threshold": new, "moves": st.moves + 1, "moved_at": now, "reason": reason}
        if not await self.store.put_state(self.key(name), value, row[0] if row else None):
            await self._sync(name)  # another replica moved it first: take its threshold
            return est
        st.version = (row[0] if row else 0) + 1
        st.threshold, st.moves, st.last_move, st.reason = new, st.moves + 1, now, reason
        st.history = [*st.history[-19:], {"at": now, "from": current, "to": new, "n": est.n}]
        set_threshold(self.strategies[name], new)
        log.warning(
            "controller: %s threshold %.3f -> %.3f (toward the LLM): %s", name, current, new, reason
        )
        return est

    async def forget(self, name: str) -> None:
        """Drop a strategy's moved threshold (after a new calibration is promoted)."""
        row = await self.store.get_state(self.key(name))
        threshold = threshold_of(self.strategies[name])
        if row is not None and threshold is not None:
            value = {"threshold": threshold, "moves": 0, "moved_at": time.time(), "reason": "reset"}
            await self.store.put_state(self.key(name), value, row[0])
        await self._sync(name)
