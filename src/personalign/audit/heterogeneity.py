"""How much people disagree: Krippendorff's alpha, contested items, variance decomposition, agreement with the crowd."""

from __future__ import annotations

from typing import Any

import krippendorff
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import lsqr

from personalign.audit.table import Judgments
from personalign.data.pointwise import item_agreement


def krippendorff_alpha(j: Judgments) -> dict[str, Any]:
    """Alpha over the persons x units matrix: ordinal for ratings, nominal for votes (passes count as missing) and
    for item pairs (which side of the pair a person took; ties count as missing)."""
    m = j.matrix()
    level = "ordinal" if j.kind == "ratings" else "nominal"
    note = None
    if j.kind == "votes":
        m = np.where(m == 0, np.nan, m)
        note = "passes treated as missing (abstentions), agree/disagree nominal"
    elif j.kind == "pairs":
        m = np.where(m == 0, np.nan, np.sign(m))
        # which item of a pair is "+1" is a naming choice: every pair enters in both namings, so the agreement
        # expected by chance is a coin's and the observed disagreement is unchanged
        m = np.hstack([m, -m])
        note = "unit: the item pair, the side a person took (nominal, each pair in both orientations); ties missing"
    pairable = (np.sum(~np.isnan(m), axis=0) >= 2).sum()
    if pairable == 0 or len(np.unique(m[~np.isnan(m)])) < 2:
        return {"alpha": None, "level": level, "note": "fewer than two answers per item or one answer only"}
    a = float(krippendorff.alpha(reliability_data=m, level_of_measurement=level))
    if j.kind == "pairs":
        pairable //= 2  # each pair entered twice
    return {"alpha": a, "level": level, "items_pairable": int(pairable), "note": note}


def contested_items(j: Judgments, threshold: float = 0.8, min_judges: int = 3) -> dict[str, Any]:
    """Items whose larger side (above/below the neutral answer, agree/disagree) has under ``threshold`` of the
    judges on a side: the rule of :mod:`personalign.data.pointwise`, the one ``data inspect`` reports."""
    neutral = j.midpoint if j.neutral is None else j.neutral
    a = item_agreement(pd.DataFrame({"user_id": j.u, "item_id": j.i, "rating": j.y}), neutral)
    a = a.reindex(np.arange(len(j.items)), fill_value=0)
    tot, top = a["judges"].to_numpy(), a["top_share"].to_numpy(float)
    ok = tot >= min_judges
    contested = ok & (top < threshold)
    return {
        "threshold": threshold,
        "min_judges": min_judges,
        "items_considered": int(ok.sum()),
        "contested": int(contested.sum()),
        "contested_share": float(contested.sum() / ok.sum()) if ok.any() else None,
        "_mask": contested,
        "_top_share": top,
    }


def _lsq_resid(j: Judgments, with_persons: bool) -> float:
    """Residual sum of squares of y ~ item (+ person), least squares on the one-hot design."""
    n = j.n
    cols = [sp.csr_matrix((np.ones(n), (np.arange(n), j.i)), shape=(n, len(j.items)))]
    if with_persons:
        cols.append(sp.csr_matrix((np.ones(n), (np.arange(n), j.u)), shape=(n, len(j.users))))
    X = sp.hstack(cols).tocsr()
    if not with_persons:
        means = np.bincount(j.i, weights=j.y, minlength=len(j.items)) / np.maximum(
            np.bincount(j.i, minlength=len(j.items)), 1
        )
        return float(((j.y - means[j.i]) ** 2).sum())
    beta = lsqr(X, j.y, atol=1e-10, btol=1e-10, iter_lim=2000)[0]
    return float(((j.y - X @ beta) ** 2).sum())


def variance_decomposition(j: Judgments) -> dict[str, Any]:
    """Shares of label variance from the additive model y_ui = mu + a_i + b_u + e_ui (items first, type I SS).

    ``person_share`` is the share persons explain beyond the item, corrected for the degrees of freedom
    (SS_person - df_person * MSE_resid), so that a person column of pure noise gets ~0; ``*_raw`` are the
    uncorrected shares. ``explained_variance_ratio`` is the distributional-preference-learning r^2:
    Var_i(E[y|i]) / (Var_i(E[y|i]) + E_i[Var(y|i)]) - how much of the spread the item alone explains.
    Item pairs (``kind == "pairs"``): the same model without ``mu``, sums of squares about 0 (see below).
    """
    y = j.y
    # an item pair's outcome has a natural zero (no preference; flipping the pair flips the sign), so its sums of
    # squares are taken about 0 and the pair's mean uses one more degree of freedom (no grand mean to fit)
    centered = j.kind != "pairs"
    ss_tot = float(((y - (y.mean() if centered else 0.0)) ** 2).sum())
    if ss_tot == 0:
        return {"note": "every judgment is the same value"}
    rss_item = _lsq_resid(j, False)
    rss_add = _lsq_resid(j, True)
    n_i, n_u = len(j.items), len(j.users)
    df_res = max(j.n - n_i - n_u + 1, 1)
    mse = rss_add / df_res
    ss_item = ss_tot - rss_item
    ss_person = max(rss_item - rss_add, 0.0)
    item_adj = max(ss_item - (n_i - (1 if centered else 0)) * mse, 0.0) / ss_tot
    person_adj = max(ss_person - (n_u - 1) * mse, 0.0) / ss_tot
    counts = np.bincount(j.i, minlength=n_i)
    means = np.bincount(j.i, weights=y, minlength=n_i) / np.maximum(counts, 1)
    sq = np.bincount(j.i, weights=y**2, minlength=n_i) / np.maximum(counts, 1)
    ok = counts >= 2
    within = (sq - means**2)[ok] * counts[ok] / (counts[ok] - 1)  # unbiased within-item variance
    if centered:
        between = float(np.var(means[ok])) if ok.sum() > 1 else 0.0
    else:
        between = float(np.mean(means[ok] ** 2)) if ok.any() else 0.0
    ev = between / (between + float(within.mean())) if ok.any() and between + within.mean() > 0 else None
    model = (
        "y_ui = mu + a_i + b_u + e_ui (least squares; items entered first)"
        if centered
        else "y_up = a_p + b_u + e_up over item pairs p, y = +1 with the pair's majority, -1 against, sums of "
        "squares about 0 (least squares; pairs entered first; b_u: how often a person sides against majorities)"
    )
    return {
        "model": model,
        "item_share": item_adj,
        "person_share": person_adj,
        "residual_share": max(1.0 - item_adj - person_adj, 0.0),
        "item_share_raw": ss_item / ss_tot,
        "person_share_raw": ss_person / ss_tot,
        "residual_share_raw": rss_add / ss_tot,
        "df": {"items": n_i - 1, "persons": n_u - 1, "residual": df_res},
        "explained_variance_ratio": ev,
        "hidden_context_share": None if ev is None else 1.0 - ev,
    }


def loo_majority_agreement(j: Judgments, min_judgments: int = 3) -> dict[str, Any]:
    """Each person's agreement with the majority side of the other judges of the same item (leave-one-out).

    Judgments at the midpoint (or passes) and items whose other judges tie are left out.
    """
    s = j.side()
    m = s != 0
    pos = np.bincount(j.i[m & (s > 0)], minlength=len(j.items))
    neg = np.bincount(j.i[m & (s < 0)], minlength=len(j.items))
    loo = np.sign((pos[j.i] - (s > 0)) - (neg[j.i] - (s < 0)))
    use = m & (loo != 0)
    agree = (s == loo) & use
    n_per = np.bincount(j.u[use], minlength=len(j.users))
    a_per = np.bincount(j.u[agree], minlength=len(j.users))
    ok = n_per >= min_judgments
    rate = np.where(ok, a_per / np.maximum(n_per, 1), np.nan)
    vals = rate[ok]
    out: dict[str, Any] = {"min_judgments": min_judgments, "persons": int(ok.sum())}
    if len(vals):
        out.update(
            mean=float(vals.mean()),
            median=float(np.median(vals)),
            p10=float(np.quantile(vals, 0.1)),
            min=float(vals.min()),
            share_below_60=float((vals < 0.6).mean()),
            share_below_50=float((vals < 0.5).mean()),
            pooled=float(agree.sum() / max(use.sum(), 1)),
        )
    out["_per_person"] = rate
    return out


def heterogeneity(j: Judgments, contested_threshold: float = 0.8) -> dict[str, Any]:
    """Every heterogeneity figure of one pointwise table."""
    return {
        "krippendorff": krippendorff_alpha(j),
        "contested": contested_items(j, threshold=contested_threshold),
        "variance": variance_decomposition(j),
        "loo_majority_agreement": loo_majority_agreement(j),
    }
