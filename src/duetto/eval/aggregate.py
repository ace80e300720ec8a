"""Aggregation of per-request records into per-strategy summaries (pure numpy, no I/O).

A record is one dict per (strategy, item):
    {"strategy", "mode", "item_id", "quality", "latency_ms", "ttft_ms", "cost_usd",
     "remote_bytes", "energy_j", "pii_sent", "pii_sent_by_tier", "llm_calls", "tokens_in",
     "tokens_out"}
(`pii_sent_by_tier`: {tier: n}, the tiers of duetto.privacy.tiers; optional).
`quality` may be None or NaN (an unscored item) and `ttft_ms` None (not streamed): such values
are left out of that axis. Missing statistics are None in summaries so that they serialise to
JSON as null.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from duetto.privacy.tiers import TIERS
from duetto.stats import bootstrap

SUMMARY_KEYS = (
    "name",
    "mode",
    "quality",
    "llm_call_share",
    "cost_usd",
    "cost_usd_per_1k",
    "latency_ms",
    "ttft_ms",
    "remote_bytes",
    "remote_bytes_per_request",
    "energy_j",
    "energy_j_per_request",
    "privacy_leaks",
    "privacy_leaks_by_tier",
    "leak_rate",
    "n",
)


def _clean(values: Iterable[float | int | None]) -> np.ndarray:
    """The finite values as a float array (None and NaN dropped)."""
    arr = np.array([v for v in values if v is not None], dtype=float)
    finite: np.ndarray = arr[np.isfinite(arr)]
    return finite


def bootstrap_ci(
    values: Sequence[float | int | None] | np.ndarray,
    n: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile-bootstrap (1 - alpha) interval.
    NaNs for no values; a single value has a zero-width interval."""
    x = _clean(values)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    lo, hi = bootstrap(lambda idx: x[idx].mean(), x.size, n_boot=n, seed=seed, alpha=alpha)
    return mean, float(lo), float(hi)


def percentiles(values: Sequence[float | int | None] | np.ndarray) -> dict[str, float]:
    """{"p50", "p95", "mean"} of the finite values (NaNs when there are none)."""
    x = _clean(values)
    if x.size == 0:
        return {"p50": math.nan, "p95": math.nan, "mean": math.nan}
    p50, p95 = np.percentile(x, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(x.mean())}


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def summarize_strategy(
    records: Sequence[Mapping[str, Any]], name: str | None = None, mode: str | None = None
) -> dict[str, Any]:
    """The summary of one strategy's records (keys: SUMMARY_KEYS)."""
    n = len(records)
    name = name if name is not None else (str(records[0]["strategy"]) if records else "")
    if mode is None and records:
        mode = records[0].get("mode")

    def col(key: str) -> list[Any]:
        return [r.get(key) for r in records]

    def total(key: str) -> float:
        return float(_clean(col(key)).sum())

    q_mean, q_lo, q_hi = bootstrap_ci(col("quality"))
    lat = percentiles(col("latency_ms"))
    ttft = percentiles(col("ttft_ms"))
    cost, nbytes, energy = total("cost_usd"), total("remote_bytes"), total("energy_j")
    pii = [int(v or 0) for v in col("pii_sent")]
    per = (lambda t: t / n) if n else (lambda t: math.nan)
    summary: dict[str, Any] = {
        "name": name,
        "mode": mode,
        "quality": {"mean": _num(q_mean), "ci_low": _num(q_lo), "ci_high": _num(q_hi)},
        "llm_call_share": _num(per(float(sum(1 for v in col("llm_calls") if (v or 0) > 0)))),
        "cost_usd": cost,
        "cost_usd_per_1k": _num(per(cost) * 1000),
        "latency_ms": {k: _num(v) for k, v in lat.items()},
        "ttft_ms": {"p50": _num(ttft["p50"]), "p95": _num(ttft["p95"])},
        "remote_bytes": int(nbytes),
        "remote_bytes_per_request": _num(per(nbytes)),
        "energy_j": energy,
        "energy_j_per_request": _num(per(energy)),
        "privacy_leaks": sum(pii),
        "privacy_leaks_by_tier": leaks_by_tier(col("pii_sent_by_tier")),
        "leak_rate": _num(per(float(sum(1 for v in pii if v >= 1)))),
        "n": n,
    }
    return summary


def leaks_by_tier(counts: Iterable[Mapping[str, int] | None]) -> dict[str, int]:
    """{tier: entities sent} over the records, every tier listed (0 when none was sent)."""
    out: dict[str, int] = dict.fromkeys(TIERS, 0)
    for c in counts:
        for tier, n in (c or {}).items():
            out[tier] = out.get(tier, 0) + int(n)
    return out


def summarize(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary per strategy, in order of first appearance of the strategy in `records`."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r["strategy"]), []).append(r)
    return [summarize_strategy(recs, name=name) for name, recs in groups.items()]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points no other point beats (cost <= and quality >=,
    one of them strictly), ordered by cost. Points with a NaN/None coordinate are left out."""
    valid = [
        (i, float(c), float(q))
        for i, (c, q) in enumerate(points)
        if c is not None and q is not None and math.isfinite(c) and math.isfinite(q)
    ]
    front = []
    for i, c, q in valid:
        dominated = any(
            (c2 <= c and q2 >= q) and (c2 < c or q2 > q) for j, c2, q2 in valid if j != i
        )
        if not dominated:
            front.append((c, -q, i))
    return [i for _, _, i in sorted(front)]
