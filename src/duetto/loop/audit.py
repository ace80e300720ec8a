"""The live quality estimate from audit labels. Pure: no I/O.

An audit label scores a locally answered request's answer against the LLM's answer to the
same request (agreement, or the pairwise judge), so its mean estimates how often a local answer
is as good as the LLM's. Escalated requests get the LLM's answer, so the quality users get, as a
fraction of LLM-only quality, is estimated by

    quality = 1 - local_share * (1 - audit_mean)

with the percentile bootstrap interval of the audit mean (duetto.stats) carried through. This
is what a strategy's `quality=F` target is compared with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from duetto.loop.store import Label
from duetto.stats import bootstrap


@dataclass(frozen=True, slots=True)
class Estimate:
    n: int  # audited requests
    audit_mean: float  # mean score of the audited local answers (vs the LLM's)
    audit_ci: tuple[float, float]
    local_share: float
    mean: float  # estimated quality of what users get, as a fraction of LLM-only quality
    ci_low: float
    ci_high: float
    target: float | None = None

    @property
    def below_target(self) -> bool:
        return self.target is not None and not math.isnan(self.ci_low) and self.ci_low < self.target

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "audit_mean": _num(self.audit_mean),
            "audit_ci": [_num(self.audit_ci[0]), _num(self.audit_ci[1])],
            "local_share": self.local_share,
            "mean": _num(self.mean),
            "ci_low": _num(self.ci_low),
            "ci_high": _num(self.ci_high),
            "target": self.target,
            "below_target": self.below_target,
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def per_request(labels: Sequence[Label]) -> list[float]:
    """One score per audited request, in order: its agreement label where there is one (exact
    for closed forms), else the mean of its judge labels."""
    by_trace: dict[str, dict[str, list[float]]] = {}
    for lb in labels:
        by_trace.setdefault(lb.trace_id, {}).setdefault(lb.source, []).append(lb.score)
    out = []
    for sources in by_trace.values():
        scores = sources.get("agreement") or sources.get("judge")
        if scores:
            out.append(sum(scores) / len(scores))
    return out


def estimate(
    scores: Sequence[float],
    local_share: float,
    target: float | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """The live estimate from per-request audit scores (NaN fields without any)."""
    x = np.asarray(scores, dtype=np.float64)
    share = min(max(local_share, 0.0), 1.0)
    if x.size == 0:
        nan = math.nan
        return Estimate(0, nan, (nan, nan), share, nan, nan, nan, target)
    m = float(x.mean())
    lo, hi = (
        float(v) for v in bootstrap(lambda idx: x[idx].mean(), x.size, n_boot=n_boot, seed=seed)
    )

    def served(a: float) -> float:
        return 1.0 - share * (1.0 - a)

    return Estimate(int(x.size), m, (lo, hi), share, served(m), served(lo), served(hi), target)
