"""Is there learnable personal structure? A permutation test and split-half reliability of person effects.

Model of the person-specific part, fit on what the item mean leaves over:
    y_ui - ybar_i = b_u + p_u^T q_i + e_ui      (person offset plus a rank-k person x item interaction, ridge ALS)
Statistic: the cross-validated gain G = 1 - MSE(item mean + person part) / MSE(item mean) on held-out judgments,
the better of offsets only (k = 0) and offsets plus rank k.
Null: shuffling person ids within each item (every item keeps its answers, every person keeps the items they judged)
destroys any person structure; p = (1 + #{G_perm >= G}) / (1 + n_perm). Effect size: G - mean(G_perm), the share of
the within-item variance that is person-specific and predictable beyond chance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from personalign.audit.table import Judgments


class PersonEffectModel:
    """Ridge ALS for r_ui = b_u + p_u^T q_i on standardized residuals (``rank=0``: offsets only)."""

    def __init__(
        self, rank: int = 2, l2_offset: float = 3.0, l2_factor: float = 10.0, n_iter: int = 10, seed: int = 0
    ) -> None:
        self.rank = rank
        self.l2_offset = l2_offset
        self.l2_factor = l2_factor
        self.n_iter = n_iter
        self.seed = seed

    @staticmethod
    def _solve(onehot: sp.csr_matrix, X: np.ndarray, r: np.ndarray, reg: np.ndarray) -> np.ndarray:
        """Per-row-group ridge: for each group g, (sum x x^T + diag(reg))^-1 sum x r."""
        d = X.shape[1]
        outer = (X[:, :, None] * X[:, None, :]).reshape(len(X), d * d)
        G = np.asarray(onehot @ outer).reshape(-1, d, d) + np.diag(reg)[None]
        rhs = np.asarray(onehot @ (X * r[:, None]))
        return np.linalg.solve(G, rhs[..., None])[..., 0]

    def fit(
        self, u: np.ndarray, i: np.ndarray, r: np.ndarray, n_users: int, n_items: int
    ) -> PersonEffectModel:
        rng = np.random.default_rng(self.seed)
        n = len(r)
        U = sp.csr_matrix((np.ones(n), (u, np.arange(n))), shape=(n_users, n))
        k = self.rank
        self.Q_ = rng.normal(0, 0.1, size=(n_items, k))
        self.b_ = np.zeros(n_users)
        self.P_ = np.zeros((n_users, k))
        if k == 0:
            self.b_ = self._solve(U, np.ones((n, 1)), r, np.array([self.l2_offset]))[:, 0]
            return self
        I_ = sp.csr_matrix((np.ones(n), (i, np.arange(n))), shape=(n_items, n))
        reg_u = np.r_[self.l2_offset, np.full(k, self.l2_factor)]
        for _ in range(self.n_iter):
            sol = self._solve(U, np.c_[np.ones(n), self.Q_[i]], r, reg_u)
            self.b_, self.P_ = sol[:, 0], sol[:, 1:]
            self.Q_ = self._solve(I_, self.P_[u], r - self.b_[u], np.full(k, self.l2_factor))
        return self

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self.b_[u] + (self.P_[u] * self.Q_[i]).sum(1)


def cv_gain(j: Judgments, y: np.ndarray, folds: np.ndarray, model: PersonEffectModel) -> float:
    """Held-out gain of item mean + person part over the item mean alone (pooled over folds)."""
    n_i, n_u = len(j.items), len(j.users)
    sse_base = sse_full = 0.0
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        cnt = np.bincount(j.i[tr], minlength=n_i)
        mean_i = np.where(
            cnt > 0, np.bincount(j.i[tr], weights=y[tr], minlength=n_i) / np.maximum(cnt, 1), y[tr].mean()
        )
        r = y[tr] - mean_i[j.i[tr]]
        sd = r.std() or 1.0
        model.fit(j.u[tr], j.i[tr], r / sd, n_u, n_i)
        base = mean_i[j.i[te]]
        full = base + sd * model.predict(j.u[te], j.i[te])
        sse_base += float(((y[te] - base) ** 2).sum())
        sse_full += float(((y[te] - full) ** 2).sum())
    return 1.0 - sse_full / sse_base if sse_base > 0 else 0.0


def permute_within_items(j: Judgments, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The answers shuffled among each item's judges (design and item marginals kept)."""
    order = np.lexsort((rng.random(len(y)), j.i))  # random order within each item
    by_item = np.argsort(j.i, kind="stable")  # original positions grouped by item, same group sizes
    out = np.empty_like(y)
    out[by_item] = y[order]
    return out


SPEARMAN_BROWN_RULE = (
    "2r / (1 + r) for a split-half correlation r > 0; 0 when r <= 0 (no reliable person effect: the formula "
    "leaves [0, 1] there); split_half_r is the raw correlation"
)


def spearman_brown(r: float) -> float:
    """The full-length reliability of a split-half correlation ``r``, in [0, 1] (see :data:`SPEARMAN_BROWN_RULE`)."""
    return float(2 * r / (1 + r)) if r > 0 else 0.0


def split_half_reliability(
    j: Judgments, y: np.ndarray, n_splits: int = 20, min_judgments: int = 4, seed: int = 0
) -> dict[str, Any]:
    """Correlation across persons of their offsets (mean residual from the item mean) in two random halves of
    their judgments, Spearman-Brown corrected to the full length (:func:`spearman_brown`, clipped at 0)."""
    rng = np.random.default_rng(seed)
    n_i, n_u = len(j.items), len(j.users)
    mean_i = np.bincount(j.i, weights=y, minlength=n_i) / np.maximum(np.bincount(j.i, minlength=n_i), 1)
    res = y - mean_i[j.i]
    per = np.bincount(j.u, minlength=n_u)
    ok = per >= min_judgments
    if ok.sum() < 3:
        return {"persons": int(ok.sum()), "note": "too few persons with enough judgments"}
    rs = []
    for _ in range(n_splits):
        order = np.lexsort((rng.random(len(y)), j.u))
        rank = np.empty(len(y), np.int64)
        starts = np.r_[0, np.cumsum(per)[:-1]]
        rank[order] = np.arange(len(y)) - starts[j.u[order]]
        half = rank % 2
        m0 = np.bincount(j.u[half == 0], weights=res[half == 0], minlength=n_u) / np.maximum(
            np.bincount(j.u[half == 0], minlength=n_u), 1
        )
        m1 = np.bincount(j.u[half == 1], weights=res[half == 1], minlength=n_u) / np.maximum(
            np.bincount(j.u[half == 1], minlength=n_u), 1
        )
        if m0[ok].std() > 0 and m1[ok].std() > 0:
            rs.append(float(np.corrcoef(m0[ok], m1[ok])[0, 1]))
    r = float(np.mean(rs)) if rs else 0.0
    return {
        "persons": int(ok.sum()),
        "splits": len(rs),
        "split_half_r": r,
        "spearman_brown": spearman_brown(r),
        "spearman_brown_rule": SPEARMAN_BROWN_RULE,
    }


def structure_test(
    j: Judgments,
    *,
    rank: int = 2,
    n_permutations: int = 99,
    n_folds: int = 5,
    seed: int = 0,
    alpha: float = 0.05,
    strong_alpha: float = 0.01,
    strong_effect: float = 0.03,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Permutation test for person-specific, predictable structure, with a verdict.

    Verdict: 'none detected' when p > ``alpha``; 'strong' when p <= ``strong_alpha`` and the effect (gain beyond
    the permutation mean) is at least ``strong_effect`` of the within-item variance; 'weak' otherwise.
    """
    rng = np.random.default_rng(seed)
    y = j.y.astype(float)
    folds = rng.integers(0, n_folds, size=len(y))
    model = PersonEffectModel(rank=rank, seed=seed)
    offsets = PersonEffectModel(rank=0, seed=seed)

    def stat(yy: np.ndarray) -> tuple[float, float, float]:
        # the better of offsets-only and offsets + rank-k, chosen the same way under the null (stays valid)
        a, b = cv_gain(j, yy, folds, offsets), cv_gain(j, yy, folds, model)
        return max(a, b), a, b

    g_obs, g_off, g_full = stat(y)
    null = []
    for k in range(n_permutations):
        null.append(stat(permute_within_items(j, y, rng))[0])
        if progress:
            progress(k + 1, n_permutations)
    null_a = np.array(null)
    p = float((1 + (null_a >= g_obs).sum()) / (1 + len(null_a)))
    effect = float(g_obs - null_a.mean())
    z = float(effect / null_a.std()) if null_a.std() > 0 else None
    rel = split_half_reliability(j, y, seed=seed)
    rel_null = [
        split_half_reliability(j, permute_within_items(j, y, rng), n_splits=5, seed=seed + 1 + t).get(
            "spearman_brown"
        )
        for t in range(5)
    ]
    rel["spearman_brown_null_mean"] = (
        float(np.mean([r for r in rel_null if r is not None])) if rel_null else None
    )
    if p > alpha:
        verdict = "none detected"
    elif p <= strong_alpha and effect >= strong_effect:
        verdict = "strong"
    else:
        verdict = "weak"
    y_res_share = None
    tot = float(np.var(y))
    if tot > 0:
        n_i = len(j.items)
        mean_i = np.bincount(j.i, weights=y, minlength=n_i) / np.maximum(np.bincount(j.i, minlength=n_i), 1)
        y_res_share = float(np.var(y - mean_i[j.i]) / tot)
    return {
        "model": f"y_ui - ybar_i = b_u + p_u^T q_i, rank {rank}, ridge ALS; {n_folds}-fold CV over judgments",
        "null": "person ids shuffled within items",
        "cv_gain": g_obs,
        "cv_gain_offsets_only": g_off,
        f"cv_gain_offsets_rank{rank}": g_full,
        "null_mean": float(null_a.mean()),
        "null_sd": float(null_a.std()),
        "null_p95": float(np.quantile(null_a, 0.95)),
        "n_permutations": n_permutations,
        "p_value": p,
        "effect_size": effect,
        "effect_size_of_total_variance": None if y_res_share is None else effect * y_res_share,
        "z": z,
        "reliability": rel,
        "verdict": verdict,
        "thresholds": {"alpha": alpha, "strong_alpha": strong_alpha, "strong_effect": strong_effect},
    }
