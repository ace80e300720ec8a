"""Bootstrap confidence intervals: one numpy helper for the evaluator and the routing bench.

    lo, hi = bootstrap(lambda idx: x[idx].mean(), len(x), n_boot=2000, seed=0, alpha=0.05)

Each of the `n_boot` resamples draws `n` indices with replacement (`rng.integers(0, n, n)` from
`numpy.random.default_rng(seed)`, one draw per resample, so a seed names one set of resamples
whatever the statistic); `statistic(idx)` returns a number or a vector of numbers. The interval
is the percentile interval (alpha/2, 1 - alpha/2) of each component over the resamples whose
value is not NaN (a statistic may return NaN, or raise ValueError, for a degenerate resample).
NaN where no resample gave a value. Pure numpy (the core stays free of scipy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Statistic = Callable[[np.ndarray], float | Sequence[float] | np.ndarray]


def bootstrap(
    statistic: Statistic,
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> np.ndarray:
    """(low, high) of the percentile bootstrap interval: shape (2,) for a scalar statistic,
    (2, k) for a statistic of k components."""
    rng = np.random.default_rng(seed)
    values: list[np.ndarray] = []
    scalar = True
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            value = np.asarray(statistic(idx), dtype=np.float64)
        except ValueError:
            continue
        scalar = value.ndim == 0
        values.append(np.atleast_1d(value))
    if not values:
        return np.full(2, np.nan)
    table = np.stack(values)  # (resamples, k)
    out = np.full((2, table.shape[1]), np.nan)
    for j in range(table.shape[1]):
        col = table[:, j][~np.isnan(table[:, j])]
        if col.size:
            out[:, j] = np.quantile(col, [alpha / 2, 1 - alpha / 2])
    return out[:, 0] if scalar else out
