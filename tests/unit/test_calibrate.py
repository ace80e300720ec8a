import math

import numpy as np
import pytest

from duetto.calibrate import (
    AdaptiveThreshold,
    BudgetGuard,
    StaticThreshold,
    Target,
    choose_threshold,
    sweep,
)
from duetto.errors import ConfigError

# Four requests: scores, cheap/strong quality, cheap/strong cost.
S = np.array([0.9, 0.8, 0.3, 0.1])
QC = np.array([1.0, 1.0, 0.0, 0.0])
QS = np.array([1.0, 1.0, 1.0, 1.0])
CC = np.array([0.0, 0.0, 0.0, 0.0])
CS = np.array([1.0, 1.0, 1.0, 1.0]) / 1000


def test_parse_targets() -> None:
    assert Target.parse("quality=0.95") == Target("quality", 0.95)
    assert Target.parse("llm_share=0.3").kind == "llm_share"
    assert Target.parse("budget_usd_per_1k=2").value == 2.0
    for bad in ("quality", "speed=1", "quality=x", "llm_share=1.5"):
        with pytest.raises(ConfigError):
            Target.parse(bad)


def test_sweep_endpoints() -> None:
    pts = sweep(S, QC, QS, CC, CS)
    assert pts[0].threshold == -math.inf and pts[0].llm_share == 0.0 and pts[0].quality == 0.5
    assert pts[-1].threshold == math.inf and pts[-1].llm_share == 1.0 and pts[-1].quality == 1.0


def test_quality_target_picks_cheapest_meeting_floor() -> None:
    op = choose_threshold(S, QC, QS, CC, CS, Target("quality", 1.0))
    # Escalating the two low scores is enough for full quality at half the cost.
    assert op.quality == 1.0 and op.llm_share == 0.5 and op.threshold == 0.8


def test_share_and_budget_targets() -> None:
    op = choose_threshold(S, QC, QS, CC, CS, Target("llm_share", 0.3))
    assert op.llm_share == 0.25  # never above the target
    op = choose_threshold(S, QC, QS, CC, CS, Target("budget_usd_per_1k", 0.5))
    assert op.cost_per_1k <= 0.5 and op.quality == 1.0


def test_adaptive_tracks_share_under_drift() -> None:
    rng = np.random.default_rng(0)
    pol = AdaptiveThreshold(Target("llm_share", 0.3), start=0.5, step=0.01)
    shares = []
    for phase_mean in (0.7, 0.4):  # traffic gets harder: scores drop
        esc = []
        for _ in range(3000):
            s = float(np.clip(rng.normal(phase_mean, 0.15), 0, 1))
            e = s < pol.threshold
            pol.observe(e, 0.001 if e else 0.0)
            esc.append(e)
        shares.append(np.mean(esc[-1000:]))
    assert all(abs(s - 0.3) < 0.05 for s in shares)


def test_budget_guard_is_hard() -> None:
    guard = BudgetGuard(max_usd_per_1k=1.0, window=10)
    pol = StaticThreshold(0.9, guard=guard)
    spent = 0.0
    escalated: list[bool] = []
    for _ in range(100):
        escalate = pol.threshold > 0.5  # every request wants to escalate
        cost = 0.002 if escalate else 0.0
        spent += cost
        escalated.append(escalate)
        pol.observe(escalate, cost)
    # The cap is $0.01 per 10 requests, 5 escalations: the guard refuses (threshold -inf) once
    # the window holds 5, and lets requests through again as their costs leave the window.
    assert "".join("x" if e else "." for e in escalated[:22]) == "xxxxx......xxxxx......"
    assert max(sum(escalated[i : i + 10]) for i in range(91)) == 5
    assert sum(escalated) == 46
    # Never more than the cap over any window, plus at most one request crossing it.
    assert spent <= 100 / 1000 * 1.0 + 0.002 * 10
