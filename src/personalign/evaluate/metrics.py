"""Metrics of the evaluation protocol: per-person accuracy, worst persons and groups, calibration, spread over seeds.

Conventions. A test pair is a row ``(user_id, chosen, rejected)`` where the person preferred ``chosen``; a model
gives ``p = P(chosen > rejected)``. A pair counts as correct when ``p > 1/2`` (a tie ``p = 1/2`` counts one half).
Accuracy is first averaged within each person, then over persons, so a person with many pairs weighs no more
than one with few (per-pair accuracy is also reported, for contrast). Calibration is measured on both
orientations of every pair (``(p, 1)`` and ``(1 - p, 0)``), because "chosen" is always the winner and a
one-sided reliability curve would say nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

# the per-person accuracy lives with the pairs in the data layer, where the audit (below evaluate) reads it too
from personalign.data.pairs import pair_correct, per_person_accuracy

EPS = 1e-6


def mean_person_accuracy(user_ids: Sequence[str] | np.ndarray, p: np.ndarray | Sequence[float]) -> float:
    """Per-person accuracy averaged over persons."""
    acc = per_person_accuracy(user_ids, p)
    return float(acc.mean()) if len(acc) else float("nan")


def pair_accuracy(p: np.ndarray | Sequence[float]) -> float:
    """Accuracy over all pairs pooled (persons with many pairs weigh more)."""
    c = pair_correct(p)
    return float(c.mean()) if len(c) else float("nan")


def worst_fraction(per_person: pd.Series, frac: float = 0.1) -> float:
    """Mean accuracy of the worst ``frac`` of persons (at least one person)."""
    v = np.sort(np.asarray(per_person, dtype=float))
    if len(v) == 0:
        return float("nan")
    n = max(1, int(np.ceil(frac * len(v))))
    return float(v[:n].mean())


def group_columns(users: pd.DataFrame, max_values: int = 20) -> list[str]:
    """Demographic columns usable for groups: 2..max_values distinct non-missing values."""
    cols = []
    for c in users.columns:
        if c == "user_id":
            continue
        n = users[c].dropna().astype(str).nunique()
        if 2 <= n <= max_values:
            cols.append(c)
    return cols


def group_accuracy(
    per_person: pd.Series, users: pd.DataFrame, columns: Sequence[str] | None = None, min_persons: int = 5
) -> dict[str, dict[str, float]]:
    """Per demographic column and value: per-person accuracy averaged over the group's persons.

    Groups with fewer than ``min_persons`` persons in the test cell are left out (too noisy to rank).
    """
    if users is None or len(users) == 0 or len(per_person) == 0:
        return {}
    cols = list(columns) if columns is not None else group_columns(users)
    u = users.drop_duplicates("user_id").set_index("user_id")
    out: dict[str, dict[str, float]] = {}
    acc = per_person.rename("acc")
    for c in cols:
        if c not in u.columns:
            continue
        g = pd.concat([acc, u[c].astype("string")], axis=1, join="inner").dropna()
        if not len(g):
            continue
        agg = g.groupby(c)["acc"].agg(["mean", "size"])
        agg = agg[agg["size"] >= min_persons]
        if len(agg) >= 2:
            out[c] = {str(k): float(v) for k, v in agg["mean"].items()}
    return out


def worst_group(groups: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The group with the lowest accuracy over all columns, and the best-worst gap within its column.

    Also the largest best-worst gap over columns (``max_gap``, ``max_gap_column``).
    """
    worst: dict[str, Any] = {"column": None, "group": None, "accuracy": float("nan"), "gap": float("nan")}
    best_gap, best_gap_col = float("nan"), None
    for col, vals in groups.items():
        if not vals:
            continue
        lo_k = min(vals, key=vals.get)
        gap = max(vals.values()) - vals[lo_k]
        if worst["column"] is None or vals[lo_k] < worst["accuracy"]:
            worst = {"column": col, "group": lo_k, "accuracy": float(vals[lo_k]), "gap": float(gap)}
        if best_gap_col is None or gap > best_gap:
            best_gap, best_gap_col = float(gap), col
    worst["max_gap"] = best_gap
    worst["max_gap_column"] = best_gap_col
    return worst


def log_loss(p: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float] | None = None) -> float:
    """Mean negative log-likelihood of the outcomes (y = 1: chosen won, the default)."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    y = np.ones_like(p) if y is None else np.asarray(y, dtype=float)
    if len(p) == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def symmetrize(p: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Both orientations of every pair: probabilities (p, 1 - p) with outcomes (1, 0)."""
    p = np.asarray(p, dtype=float)
    return np.concatenate([p, 1 - p]), np.concatenate([np.ones_like(p), np.zeros_like(p)])


def brier(p: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> float:
    """Mean squared error of the probabilities."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def reliability(
    p: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], n_bins: int = 10
) -> pd.DataFrame:
    """Equal-width bins of predicted probability: count, mean prediction, observed frequency."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    b = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    df = pd.DataFrame({"bin": b, "p": p, "y": y})
    g = df.groupby("bin").agg(n=("p", "size"), pred=("p", "mean"), obs=("y", "mean"))
    return g.reindex(range(n_bins)).fillna({"n": 0})


def ece(p: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], n_bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (bin share) * |observed frequency - mean prediction|."""
    p = np.asarray(p, dtype=float)
    if len(p) == 0:
        return float("nan")
    r = reliability(p, y, n_bins).dropna()
    return float((r["n"] / len(p) * (r["obs"] - r["pred"]).abs()).sum())


def mae(pred: np.ndarray | Sequence[float], true: np.ndarray | Sequence[float]) -> float:
    """Mean absolute error; NaN for no predictions."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    return float(np.mean(np.abs(pred - true))) if len(pred) else float("nan")


def pair_metrics(
    user_ids: Sequence[str] | np.ndarray,
    p: np.ndarray | Sequence[float],
    users: pd.DataFrame | None = None,
    contested: np.ndarray | None = None,
    group_cols: Sequence[str] | None = None,
    min_group_persons: int = 5,
) -> dict[str, Any]:
    """Every pairwise metric of one model on one test cell.

    ``contested``: per pair, 1.0 contested, 0.0 consensus, NaN unknown (see :func:`pair_contested`).
    Returns scalars plus ``per_person`` (a Series) and ``groups`` (column -> value -> accuracy).
    """
    p = np.asarray(p, dtype=float)
    uid = np.asarray(user_ids, dtype=object).astype(str)
    pp = per_person_accuracy(uid, p)
    ps, ys = symmetrize(p)
    out: dict[str, Any] = {
        "accuracy": float(pp.mean()) if len(pp) else float("nan"),
        "pair_accuracy": pair_accuracy(p),
        "worst_decile": worst_fraction(pp, 0.1),
        "log_loss": log_loss(p),
        "ece": ece(ps, ys),
        "brier": brier(ps, ys),
        "n_pairs": int(len(p)),
        "n_persons": int(len(pp)),
    }
    if contested is not None and len(p):
        c = np.asarray(contested, dtype=float)
        for name, mask in (("contested", c == 1.0), ("consensus", c == 0.0)):
            out[f"{name}_accuracy"] = mean_person_accuracy(uid[mask], p[mask]) if mask.any() else float("nan")
            out[f"n_{name}_pairs"] = int(mask.sum())
    groups = group_accuracy(pp, users, group_cols, min_group_persons) if users is not None else {}
    w = worst_group(groups)
    out["worst_group"] = w["accuracy"]
    out["worst_group_name"] = f"{w['column']}={w['group']}" if w["column"] is not None else None
    out["group_gap"] = w["gap"]
    out["max_group_gap"] = w["max_gap"]
    out["per_person"] = pp
    out["groups"] = groups
    return out


def pair_contested(
    chosen_ids: Sequence[str], rejected_ids: Sequence[str], contested_items: pd.Series
) -> np.ndarray:
    """Per pair: 1 if either item is contested, 0 if both are consensus items, NaN when unknown."""
    m = {str(k): float(v) for k, v in contested_items.items()}
    a = np.array([m.get(str(i), np.nan) for i in chosen_ids], dtype=float)
    b = np.array([m.get(str(i), np.nan) for i in rejected_ids], dtype=float)
    out = np.full(len(a), np.nan)
    out[(a == 1) | (b == 1)] = 1.0
    out[(a == 0) & (b == 0)] = 0.0
    return out


# ------------------------------------------------------------------------------------------ spread over seeds
def interval(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean, standard deviation (ddof 1) and a Student-t confidence interval of the mean over seeds."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return {"mean": None, "std": None, "ci95": [None, None], "n": 0, "values": [float(x) for x in values]}
    m = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    if n > 1:
        h = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
    else:
        h = float("nan")
    return {
        "mean": m,
        "std": sd,
        "ci95": [m - h, m + h] if n > 1 else [None, None],
        "n": n,
        "values": [float(x) for x in v],
    }


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """a - b paired by seed (same split and data), with its Student-t interval; ``significant`` if it excludes 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    out = interval(d, level)
    lo, hi = out["ci95"]
    out["significant"] = bool(lo is not None and np.isfinite(lo) and (lo > 0 or hi < 0))
    return out
