"""Trust region around the population and consensus-aware bounds.

Trust region: personal parameters w_u live in the population prior N(m, Sigma) of a low-rank model; the bounded
policy uses the projection of w_u onto {w : ||w - m||_{Sigma^-1} <= rho} (dimensions the policy fixes stay at m).

Consensus-aware bounds: for a linear-in-features model r_u(x, y) = (mu + B w_u)^T phi(x, y), the personal deviation
r_u - r_pop = (B (w_u - m))^T phi is linear in w_u - m, so scaling it by s in [0, 1] on an item is the same as using
w = m + s (w_u - m), i.e. a per-item radius rho_item = s * rho. We use s(a) = (1 - a')^gamma with a' the item's
agreement rescaled from [min_agreement, 1] to [0, 1]: unanimous items allow no deviation, split items full deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def mahalanobis(w: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """||w - m||_{Sigma^-1} for one vector (K,) or many (n, K)."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    d = w - np.asarray(mean, dtype=np.float64)
    if d.shape[1] == 0:
        return np.zeros(len(d))
    sol = np.linalg.solve(_psd(cov), d.T).T
    return np.sqrt(np.maximum(np.einsum("ij,ij->i", d, sol), 0.0))


def _psd(cov: np.ndarray) -> np.ndarray:
    cov = np.asarray(cov, dtype=np.float64)
    cov = (cov + cov.T) / 2
    # a tiny ridge keeps a degenerate prior invertible without changing a healthy one
    return cov + 1e-10 * max(float(np.trace(cov)) / max(len(cov), 1), 1e-12) * np.eye(len(cov))


def project_trust_region(
    w: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    rho: float | None,
    fixed: Sequence[int] = (),
    personalizable: Sequence[int] | None = None,
) -> np.ndarray:
    """w with fixed dims reset to m, then scaled toward m so that ||w - m||_{Sigma^-1} <= rho.

    In whitened coordinates z = L^-1 (w - m) (Sigma = L L^T) the region is the ball ||z|| <= rho and the nearest
    point of a ball is the radial scaling, so this is the exact projection in the prior's own metric.
    Non-finite entries (an adversary's inf/nan) are treated as the largest possible deviation along that axis.
    """
    w = np.array(w, dtype=np.float64, copy=True)
    mean = np.asarray(mean, dtype=np.float64)
    single = w.ndim == 1
    w = np.atleast_2d(w)
    if w.shape[1] == 0:
        return w[0] if single else w
    k = w.shape[1]
    mask = np.ones(k, bool)
    if personalizable is not None:
        mask[:] = False
        mask[[i for i in personalizable if 0 <= i < k]] = True
    mask[[i for i in fixed if 0 <= i < k]] = False
    w[:, ~mask] = mean[~mask]
    bad = ~np.isfinite(w).all(1)
    if bad.any():
        # an adversary's inf keeps its direction (magnitude is cut by the radius below); nan carries no direction
        dirn = np.where(np.isposinf(w), 1.0, np.where(np.isneginf(w), -1.0, 0.0))
        w[bad] = mean[None, :] + 1e12 * dirn[bad]
        w[:, ~mask] = mean[~mask]
    if rho is None:
        return w[0] if single else w
    d = mahalanobis(w, mean, cov)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.where(d > rho, rho / np.where(d > 0, d, 1.0), 1.0)
    out = mean[None, :] + scale[:, None] * (w - mean[None, :])
    return out[0] if single else out


def consensus_scale(
    agreement: np.ndarray | float, gamma: float = 1.0, min_agreement: float = 0.5
) -> np.ndarray:
    """s(a) = (1 - a')^gamma, a' = clip((a - a0) / (1 - a0), 0, 1): 1 where people split, 0 where all agree."""
    a = np.asarray(agreement, dtype=np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    a0 = min(max(min_agreement, 0.0), 1.0 - 1e-9)
    ap = np.clip((a - a0) / (1.0 - a0), 0.0, 1.0)
    return (1.0 - ap) ** gamma


def agreement_table(data, by: str = "text", min_judges: int = 3) -> dict[str, float]:
    """Per item, the share of judges on the majority side (ratings binarized at the scale midpoint, votes without
    passes), keyed by item text (``by="text"``) or item id. Items with fewer than ``min_judges`` judges are left out.
    """
    tabs = []
    if len(data.ratings):
        lo, hi = data.rating_scale or (data.ratings["rating"].min(), data.ratings["rating"].max())
        r = data.ratings
        ans = np.sign(r["rating"].to_numpy(float) - (lo + hi) / 2.0)
        tabs.append(pd.DataFrame({"item_id": r["item_id"], "ans": ans}))
    if len(data.votes):
        v = data.votes[data.votes["vote"] != 0]
        tabs.append(pd.DataFrame({"item_id": v["item_id"], "ans": v["vote"].astype(float)}))
    if not tabs:
        return {}
    t = pd.concat(tabs, ignore_index=True)
    t = t[t["ans"] != 0]
    g = t.groupby("item_id")["ans"]
    share = g.agg(lambda s: max(np.mean(s > 0), np.mean(s < 0)))
    share = share[g.size() >= min_judges]
    if by == "item_id":
        return {str(k): float(v) for k, v in share.items()}
    text = data.items.set_index("item_id")["text"]
    return {str(text[k]): float(v) for k, v in share.items() if k in text.index}


class Agreement:
    """Population agreement per response text in [0, 1] (0 when unknown: an unknown item is treated as contested).

    From a mapping text -> agreement, a callable f(prompts, responses) -> agreements, or both (mapping first).
    """

    def __init__(self, table: Mapping[str, float] | None = None, fn=None, default: float = 0.0):
        self.table = dict(table or {})
        self.fn, self.default = fn, default

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        out = np.array([self.table.get(str(r), np.nan) for r in responses], dtype=np.float64)
        if self.fn is not None and np.isnan(out).any():
            miss = np.isnan(out)
            out[miss] = np.asarray(
                self.fn(
                    [p for p, m in zip(prompts, miss, strict=False) if m],
                    [r for r, m in zip(responses, miss, strict=False) if m],
                )
            )
        return np.where(np.isnan(out), self.default, out)
