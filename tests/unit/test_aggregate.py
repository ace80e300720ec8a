from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from duetto.eval.aggregate import (
    SUMMARY_KEYS,
    bootstrap_ci,
    pareto_front,
    percentiles,
    summarize,
    summarize_strategy,
)


def rec(strategy: str, i: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "strategy": strategy,
        "mode": "cascade",
        "item_id": f"i{i}",
        "quality": 1.0,
        "latency_ms": 100.0,
        "ttft_ms": None,
        "cost_usd": 0.0,
        "remote_bytes": 0,
        "energy_j": 1.0,
        "pii_sent": 0,
        "llm_calls": 0,
        "tokens_in": 10,
        "tokens_out": 5,
    }
    base.update(kw)
    return base


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n() -> None:
    rng = random.Random(0)
    small = [float(rng.random() < 0.7) for _ in range(30)]
    big = [float(rng.random() < 0.7) for _ in range(3000)]
    m, lo, hi = bootstrap_ci(small)
    assert lo < m < hi and m == pytest.approx(np.mean(small))
    _, blo, bhi = bootstrap_ci(big)
    assert (bhi - blo) < (hi - lo) / 4
    assert blo < 0.7 < bhi
    assert bootstrap_ci(small, seed=1) != bootstrap_ci(small, seed=2)
    assert bootstrap_ci(small, seed=1) == bootstrap_ci(small, seed=1)
    # a wider confidence level gives a wider interval
    _, lo99, hi99 = bootstrap_ci(small, alpha=0.01)
    assert lo99 <= lo and hi99 >= hi


def test_bootstrap_ci_edge_cases() -> None:
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([0.4]) == (0.4, 0.4, 0.4)
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    m, lo, hi = bootstrap_ci([0.0, 1.0, None, float("nan")])
    assert m == 0.5 and 0.0 <= lo <= hi <= 1.0


def test_percentiles() -> None:
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5) and p["p95"] == pytest.approx(95.05)
    assert p["mean"] == pytest.approx(50.5)
    assert set(percentiles([]).keys()) == {"p50", "p95", "mean"}
    assert math.isnan(percentiles([None])["p50"])


def test_summary_has_exactly_the_keys_and_right_totals() -> None:
    records = [
        rec(
            "c",
            0,
            quality=1.0,
            cost_usd=0.002,
            remote_bytes=1000,
            llm_calls=1,
            pii_sent=2,
            energy_j=10.0,
            latency_ms=300.0,
            ttft_ms=50.0,
        ),
        rec("c", 1, quality=0.0, latency_ms=100.0, ttft_ms=20.0),
        rec("c", 2, quality=1.0, cost_usd=0.001, remote_bytes=500, llm_calls=2, latency_ms=200.0),
        rec("c", 3, quality=None, latency_ms=400.0),
    ]
    s = summarize_strategy(records)
    assert tuple(s) == SUMMARY_KEYS
    assert s["name"] == "c" and s["mode"] == "cascade" and s["n"] == 4
    assert s["quality"]["mean"] == pytest.approx(2 / 3)  # the unscored item is left out
    assert s["quality"]["ci_low"] <= s["quality"]["mean"] <= s["quality"]["ci_high"]
    assert s["llm_call_share"] == 0.5
    assert s["cost_usd"] == pytest.approx(0.003)
    assert s["cost_usd_per_1k"] == pytest.approx(0.75)
    assert s["latency_ms"]["p50"] == pytest.approx(250.0)
    assert s["latency_ms"]["mean"] == pytest.approx(250.0)
    assert s["ttft_ms"] == {"p50": pytest.approx(35.0), "p95": pytest.approx(48.5)}
    assert s["remote_bytes"] == 1500 and s["remote_bytes_per_request"] == 375.0
    assert s["energy_j"] == pytest.approx(13.0) and s["energy_j_per_request"] == 3.25
    assert s["privacy_leaks"] == 2 and s["leak_rate"] == 0.25


def test_summarize_groups_by_strategy_in_order() -> None:
    records = [rec("b", i) for i in range(3)] + [rec("a", i, mode="route") for i in range(2)]
    out = summarize(records)
    assert [s["name"] for s in out] == ["b", "a"]
    assert [s["n"] for s in out] == [3, 2] and out[1]["mode"] == "route"
    assert all(tuple(s) == SUMMARY_KEYS for s in out)
    assert summarize([]) == []


def test_missing_values_are_none_not_nan() -> None:
    s = summarize_strategy([rec("x", 0, quality=None)])
    assert s["quality"] == {"mean": None, "ci_low": None, "ci_high": None}
    assert s["ttft_ms"] == {"p50": None, "p95": None}


def test_pareto_front() -> None:
    pts = [
        (0.0, 0.5),
        (1.0, 0.9),
        (0.5, 0.8),
        (0.6, 0.7),
        (0.5, 0.6),
        (2.0, 0.9),
        (float("nan"), 1.0),
    ]
    assert pareto_front(pts) == [0, 2, 1]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5)]) == [0]
    # identical points: neither beats the other
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [0, 1]


def test_privacy_column_by_risk_tier() -> None:
    records = [
        {**rec("c", 1), "pii_sent": 3, "pii_sent_by_tier": {"secret": 1, "contact": 2}},
        {**rec("c", 2), "pii_sent": 1, "pii_sent_by_tier": {"contact": 1}},
        rec("c", 3),  # an older record without tiers
    ]
    s = summarize_strategy(records)
    assert s["privacy_leaks"] == 4
    assert s["privacy_leaks_by_tier"] == {"secret": 1, "identifier": 0, "contact": 3, "quasi": 0}
