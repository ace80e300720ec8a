"""Thresholds from a user's target, offline and online. Pure decision logic: no I/O.

Convention (shared with strategies.base.Branches): a request takes the cheap branch when its
score >= threshold, else it escalates to the strong branch.

Offline: `choose_threshold` sweeps every distinct score on a labelled calibration split, where
both branches' quality and cost are known, and returns the threshold that meets the target:
  - `quality=F`: the cheapest threshold whose quality >= F x the strong-only quality;
  - `llm_share=S`: the threshold whose escalation share is closest to S (never above it);
  - `budget_usd_per_1k=B`: the best-quality threshold whose cost per 1,000 requests <= B.

Online: `AdaptiveThreshold` moves the threshold from observed outcomes with bounded steps (a
Robbins-Monro quantile tracker for a share target; a feedback controller for a quality floor),
and `BudgetGuard` is a hard cap the adaptive part cannot cross: once the spend in its window
reaches the cap, the threshold reads -inf and nothing escalates.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from duetto.errors import ConfigError

TargetKind = Literal["quality", "llm_share", "budget_usd_per_1k"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    value: float

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse "quality=0.95", "llm_share=0.3" or "budget_usd_per_1k=0.2"."""
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or key not in ("quality", "llm_share", "budget_usd_per_1k"):
            raise ConfigError(
                f"bad target {text!r}: use quality=F, llm_share=S or budget_usd_per_1k=B", "target"
            )
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigError(f"target value {raw!r} is not a number", "target") from exc
        if key != "budget_usd_per_1k" and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key} must be within [0, 1], got {value}", "target")
        if value < 0:
            raise ConfigError(f"{key} must be >= 0", "target")
        return cls(key, value)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


@dataclass(frozen=True, slots=True)
class Operating:
    """The outcome of one threshold on a set of requests."""

    threshold: float
    quality: float
    llm_share: float
    cost_per_1k: float


def sweep(
    scores: FloatArray,
    q_cheap: FloatArray,
    q_strong: FloatArray,
    c_cheap: FloatArray,
    c_strong: FloatArray,
) -> list[Operating]:
    """Every distinct operating point, from 'all cheap' (-inf) to 'all strong' (+inf)."""
    s = np.asarray(scores, dtype=float)
    qc, qs = np.asarray(q_cheap, dtype=float), np.asarray(q_strong, dtype=float)
    cc, cs = np.asarray(c_cheap, dtype=float), np.asarray(c_strong, dtype=float)
    points = []
    for t in [-math.inf, *np.unique(s).tolist(), math.inf]:
        cheap = s >= t
        points.append(
            Operating(
                threshold=float(t),
                quality=float(np.where(cheap, qc, qs).mean()),
                llm_share=float((~cheap).mean()),
                cost_per_1k=float(np.where(cheap, cc, cs).mean() * 1000),
            )
        )
    return points


def choose_threshold(
    scores: FloatArray,
    q_cheap: FloatArray,
    q_strong: FloatArray,
    c_cheap: FloatArray,
    c_strong: FloatArray,
    target: Target,
) -> Operating:
    if len(np.asarray(scores)) == 0:
        raise ConfigError("cannot calibrate on an empty split", "target")
    points = sweep(scores, q_cheap, q_strong, c_cheap, c_strong)
    if target.kind == "quality":
        floor = target.value * float(np.mean(q_strong))
        ok = [p for p in points if p.quality >= floor - 1e-12]
        # Cheapest point meeting the floor; ties go to the higher quality.
        return min(ok, key=lambda p: (p.cost_per_1k, -p.quality)) if ok else points[-1]
    if target.kind == "llm_share":
        ok = [p for p in points if p.llm_share <= target.value + 1e-12]
        return max(ok, key=lambda p: (p.llm_share, p.quality))
    ok = [p for p in points if p.cost_per_1k <= target.value + 1e-12]
    if not ok:
        return min(points, key=lambda p: p.cost_per_1k)
    return max(ok, key=lambda p: (p.quality, -p.cost_per_1k))


@dataclass
class BudgetGuard:
    """Hard cap on spend over the last `window` requests (USD per 1,000 requests)."""

    max_usd_per_1k: float
    window: int = 200
    _costs: deque[float] = field(default_factory=deque, repr=False)

    def record(self, cost_usd: float) -> None:
        self._costs.append(cost_usd)
        while len(self._costs) > self.window:
            self._costs.popleft()

    @property
    def exhausted(self) -> bool:
        # The cap applies to the window's total: at most max_usd_per_1k * window / 1000 USD.
        return sum(self._costs) >= self.max_usd_per_1k * self.window / 1000


@dataclass
class AdaptiveThreshold:
    """Online threshold holding an LLM-share target or a quality floor under traffic drift.

    - kind "llm_share": after each decision, t += step * (target - escalated). At equilibrium
      P(score < t) = target: the threshold tracks the target quantile of the score stream.
    - kind "quality": with feedback q in [0,1] on answered requests, t += step * (floor - q):
      quality below the floor escalates more, above it escalates less.
    Steps are bounded by `step` and the threshold by [lo, hi]. A BudgetGuard, if given, wins.
    """

    target: Target
    start: float = 0.5
    step: float = 0.02
    lo: float = 0.0
    hi: float = 1.0
    guard: BudgetGuard | None = None
    _t: float = field(init=False)
    n: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.target.kind == "budget_usd_per_1k":
            raise ConfigError(
                "adaptive targets are llm_share or quality; use a BudgetGuard for spend"
            )
        self._t = min(max(self.start, self.lo), self.hi)

    def reset(self, start: float) -> None:
        """Start again from `start` (e.g. the threshold offline calibration chose)."""
        self.start = start
        self._t = min(max(start, self.lo), self.hi)

    @property
    def threshold(self) -> float:
        if self.guard is not None and self.guard.exhausted:
            return -math.inf  # budget cap reached: answer locally, never escalate
        return self._t

    def observe(self, escalated: bool, cost_usd: float, quality: float | None = None) -> None:
        self.n += 1
        if self.guard is not None:
            self.guard.record(cost_usd)
        if self.target.kind == "llm_share":
            delta = self.step * (self.target.value - (1.0 if escalated else 0.0))
        elif quality is not None:
            delta = self.step * (self.target.value - quality)
        else:
            return
        self._t = min(max(self._t + delta, self.lo), self.hi)


SERVING_QUALITY = "quality=0.95"


def online_policy(target: Target, start: float = 0.5) -> AdaptiveThreshold:
    """The online threshold that serves a strategy nobody calibrated (e.g. the embedded defaults
    before `duetto eval`). A spend target cannot steer a threshold online (it needs the offline
    cost curve), so a `budget_usd_per_1k` target is served at the quality floor
    `SERVING_QUALITY` instead."""
    if target.kind == "budget_usd_per_1k":
        target = Target.parse(SERVING_QUALITY)
    return AdaptiveThreshold(target, start=start)


@dataclass
class StaticThreshold:
    """A fixed threshold with the same interface as AdaptiveThreshold (the guard still applies)."""

    value: float
    guard: BudgetGuard | None = None

    @property
    def threshold(self) -> float:
        if self.guard is not None and self.guard.exhausted:
            return -math.inf
        return self.value

    def observe(self, escalated: bool, cost_usd: float, quality: float | None = None) -> None:
        if self.guard is not None:
            self.guard.record(cost_usd)


def audited_threshold(
    threshold: float, ci_low: float, target: float, step: float, hi: float = 1.0
) -> float | None:
    """The audit controller's move (fed by continuous audits, `duetto.loop`): when the lower
    bound of the estimated quality's interval is below the `target`, the threshold rises by
    `step` (capped at `hi`), so more requests escalate to the LLM; None when nothing moves
    (the bound meets the target, or the threshold is already at `hi`)."""
    if math.isnan(ci_low) or ci_low >= target or threshold >= hi:
        return None
    return min(hi, threshold + step)
