"""Pure routing metrics: numpy arrays in, floats out. No I/O, no models.

Two models (RouteLLM's definitions). A router gives each prompt a score, higher = the weak
model is more likely enough; sweeping a threshold sends the lowest-scored prompts to the strong
model. With `w`, `s` the weak/strong per-prompt quality, the quality after sending share c is
q(c), and PGR(c) = (q(c) − q_weak) / (q_strong − q_weak).
- APGR: area under PGR(c) for c in [0, 1].
- CPT(x): the smallest strong-call share with PGR ≥ x.
Tied scores move together: the curve is drawn through the ends of tie groups and interpolated
linearly in between, which equals the expectation under random tie-breaking (a constant score
gives the straight line from (0, 0) to (1, 1): APGR = 0.5 exactly).

Many models. Each λ of a sweep gives one (mean cost, mean quality) point. The non-decreasing
convex hull of the points is what a router can reach by mixing two operating points. AIQ is
the area under that hull over cost normalised to [0, 1] between `c_min` and `c_max` (zero left
of the router's cheapest point, flat right of its best point).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from duetto.eval.recorded import RecordedSuite
from duetto.scoring.routers import Router, RouterInputs, choose_models
from duetto.stats import bootstrap


def pgr_curve(
    score: np.ndarray, weak: np.ndarray, strong: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(strong-call shares, PGR) at the ends of tie groups, starting at (0, 0)."""
    score = np.asarray(score, dtype=np.float64)
    gain = np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)
    wt = np.ones_like(score) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(score, kind="stable")
    s_sorted, gain_sorted, wt_sorted = score[order], gain[order], wt[order]
    total = wt_sorted.sum()
    total_gain = float((gain_sorted * wt_sorted).sum())
    cum_share = np.concatenate([[0.0], np.cumsum(wt_sorted)]) / total
    cum_gain = np.concatenate([[0.0], np.cumsum(gain_sorted * wt_sorted)])
    ends = np.concatenate([[0], np.flatnonzero(np.diff(s_sorted) != 0) + 1, [len(score)]])
    if total_gain == 0:
        raise ValueError("the weak and strong models have equal quality: PGR is undefined")
    return cum_share[ends], cum_gain[ends] / total_gain


def area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def apgr(score: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    return area(*pgr_curve(score, weak, strong))


def first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """Smallest x where the piecewise-linear curve reaches `target` (nan if it never does)."""
    hit = np.flatnonzero(y >= target - 1e-12)
    if len(hit) == 0:
        return float("nan")
    j = int(hit[0])
    if j == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[j - 1], x[j], y[j - 1], y[j]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def cpt(score: np.ndarray, weak: np.ndarray, strong: np.ndarray, target: float) -> float:
    """Strong-call share needed to recover `target` (e.g. 0.8) of the weak→strong gap."""
    return first_crossing(*pgr_curve(score, weak, strong), target)


def oracle_score(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """The perfect router's score: the weak-minus-strong quality itself."""
    return np.asarray(weak, dtype=np.float64) - np.asarray(strong, dtype=np.float64)


def bootstrap_two_model(
    score: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    targets: tuple[float, ...] = (0.5, 0.8, 0.95),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile bootstrap intervals of APGR and CPT(targets), resampling prompts.

    Resampling is done with multinomial weights on the prompts, so the sort is done once."""
    keys = ["apgr", *(f"cpt{round(t * 100)}" for t in targets)]

    def statistic(idx: np.ndarray) -> list[float]:
        wt = np.bincount(idx, minlength=len(score)).astype(np.float64)
        x, y = pgr_curve(score, weak, strong, wt)  # ValueError: resample skipped
        return [area(x, y), *(first_crossing(x, y, t) for t in targets)]

    lo, hi = bootstrap(statistic, len(score), n_boot=n_boot, seed=seed, alpha=0.05).reshape(2, -1)
    if lo.size != len(keys):  # no resample gave a curve
        return {k: (float("nan"), float("nan")) for k in keys}
    return {k: (float(a), float(b)) for k, a, b in zip(keys, lo, hi, strict=True)}


# ---- many models ----------------------------------------------------------------------------


def nondecreasing_hull(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper convex hull of the points, cut where it stops rising (so it never decreases)."""
    pts = sorted(
        set(zip(np.asarray(cost, float).tolist(), np.asarray(quality, float).tolist(), strict=True))
    )
    # for equal costs keep only the best quality
    best: dict[float, float] = {}
    for c, q in pts:
        best[c] = max(q, best.get(c, -np.inf))
    hull: list[tuple[float, float]] = []
    for c, q in sorted(best.items()):
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord (c1,q1)-(c,q)
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append((c, q))
    hx = np.array([h[0] for h in hull])
    hy = np.array([h[1] for h in hull])
    top = int(np.argmax(hy))
    return hx[: top + 1], hy[: top + 1]


def hull_quality_at(hx: np.ndarray, hy: np.ndarray, cost: float) -> float:
    """Quality reachable at mean cost ≤ `cost` (nan when cheaper than every point)."""
    if cost < hx[0] - 1e-15:
        return float("nan")
    return float(np.interp(cost, hx, hy))  # flat past the last point


def hull_cost_for(hx: np.ndarray, hy: np.ndarray, quality: float) -> float:
    """Cheapest mean cost reaching `quality` (nan if the hull never does)."""
    return first_crossing(hx, hy, quality)


def aiq(hx: np.ndarray, hy: np.ndarray, c_min: float, c_max: float) -> float:
    """Area under the hull over normalised cost [0, 1]."""
    if c_max <= c_min:
        raise ValueError("c_max must exceed c_min")
    x = (hx - c_min) / (c_max - c_min)
    grid = np.linspace(0.0, 1.0, 2001)
    y = np.where(grid < x[0] - 1e-12, 0.0, np.interp(grid, x, hy))
    return area(grid, y)


# ---- k-fold evaluation --------------------------------------------------------------------


def fold_ids(groups: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold of each prompt: whole groups are shuffled (fixed seed) and dealt round-robin, so no
    group (identical prompt) is ever in both the training and the test part."""
    uniq, inverse = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    group_fold = np.empty(len(uniq), dtype=np.int64)
    group_fold[rng.permutation(len(uniq))] = np.arange(len(uniq)) % k
    return group_fold[inverse]


def cross_val_predict(
    make_router: Callable[[], Router],
    inputs: RouterInputs,
    scores: np.ndarray,
    models: list[str],
    folds: np.ndarray,
) -> np.ndarray:
    """Out-of-fold predicted quality (n, m): each fold is scored by a router fitted on the rest."""
    out = np.zeros(scores.shape, dtype=np.float64)
    for f in np.unique(folds):
        test = np.flatnonzero(folds == f)
        train = np.flatnonzero(folds != f)
        router = make_router().fit(inputs.subset(train), scores[train], models)
        out[test] = router.predict_quality(inputs.subset(test))
    return out


# ---- suite evaluation ------------------------------------------------------------------------


@dataclass
class RouterSpec:
    """A named router recipe: `make()` returns a fresh, unfitted router."""

    name: str
    make: Callable[[], Router]


@dataclass
class RoutingReport:
    """`result` is the JSON document of the issue; `curves` maps router name → (x, y) for the
    plot (x = strong-call share or mean cost, y = quality)."""

    result: dict[str, Any]
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    x_label: str = "strong-call share"


def router_specs(suite: RecordedSuite) -> list[RouterSpec]:
    """Every baseline and learned router for the suite (+ post-generation ones when the suite
    records the weak model's answers and has two models)."""
    from duetto.scoring import routers as r

    specs = [
        RouterSpec("random", r.RandomRouter),
        RouterSpec("length", r.LengthRouter),
        RouterSpec("prior", r.PriorRouter),
        RouterSpec("logreg", lambda: r.LogisticRouter(c=0.1)),
        RouterSpec("knn", lambda: r.KnnRouter(k=100)),
        RouterSpec("mf", lambda: r.MFRouter(l2=1e-3, epochs=100)),
        RouterSpec("ensemble", r.default_router),
    ]
    if suite.two_model and suite.weak_responses() is not None:
        specs += [
            RouterSpec("cascade:arith_check", r.ArithmeticCheckScorer),
            RouterSpec("cascade:answer_format", r.AnswerFormatScorer),
            RouterSpec("cascade:logreg", lambda: r.CascadeLogisticScorer(c=1.0)),
        ]
    return specs


def suite_inputs(suite: RecordedSuite, embed: bool = True) -> RouterInputs:
    inputs = RouterInputs(suite.prompts, suite.tasks, None, suite.weak_responses())
    if embed:
        inputs.require_embeddings()
    return inputs


def _round(x: float, nd: int = 4) -> float | None:
    return None if not np.isfinite(x) else round(float(x), nd)


def _downsample(x: np.ndarray, y: np.ndarray, n: int = 201) -> tuple[list[float], list[float]]:
    grid = np.linspace(0.0, 1.0, n)
    return grid.tolist(), np.interp(grid, x, y).tolist()


def evaluate_two_model(
    suite: RecordedSuite,
    inputs: RouterInputs,
    specs: list[RouterSpec],
    k: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
) -> RoutingReport:
    weak, strong = suite.scores[:, 0], suite.scores[:, -1]
    folds = fold_ids(suite.groups, k, seed)
    q_weak, q_strong = float(weak.mean()), float(strong.mean())
    scored: list[tuple[str, np.ndarray]] = [("oracle", oracle_score(weak, strong))]
    for spec in specs:
        q = cross_val_predict(spec.make, inputs, suite.scores, suite.models, folds)
        scored.append((spec.name, q[:, 0] - q[:, -1]))
    rows, curves = [], {}
    for name, score in scored:
        ci = bootstrap_two_model(score, weak, strong, n_boot=n_boot, seed=seed)
        rows.append(
            {
                "name": name,
                "apgr": _round(apgr(score, weak, strong)),
                "apgr_ci": [_round(ci["apgr"][0]), _round(ci["apgr"][1])],
                "cpt50": _round(cpt(score, weak, strong, 0.5)),
                "cpt80": _round(cpt(score, weak, strong, 0.8)),
                "cpt95": _round(cpt(score, weak, strong, 0.95)),
            }
        )
        x, pgr = pgr_curve(score, weak, strong)
        curves[name] = _downsample(x, q_weak + pgr * (q_strong - q_weak))
    result = {
        "suite": suite.name,
        "n": len(suite),
        "q_weak": _round(q_weak),
        "q_strong": _round(q_strong),
        "routers": rows,
    }
    return RoutingReport(result, curves, "strong-call share")


LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e2, 120), [1e6]])


def multi_model_point_cloud(
    quality_pred: np.ndarray, scores: np.ndarray, costs: np.ndarray, lambdas: np.ndarray = LAMBDAS
) -> tuple[np.ndarray, np.ndarray]:
    """(mean cost, mean true quality) for each λ of the sweep; costs scaled to a mean of 1 for
    the dearest model so that one λ grid fits every price list."""
    scale = float(costs.mean(axis=0).max()) or 1.0
    rows = np.arange(len(scores))
    pts_c, pts_q = [], []
    for lam in lambdas:
        pick = choose_models(quality_pred, costs / scale, float(lam))
        pts_c.append(costs[rows, pick].mean())
        pts_q.append(scores[rows, pick].mean())
    return np.array(pts_c), np.array(pts_q)


def evaluate_multi_model(
    suite: RecordedSuite, inputs: RouterInputs, specs: list[RouterSpec], k: int = 5, seed: int = 0
) -> RoutingReport:
    folds = fold_ids(suite.groups, k, seed)
    mean_q, mean_c = suite.scores.mean(axis=0), suite.costs.mean(axis=0)
    best = int(np.argmax(mean_q))
    best_q, best_c = float(mean_q[best]), float(mean_c[best])
    c_min, c_max = float(mean_c.min()), float(mean_c.max())
    predictions: list[tuple[str, np.ndarray]] = [("oracle", suite.scores)]
    for spec in specs:
        predictions.append(
            (spec.name, cross_val_predict(spec.make, inputs, suite.scores, suite.models, folds))
        )
    rows, curves = [], {}
    for name, pred in predictions:
        pc, pq = multi_model_point_cloud(pred, suite.scores, suite.costs)
        hx, hy = nondecreasing_hull(pc, pq)
        rows.append(
            {
                "name": name,
                "aiq": _round(aiq(hx, hy, c_min, c_max)),
                "quality_at_best_single_cost": _round(hull_quality_at(hx, hy, best_c)),
                "cost_to_match_best_single": _round(hull_cost_for(hx, hy, best_q), 8),
            }
        )
        curves[name] = (hx.tolist(), hy.tolist())
    result = {
        "suite": suite.name,
        "models": [
            {"name": m, "quality": _round(float(mean_q[j])), "cost": _round(float(mean_c[j]), 8)}
            for j, m in enumerate(suite.models)
        ],
        "routers": rows,
        "best_single": {
            "name": suite.models[best],
            "quality": _round(best_q),
            "cost": _round(best_c, 8),
        },
    }
    return RoutingReport(result, curves, "mean cost per query ($)")


def evaluate_suite(
    suite: RecordedSuite,
    inputs: RouterInputs | None = None,
    specs: list[RouterSpec] | None = None,
    k: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
) -> RoutingReport:
    inputs = inputs if inputs is not None else suite_inputs(suite)
    specs = specs if specs is not None else router_specs(suite)
    if suite.two_model:
        return evaluate_two_model(suite, inputs, specs, k, seed, n_boot)
    return evaluate_multi_model(suite, inputs, specs, k, seed)
