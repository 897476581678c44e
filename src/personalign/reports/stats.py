"""Small interval helpers for reports that claim a difference from numbers they already hold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_mean(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float] | None:
    """Mean of ``values`` with a percentile bootstrap interval (resampling the values); None when empty."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if not len(v):
        return None
    rng = np.random.default_rng(seed)
    boots = np.array([v[rng.integers(0, len(v), len(v))].mean() for _ in range(n_boot)])
    q = (1 - level) / 2
    return {"mean": float(v.mean()), "ci95": [float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))]}
