"""Who the average represents: per-person fit of one aggregated reward, and of a personalized model when given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from personalign.audit.social_choice import fit_bt
from personalign.audit.table import Pairs
from personalign.data.pairs import per_person_accuracy


def person_fit(
    pairs: Pairs,
    item_scores: np.ndarray | None = None,
    pair_scores: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Share of each person's own pairs that the scores order as the person did (a score tie counts 1/2: the
    project's per-person accuracy, :func:`personalign.data.pairs.per_person_accuracy`).

    Give ``item_scores`` (one score per item, the same for everybody) or ``pair_scores`` (the scores of the
    preferred and the other item, per pair). Returns (accuracy per person, NaN without pairs; pairs per person).
    """
    if pair_scores is None:
        sa, sb = item_scores[pairs.a], item_scores[pairs.b]
    else:
        sa, sb = pair_scores
    # P(preferred wins) as the scores say it: 1, 0, or 1/2 for a score tie
    acc = per_person_accuracy(pairs.u, 0.5 + 0.5 * np.sign(np.asarray(sa, float) - np.asarray(sb, float)))
    n = np.bincount(pairs.u, minlength=pairs.n_users)
    return acc.reindex([str(k) for k in range(pairs.n_users)]).to_numpy(float), n


def _dist(acc: np.ndarray, n: np.ndarray, min_pairs: int) -> dict[str, Any]:
    ok = (n >= min_pairs) & ~np.isnan(acc)
    v = acc[ok]
    if not len(v):
        return {"persons": 0}
    return {
        "persons": int(ok.sum()),
        "min_pairs": min_pairs,
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "std": float(v.std()),
        "p10": float(np.quantile(v, 0.1)),
        "min": float(v.min()),
        "share_below_60": float((v < 0.6).mean()),
        "share_below_50": float((v < 0.5).mean()),
        "histogram": np.histogram(v, bins=20, range=(0, 1))[0].tolist(),
    }


def model_pair_scores(
    model_dir: str | Path,
    persons: list[str],
    items: list[str],
    prompts: list[str],
    pairs: Pairs,
    item_text: dict[str, str],
) -> tuple:
    """Scores of a saved personalign model for each person's own pairs (``models.load_model``; r_u(x, y)):
    ``persons``, ``items`` and ``prompts`` name the pairs' person and item codes."""
    from personalign.models import load_model

    model = load_model(model_dir)
    # score each judged (person, item) once, then look the pairs up
    key = np.unique(np.concatenate([pairs.u * pairs.n_items + pairs.a, pairs.u * pairs.n_items + pairs.b]))
    uu, ii = key // pairs.n_items, key % pairs.n_items
    scores = np.asarray(
        model.score(
            [persons[k] for k in uu], [prompts[k] for k in ii], [item_text.get(items[k], "") for k in ii]
        ),
        float,
    )
    lookup = dict(zip(key.tolist(), scores.tolist(), strict=False))
    sa = np.array([lookup[k] for k in (pairs.u * pairs.n_items + pairs.a).tolist()])
    sb = np.array([lookup[k] for k in (pairs.u * pairs.n_items + pairs.b).tolist()])
    return (sa, sb), type(model).__name__


def representation(
    pairs: Pairs,
    *,
    persons: list[str],
    items: list[str],
    prompts: list[str],
    model_dir: str | Path | None = None,
    item_text: dict[str, str] | None = None,
    min_pairs: int = 5,
    bt_alpha: float = 0.01,
) -> dict[str, Any]:
    """Per-person pairwise accuracy of the aggregated item-level BT (fit on everyone's pairs, in-sample) and,
    when ``model_dir`` is given, of the personalized model on the same pairs (any kind of data: ``persons``,
    ``items`` and ``prompts`` name the codes of ``pairs``)."""
    theta = fit_bt(pairs, alpha=bt_alpha)
    acc, n = person_fit(pairs, item_scores=theta)
    out: dict[str, Any] = {
        "aggregated_model": "item-level Bradley-Terry on all pooled pairs (choix ILSR), evaluated in sample",
        "pairs": int(len(pairs)),
        "aggregated": _dist(acc, n, min_pairs),
        "pooled_accuracy": float(np.nansum(acc * n) / max(n.sum(), 1)),
        "_acc": acc,
        "_n": n,
        "_theta": theta,
    }
    if model_dir is not None:
        ps, name = model_pair_scores(model_dir, persons, items, prompts, pairs, item_text or {})
        macc, _ = person_fit(pairs, pair_scores=ps)
        ok = (n >= min_pairs) & ~np.isnan(acc) & ~np.isnan(macc)
        d = macc[ok] - acc[ok]
        out["personalized"] = {"model": name, "dir": str(model_dir), **_dist(macc, n, min_pairs)}
        out["change"] = {
            "mean_gain": float(d.mean()) if len(d) else None,
            "share_improved": float((d > 0).mean()) if len(d) else None,
            "share_worse": float((d < 0).mean()) if len(d) else None,
            "below_60_aggregated": float((acc[ok] < 0.6).mean()) if ok.any() else None,
            "below_60_personalized": float((macc[ok] < 0.6).mean()) if ok.any() else None,
        }
        out["_macc"] = macc
    return out
