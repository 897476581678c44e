"""Demographic groups: per-item answer distributions, divergence, opposite majorities, fit and representativeness."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from personalign.audit.table import Judgments


def group_labels(
    users: pd.DataFrame, persons: list[str], columns: list[str] | None, max_levels: int = 12, bins: int = 4
) -> tuple[dict[str, np.ndarray], list[str]]:
    """One label per person for each usable demographic column ('' when unknown).

    Numeric columns with many values are cut into ``bins`` quantile bands; columns with one level or more than
    ``max_levels`` levels are skipped (and named in the notes).
    """
    notes: list[str] = []
    u = users.drop_duplicates("user_id").set_index("user_id")
    cols = columns if columns is not None else [c for c in u.columns]
    out: dict[str, np.ndarray] = {}
    for c in cols:
        if c not in u.columns:
            from personalign.errors import ConfigError

            raise ConfigError(f"--group-by {c!r}: no such column in the users table (have {list(u.columns)})")
        s = u[c].reindex(persons)
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().sum() >= 0.9 * s.notna().sum() and s.nunique() > max_levels:
            s = pd.qcut(num, bins, duplicates="drop").astype(str).where(num.notna(), "")
            notes.append(f"{c}: numeric, cut into {bins} quantile bands")
        lab = s.fillna("").astype(str).replace({"nan": "", "None": ""}).to_numpy(object)
        k = len(set(lab) - {""})
        if k < 2 or k > max_levels:
            notes.append(f"{c}: skipped ({k} levels)")
            continue
        out[c] = lab
    return out, notes


def _dists(j: Judgments, mask: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per item: answer counts over ``levels`` among the judgments in ``mask`` (items x levels), and totals."""
    code = np.searchsorted(levels, j.y)
    c = np.zeros((len(j.items), len(levels)))
    np.add.at(c, (j.i[mask], code[mask]), 1.0)
    return c, c.sum(1)


def _jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) row by row (NaN for a row without answers)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return jensenshannon(p, q, axis=1, base=2) ** 2


def _wasserstein_rep(p: np.ndarray, q: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """1 - W1(p, q) / (max level - min level) row by row (OpinionQA's representativeness)."""
    span = levels[-1] - levels[0]
    cdf = np.cumsum(p, 1) - np.cumsum(q, 1)
    w = (np.abs(cdf[:, :-1]) * np.diff(levels)).sum(1)
    return 1.0 - w / span if span > 0 else np.ones(len(p))


def group_record(
    j: Judgments,
    members: np.ndarray,
    dist: np.ndarray,
    n: np.ndarray,
    everyone: dict[str, np.ndarray],
    min_judges: int,
    n_examples: int,
    item_text: dict[str, str],
) -> dict[str, Any]:
    """One group's figures: divergence from everyone, opposite majorities (with the strongest examples) and
    representativeness. ``members`` marks each judgment made by the group; ``dist`` / ``n`` are its per-item answer
    distributions and counts; ``everyone`` holds ``p`` (everyone's distributions), ``pos``/``neg`` (sides),
    ``maj`` (everyone's majority side), ``point`` (the majority label as a distribution) and ``levels``."""
    side, levels = j.side(), everyone["levels"]
    ok = n >= min_judges
    pos = np.bincount(j.i[members & (side > 0)], minlength=len(j.items))
    neg = np.bincount(j.i[members & (side < 0)], minlength=len(j.items))
    maj = np.sign(pos - neg)
    both = ok & (maj != 0) & (everyone["maj"] != 0)
    opposite = both & (maj != everyone["maj"])
    # examples: the opposite items where the group's own majority is strongest
    strength = np.abs(pos - neg) / np.maximum(pos + neg, 1)
    ex = np.flatnonzero(opposite)[np.argsort(-strength[opposite])][:n_examples]
    pos_all, neg_all = everyone["pos"], everyone["neg"]
    return {
        "persons": 0,  # filled by the caller (persons, not judgments)
        "judgments": int(members.sum()),
        "items_with_enough_judges": int(ok.sum()),
        "jsd_vs_everyone": float(_jsd(dist[ok], everyone["p"][ok]).mean()) if ok.any() else None,
        "opposite_majority_items": int(opposite.sum()),
        "opposite_majority_share": float(opposite.sum() / both.sum()) if both.any() else None,
        "opposite_examples": [
            {
                "item": j.items[e],
                "text": item_text.get(j.items[e], "")[:160],
                "group_positive_share": float(pos[e] / max(pos[e] + neg[e], 1)),
                "everyone_positive_share": float(pos_all[e] / max(pos_all[e] + neg_all[e], 1)),
            }
            for e in ex
        ],
        "representativeness_pooled": float(_wasserstein_rep(everyone["p"][ok], dist[ok], levels).mean())
        if ok.any()
        else None,
        "representativeness_majority_label": float(
            _wasserstein_rep(everyone["point"][ok], dist[ok], levels).mean()
        )
        if ok.any()
        else None,
    }


def add_fit(rec: dict[str, Any], members: np.ndarray, person_acc: np.ndarray, person_n: np.ndarray) -> None:
    """The aggregated model's fit of a group's persons (``members``: a mask over persons), into ``rec``."""
    members = members & (person_n >= 5) & ~np.isnan(person_acc)
    if members.any():
        rec["aggregate_fit_mean"] = float(person_acc[members].mean())
        rec["aggregate_fit_share_below_60"] = float((person_acc[members] < 0.6).mean())
        rec["aggregate_fit_pooled"] = float(
            np.nansum(person_acc[members] * person_n[members]) / person_n[members].sum()
        )


def divergent_items(
    j: Judgments,
    names: list[str],
    dists: dict[str, np.ndarray],
    ns: dict[str, np.ndarray],
    all_p: np.ndarray,
    min_judges: int,
    item_text: dict[str, str],
    top_n: int = 10,
) -> list[dict[str, Any]]:
    """The items where a column's groups differ most from everyone (their answer distributions)."""
    ok_all = np.all([ns[g] >= min_judges for g in names], axis=0)
    spread = np.zeros(len(j.items))
    for g in names:
        spread = np.fmax(spread, np.nan_to_num(_jsd(dists[g], all_p)))
    top = np.flatnonzero(ok_all)[np.argsort(-spread[ok_all])][:top_n]
    return [
        {
            "item": j.items[t],
            "text": item_text.get(j.items[t], "")[:160],
            "levels": j.levels.tolist(),
            "everyone": all_p[t].round(4).tolist(),
            **{g: dists[g][t].round(4).tolist() for g in names},
        }
        for t in top
    ]


def group_analysis(
    j: Judgments,
    labels: dict[str, np.ndarray],
    *,
    person_acc: np.ndarray | None = None,
    person_n: np.ndarray | None = None,
    min_group: int = 5,
    min_judges: int = 3,
    n_examples: int = 5,
    item_text: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Per demographic column: groups' divergence from each other and from everyone, opposite majorities, fit."""
    levels = j.levels
    all_c, all_n = _dists(j, np.ones(j.n, bool), levels)
    all_p = all_c / np.maximum(all_n, 1)[:, None]
    side = j.side()
    pos_all = np.bincount(j.i[side > 0], minlength=len(j.items))
    neg_all = np.bincount(j.i[side < 0], minlength=len(j.items))
    mode_level = levels[np.argmax(all_c, 1)]
    everyone = {
        "p": all_p,
        "pos": pos_all,
        "neg": neg_all,
        "maj": np.sign(pos_all - neg_all),
        "point": (levels[None, :] == mode_level[:, None]).astype(float),
        "levels": levels,
    }
    item_text = item_text or {}
    out: dict[str, Any] = {}
    for col, lab in labels.items():
        pl = lab[j.u]
        names = [g for g in sorted(set(lab) - {""}) if (lab == g).sum() >= min_group]
        if len(names) < 2:
            out[col] = {"note": f"fewer than two groups with >= {min_group} persons"}
            continue
        dists, ns = {}, {}
        for g in names:
            c, n = _dists(j, pl == g, levels)
            dists[g], ns[g] = c / np.maximum(n, 1)[:, None], n
        k = len(names)
        jsd = np.full((k, k), np.nan)
        for x in range(k):
            for y in range(k):
                ok = (ns[names[x]] >= min_judges) & (ns[names[y]] >= min_judges)
                if x == y:
                    jsd[x, y] = 0.0
                elif ok.any():
                    jsd[x, y] = float(_jsd(dists[names[x]][ok], dists[names[y]][ok]).mean())
        groups: dict[str, Any] = {}
        for g in names:
            rec = group_record(j, pl == g, dists[g], ns[g], everyone, min_judges, n_examples, item_text)
            rec["persons"] = int((lab == g).sum())
            if person_acc is not None:
                add_fit(rec, lab == g, person_acc, person_n)
            groups[g] = rec
        fits = {g: r["aggregate_fit_mean"] for g, r in groups.items() if "aggregate_fit_mean" in r}
        off = jsd[~np.eye(k, dtype=bool)]
        out[col] = {
            "groups": groups,
            "names": names,
            "jsd_between": jsd.tolist(),
            "mean_jsd_between": float(np.nanmean(off)) if np.isfinite(off).any() else None,
            "least_represented_pooled": min(names, key=lambda g: groups[g]["representativeness_pooled"] or 1),
            "worst_fit_group": min(fits, key=fits.get) if fits else None,
            "most_divergent_items": divergent_items(j, names, dists, ns, all_p, min_judges, item_text),
        }
    return out


def worst_group(groups: dict[str, Any]) -> dict[str, Any] | None:
    """The group (over all columns) the aggregated model fits worst, by mean per-person accuracy."""
    best = None
    for col, res in groups.items():
        for g, rec in res.get("groups", {}).items():
            v = rec.get("aggregate_fit_mean")
            if v is not None and (best is None or v < best["aggregate_fit_mean"]):
                best = {
                    "column": col,
                    "group": g,
                    "aggregate_fit_mean": v,
                    "persons": rec["persons"],
                    "share_below_60": rec.get("aggregate_fit_share_below_60"),
                }
    return best


def fit_gap_interval(
    acc: np.ndarray,
    n: np.ndarray,
    member: np.ndarray,
    *,
    min_pairs: int = 5,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any] | None:
    """Mean per-person fit of a group minus that of everyone else, with a percentile bootstrap interval over
    persons (resampled within the group and within the rest); None when either side has fewer than 2 persons.

    ``acc``/``n``: each person's accuracy and pair count; ``member``: who belongs to the group. Persons with fewer
    than ``min_pairs`` pairs are left out, as in :func:`group_analysis`.
    """
    ok = (np.asarray(n) >= min_pairs) & ~np.isnan(acc)
    member = np.asarray(member, bool)
    a, b = np.asarray(acc, float)[ok & member], np.asarray(acc, float)[ok & ~member]
    if len(a) < 2 or len(b) < 2:
        return None
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for s in range(0, n_boot, 250):  # in chunks: the index matrices stay small for large populations
        k = min(250, n_boot - s)
        boots[s : s + k] = a[rng.integers(0, len(a), (k, len(a)))].mean(1) - b[
            rng.integers(0, len(b), (k, len(b)))
        ].mean(1)
    q = (1 - level) / 2
    return {
        "mean": float(a.mean() - b.mean()),
        "ci95": [float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))],
        "group_mean": float(a.mean()),
        "rest_mean": float(b.mean()),
        "persons": int(len(a)),
        "rest_persons": int(len(b)),
        "n_boot": n_boot,
    }


def attach_fit_gaps(
    groups: dict[str, Any],
    worst: dict[str, Any] | None,
    labels: dict[str, np.ndarray],
    acc: np.ndarray,
    n: np.ndarray,
    seed: int = 0,
) -> None:
    """Add each group's :func:`fit_gap_interval` (``aggregate_fit_gap_vs_rest``) to ``groups`` and the worst
    group's (``gap_vs_rest``) to ``worst``, so every claimed difference in fit carries its interval."""
    for col, res in groups.items():
        for g, rec in res.get("groups", {}).items():
            if col in labels and rec.get("aggregate_fit_mean") is not None:
                rec["aggregate_fit_gap_vs_rest"] = fit_gap_interval(acc, n, labels[col] == g, seed=seed)
    if worst is not None:
        rec = groups.get(worst["column"], {}).get("groups", {}).get(worst["group"], {})
        worst["gap_vs_rest"] = rec.get("aggregate_fit_gap_vs_rest")
