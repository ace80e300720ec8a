"""duetto.stats (one bootstrap) and duetto.scoring.logistic (one logistic fit)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from duetto.scoring.logistic import fit_logistic, sigmoid
from duetto.stats import bootstrap


def test_bootstrap_scalar_and_vector_statistics() -> None:
    x = np.arange(10, dtype=float)
    lo, hi = bootstrap(lambda idx: x[idx].mean(), 10, n_boot=500, seed=0)
    assert lo < 4.5 < hi and hi - lo < 5
    again = bootstrap(lambda idx: x[idx].mean(), 10, n_boot=500, seed=0)
    assert np.array_equal(again, [lo, hi])  # a seed names one set of resamples
    both = bootstrap(lambda idx: [x[idx].mean(), x[idx].max()], 10, n_boot=500, seed=0)
    assert both.shape == (2, 2) and both[0, 0] == lo and both[1, 1] == 9.0
    # Degenerate resamples (NaN or ValueError) are left out; none at all gives NaN.
    assert np.isnan(bootstrap(lambda idx: math.nan, 10, n_boot=20)).all()

    def fails(idx: np.ndarray) -> float:
        raise ValueError("no curve")

    assert np.isnan(bootstrap(fails, 10, n_boot=20)).all()


def test_logistic_fit_recovers_known_weights_and_handles_soft_labels() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2))
    p = sigmoid(x @ np.array([2.0, -1.0]) + 0.5)
    coef, b = fit_logistic(x, p)  # soft labels: the probabilities themselves
    assert coef == pytest.approx([2.0, -1.0], abs=1e-6) and b == pytest.approx(0.5, abs=1e-6)
    hard = (rng.random(20000) < p).astype(float)
    coef2, b2 = fit_logistic(x, hard)
    assert coef2 == pytest.approx([2.0, -1.0], abs=0.1) and b2 == pytest.approx(0.5, abs=0.1)
    shrunk, _ = fit_logistic(x, hard, l2=1e4)
    assert np.all(np.abs(shrunk) < np.abs(coef2))  # the penalty pulls weights to 0


def test_logistic_fit_on_constant_targets_is_an_intercept() -> None:
    coef, b = fit_logistic(np.ones((5, 3)), np.ones(5))
    assert coef.tolist() == [0.0, 0.0, 0.0] and b == pytest.approx(math.log(1.001 / 0.001))
