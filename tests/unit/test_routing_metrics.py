"""Routing metrics on tiny hand-made cases whose answers are derived by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from duetto.eval.routing import (
    aiq,
    apgr,
    bootstrap_two_model,
    choose_models,
    cpt,
    fold_ids,
    hull_cost_for,
    hull_quality_at,
    multi_model_point_cloud,
    nondecreasing_hull,
    oracle_score,
    pgr_curve,
)

# 4 prompts: the weak model gets prompts 0 and 3 right, the strong one gets all four.
# q_weak = 0.5, q_strong = 1, the gap comes from prompts 1 and 2.
WEAK = np.array([1.0, 0.0, 0.0, 1.0])
STRONG = np.array([1.0, 1.0, 1.0, 1.0])


def test_oracle_recovers_the_gap_with_half_the_calls() -> None:
    # Oracle sends {1, 2} first (one tie group): curve (0,0) → (0.5,1) → (1,1).
    # Area = 0.5·(0+1)/2 + 0.5·1 = 0.75; PGR = 2·share on the first segment.
    score = oracle_score(WEAK, STRONG)
    assert apgr(score, WEAK, STRONG) == pytest.approx(0.75)
    assert cpt(score, WEAK, STRONG, 0.5) == pytest.approx(0.25)
    assert cpt(score, WEAK, STRONG, 0.8) == pytest.approx(0.40)
    assert cpt(score, WEAK, STRONG, 0.95) == pytest.approx(0.475)


def test_constant_score_is_the_diagonal() -> None:
    # One tie group: the straight line (0,0) → (1,1): APGR 0.5, CPT(x) = x.
    score = np.zeros(4)
    assert apgr(score, WEAK, STRONG) == pytest.approx(0.5)
    assert cpt(score, WEAK, STRONG, 0.8) == pytest.approx(0.8)


def test_reversed_oracle_is_worst() -> None:
    # {0, 3} first (no gain), then {1, 2}: (0,0) → (0.5,0) → (1,1): area 0.25, CPT(50%) 0.75.
    score = -oracle_score(WEAK, STRONG)
    assert apgr(score, WEAK, STRONG) == pytest.approx(0.25)
    assert cpt(score, WEAK, STRONG, 0.5) == pytest.approx(0.75)


def test_distinct_scores_step_by_step() -> None:
    # Order sent to strong: 3 (gain 0), 2 (1), 1 (1), 0 (0) → PGR 0, 0, .5, 1, 1 at shares
    # 0, .25, .5, .75, 1. Area = .25·.25 + .25·.75 + .25·1 = 0.5; CPT(80%) = .5 + .3/.5·.25 = .65.
    score = np.array([4.0, 3.0, 2.0, 1.0])
    x, y = pgr_curve(score, WEAK, STRONG)
    assert x.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert y.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert apgr(score, WEAK, STRONG) == pytest.approx(0.5)
    assert cpt(score, WEAK, STRONG, 0.8) == pytest.approx(0.65)


def test_weights_equal_duplication() -> None:
    score = np.array([0.3, 0.1, 0.2, 0.4])
    wt = np.array([2.0, 1.0, 1.0, 1.0])
    dup = np.array([0, 0, 1, 2, 3])
    xw, yw = pgr_curve(score, WEAK, STRONG, wt)
    xd, yd = pgr_curve(score[dup], WEAK[dup], STRONG[dup])
    assert np.allclose(xw, xd) and np.allclose(yw, yd)


def test_random_scores_average_one_half() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    weak = (rng.random(n) < 0.6).astype(float)
    strong = (rng.random(n) < 0.8).astype(float)
    values = [apgr(rng.random(n), weak, strong) for _ in range(20)]
    assert abs(float(np.mean(values)) - 0.5) < 0.02
    assert apgr(oracle_score(weak, strong), weak, strong) > 1.0  # oracle beats the strong model


def test_equal_models_are_rejected() -> None:
    with pytest.raises(ValueError):
        apgr(np.zeros(2), np.ones(2), np.ones(2))


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    n = 600
    weak = (rng.random(n) < 0.6).astype(float)
    strong = np.maximum(weak, (rng.random(n) < 0.5).astype(float))
    score = oracle_score(weak, strong) + rng.normal(0, 0.8, n)  # a noisy but useful router
    point = apgr(score, weak, strong)
    ci = bootstrap_two_model(score, weak, strong, n_boot=300, seed=0)
    lo, hi = ci["apgr"]
    assert lo < point < hi
    assert lo > 0.5 and hi - lo < 0.2
    assert ci["cpt80"][0] <= cpt(score, weak, strong, 0.8) <= ci["cpt80"][1]


# ---- many models ----------------------------------------------------------------------------


def test_hull_drops_points_under_the_chord_and_stops_rising() -> None:
    # (0.5, 0.25) lies under the chord (0,0)-(1,1); (1.5, 0.9) is past the top, cut.
    hx, hy = nondecreasing_hull(np.array([0.0, 0.5, 1.0, 1.5]), np.array([0.0, 0.25, 1.0, 0.9]))
    assert hx.tolist() == [0.0, 1.0] and hy.tolist() == [0.0, 1.0]
    hx2, hy2 = nondecreasing_hull(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.75, 1.0]))
    assert hx2.tolist() == [0.0, 0.5, 1.0]
    assert hy2.tolist() == [0.0, 0.75, 1.0]


def test_aiq_quality_at_cost_and_cost_to_match() -> None:
    # Hull (0, .5) → (.5, 1), then flat: area over [0, 1] = .5·(.5+1)/2 + .5·1 = 0.875.
    hx, hy = nondecreasing_hull(np.array([0.0, 0.5, 1.0]), np.array([0.5, 1.0, 0.8]))
    assert aiq(hx, hy, 0.0, 1.0) == pytest.approx(0.875, abs=1e-6)
    assert hull_quality_at(hx, hy, 0.25) == pytest.approx(0.75)
    assert hull_quality_at(hx, hy, 1.0) == pytest.approx(1.0)  # flat past the best point
    assert hull_cost_for(hx, hy, 0.75) == pytest.approx(0.25)
    assert math.isnan(hull_cost_for(hx, hy, 1.1))
    # cost normalisation: the same curve on [10, 20] dollars has the same AIQ
    assert aiq(hx * 10 + 10, hy, 10.0, 20.0) == pytest.approx(0.875, abs=1e-6)


def test_choose_models_trades_quality_for_cost() -> None:
    quality = np.array([[0.5, 0.9], [0.8, 0.8]])
    costs = np.array([[1.0, 3.0], [1.0, 3.0]])
    assert choose_models(quality, costs, 0.0).tolist() == [1, 0]  # tie → cheaper
    assert choose_models(quality, costs, 1.0).tolist() == [0, 0]  # 0.4 gain < 2·1 extra cost


def test_point_cloud_of_the_oracle_spans_cheapest_to_best() -> None:
    scores = np.array([[1.0, 1.0], [0.0, 1.0]])
    costs = np.array([[1.0, 3.0], [1.0, 3.0]])
    pc, pq = multi_model_point_cloud(scores, scores, costs, np.array([0.0, 1e6]))
    # λ=0: prompt 0 → cheap (tie), prompt 1 → dear: cost 2, quality 1. λ→∞: all cheap.
    assert pc.tolist() == [2.0, 1.0]
    assert pq.tolist() == [1.0, 0.5]


def test_folds_keep_groups_together_and_are_balanced() -> None:
    groups = np.array([0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9])
    folds = fold_ids(groups, k=5, seed=3)
    for g in np.unique(groups):
        assert len(set(folds[groups == g].tolist())) == 1
    per_fold = [len(set(groups[folds == f].tolist())) for f in range(5)]
    assert sorted(per_fold) == [2, 2, 2, 2, 2]
    assert np.array_equal(folds, fold_ids(groups, k=5, seed=3))
    assert not np.array_equal(folds, fold_ids(groups, k=5, seed=4))
