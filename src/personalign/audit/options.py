"""The audit's options, checked before any data is read (a light module: the command line imports it first)."""

from __future__ import annotations

import numpy as np

from personalign.errors import ConfigError


def check_options(
    polarity: str, n_permutations: int, sc_items: int, max_items: int | None, min_judgments: int
) -> None:
    """ConfigError for an option out of range (before any work)."""
    if polarity not in ("higher", "lower"):
        raise ConfigError(f"polarity must be 'higher' or 'lower', got {polarity!r}")
    checks = {
        "permutations": (n_permutations, 0),
        "sc_items": (sc_items, 2),
        "min_judgments": (min_judgments, 1),
    }
    if max_items is not None:
        checks["max_items"] = (max_items, 2)
    for name, (v, lo) in checks.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {lo}, got {v!r}")
