"""One logistic regression fit (numpy, Newton's method), for every scorer that needs one: Platt
calibration (`verifiers.PlattCalibrator`), the learned verifier and the routers' soft-label fits.

    coef, intercept = fit_logistic(x, y, l2=1.0)
    p = sigmoid(x @ coef + intercept)

It minimises  sum_i w_i · CE(y_i, σ(x_i·coef + intercept)) + l2/2 · |coef|²  where the labels
y may be soft (in [0, 1]: each row counts y_i as positive and 1 − y_i as negative, which is what
Platt's smoothed targets and recorded quality scores need), w are optional row weights and the
intercept is not penalised. Newton steps with backtracking, so it converges in a few
iterations to the exact optimum (sklearn's `LogisticRegression(C=1/l2)` reaches the same one,
to its tolerance). Targets that are all 0 or all 1 have no finite optimum: the fit returns
zero weights and a smoothed intercept log((ȳ + 1e-3) / (1 − ȳ + 1e-3)).
"""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -35.0, 35.0))))


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    *,
    l2: float = 0.0,
    weights: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> tuple[np.ndarray, float]:
    """(coef, intercept) of the L2-penalised logistic fit of soft labels `y` on `x` (n, d)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.clip(np.asarray(y, dtype=np.float64).ravel(), 0.0, 1.0)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    n, d = x.shape
    mean = float(np.sum(w * y) / np.sum(w))
    if mean <= 1e-6 or mean >= 1 - 1e-6:
        return np.zeros(d), math.log((mean + 1e-3) / (1 - mean + 1e-3))
    xb = np.hstack([x, np.ones((n, 1))])
    penalty = np.full(d + 1, float(l2))
    penalty[-1] = 0.0
    theta = np.zeros(d + 1)
    theta[-1] = math.log(mean / (1 - mean))

    def loss(t: np.ndarray) -> float:
        z = xb @ t
        return float(np.sum(w * (np.logaddexp(0.0, z) - y * z)) + 0.5 * np.sum(penalty * t * t))

    current = loss(theta)
    for _ in range(max_iter):
        p = sigmoid(xb @ theta)
        grad = xb.T @ (w * (p - y)) + penalty * theta
        hess = (xb * (w * p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtrack until the loss does not rise (a pure Newton step can overshoot)
            candidate = theta - t * step
            new = loss(candidate)
            if new <= current + 1e-12 * abs(current) or t < 1e-6:
                break
            t /= 2
        theta, current = candidate, new
        if np.max(np.abs(t * step)) < tol:
            break
    return theta[:-1].copy(), float(theta[-1])
