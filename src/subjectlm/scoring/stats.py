"""Paired before/after statistics of per-question scores (pure; numbers pinned by tests).

Both take the two runs' scores of the same questions, in the same order: `before[i]` and
`after[i]` belong to question i. Differences are after − before.

- bootstrap_mean_ci: a mean and its percentile bootstrap interval (also used for arena win rates).
- paired_bootstrap_ci: the mean difference and its percentile bootstrap interval, resampling
  questions with replacement (the pairs stay together, so question difficulty cancels out).
- sign_test: the exact two-sided sign test on the questions whose score changed: under "no
  difference" the number that went up is Binomial(n, 1/2); p = min(1, 2 · P(X ≤ min(up, down))).
"""

from __future__ import annotations

from fractions import Fraction
from math import comb
from typing import Any, Sequence


def _differences(before: Sequence[float], after: Sequence[float]) -> list[float]:
    if len(before) != len(after):
        raise ValueError(f"paired scores need equal lengths, got {len(before)} and {len(after)}")
    return [float(b) - float(a) for a, b in zip(before, after)]


def bootstrap_mean_ci(values: Sequence[float], n_bootstrap: int = 2000, ci: float = 0.95,
                      seed: int = 0) -> dict[str, Any]:
    """{"n", "mean", "ci": [low, high]}: the (1−ci)/2 and (1+ci)/2 quantiles (numpy's linear
    interpolation) of the means of `n_bootstrap` resamples with replacement. Empty input: None values."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return {"n": 0, "mean": None, "ci": [None, None]}
    rng = np.random.default_rng(seed)
    means = np.concatenate([x[rng.integers(0, x.size, size=(min(500, n_bootstrap - start), x.size))].mean(axis=1)
                            for start in range(0, n_bootstrap, 500)])  # 500 rounds at a time bound the memory
    low, high = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return {"n": int(x.size), "mean": float(x.mean()), "ci": [float(low), float(high)]}


def paired_bootstrap_ci(before: Sequence[float], after: Sequence[float], n_bootstrap: int = 2000,
                        ci: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """{"n", "mean_diff", "ci": [low, high]}: bootstrap_mean_ci of the per-question differences."""
    boot = bootstrap_mean_ci(_differences(before, after), n_bootstrap, ci, seed)
    return {"n": boot["n"], "mean_diff": boot["mean"], "ci": boot["ci"]}


def exact_binomial_p(b: int, c: int) -> float:
    """Two-sided exact binomial p-value of b against c under p=1/2: the sign test, and McNemar's exact test
    on b and c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** n)))


def sign_test(before: Sequence[float], after: Sequence[float]) -> dict[str, Any]:
    """{"up", "down", "ties", "p_value"}: exact two-sided binomial test on the changed questions."""
    diffs = _differences(before, after)
    up = sum(d > 0 for d in diffs)
    down = sum(d < 0 for d in diffs)
    return {"up": up, "down": down, "ties": len(diffs) - up - down, "p_value": exact_binomial_p(up, down)}


def paired_comparison(before: Sequence[float], after: Sequence[float], n_bootstrap: int = 2000,
                      ci: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Means of both runs, the bootstrap interval of the difference and the sign test, in one dict."""
    n = len(before)
    return {"mean_before": sum(map(float, before)) / n if n else None,
            "mean_after": sum(map(float, after)) / n if n else None,
            **paired_bootstrap_ci(before, after, n_bootstrap, ci, seed), **sign_test(before, after)}
