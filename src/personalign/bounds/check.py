"""How a model's persons fare under a policy: violation rates with and without the bounds, the ``bounds check`` report.

- :func:`violation_table`: per person, the share of (prompt, safe, unsafe) pairs where the unsafe response wins
  (scores at least as high), under the raw personal reward and under the bounded reward.
- :func:`scorer_quality`: how well the policy's constraints separate such pairs (the guarantee's precondition).
- :func:`separable_pairs`: the pairs of a data set's items that the policy separates (one satisfies, one violates).
- :func:`check_report` and :func:`check_markdown`: what ``personalign bounds check`` writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from personalign.bounds.bounded import OFFSET, BoundedPolicy, squash
from personalign.bounds.trust import mahalanobis
from personalign.data.core import PreferenceData
from personalign.data.files import to_jsonable

PAIR_COLUMNS = ["prompt", "safe", "unsafe"]


def violation_table(
    bp: BoundedPolicy, W: np.ndarray, meta: pd.DataFrame, pairs: pd.DataFrame
) -> pd.DataFrame:
    """Per person (rows of ``W``, described by ``meta``): share of ``pairs`` the unsafe response wins (>=),
    without the policy (raw personal reward, no projection) and with it (bounded reward)."""
    texts = pd.unique(pd.concat([pairs["safe"], pairs["unsafe"]]))
    prompt_of = dict(zip(pairs["safe"], pairs["prompt"], strict=False)) | dict(
        zip(pairs["unsafe"], pairs["prompt"], strict=False)
    )
    prompts = [prompt_of[t] for t in texts]
    idx = {t: i for i, t in enumerate(texts)}
    si = pairs["safe"].map(idx).to_numpy()
    ui = pairs["unsafe"].map(idx).to_numpy()
    s, g = bp.model.basis(prompts, list(texts))
    with np.errstate(invalid="ignore", over="ignore"):
        raw = s[None, :] + W @ np.asarray(g).T
    # inf - inf (an extreme weight vector) is no preference at all: rank it last
    raw = np.where(np.isnan(raw), -np.inf, raw)
    sat = bp.check(prompts, list(texts))["satisfied"]
    bounded = OFFSET * sat[None, :] + squash(bp.personal_matrix(W, prompts, list(texts)))
    out = meta.copy()
    out["violation_without"] = np.mean(raw[:, ui] >= raw[:, si], axis=1)
    out["violation_with"] = np.mean(bounded[:, ui] >= bounded[:, si], axis=1)
    out["n_pairs"] = len(pairs)
    return out


def scorer_quality(bp: BoundedPolicy, pairs: pd.DataFrame) -> dict[str, float]:
    """Share of safe responses that pass, of unsafe ones blocked, and of pairs separated (both at once)."""
    chk_s = bp.check(pairs["prompt"].tolist(), pairs["safe"].tolist())["satisfied"]
    chk_u = bp.check(pairs["prompt"].tolist(), pairs["unsafe"].tolist())["satisfied"]
    return {
        "safe_pass_rate": float(np.mean(chk_s)),
        "unsafe_block_rate": float(np.mean(~chk_u)),
        "separated_share": float(np.mean(chk_s & ~chk_u)),
    }


def constraint_pass_rates(bp: BoundedPolicy, check: dict[str, Any]) -> dict[str, float]:
    """Per constraint, the share of checked items whose (finite) score is on the allowed side of its threshold."""
    rates = {}
    for c in bp.policy.constraints:
        s = check["scores"][c.name]
        t = bp.thresholds[c.name]
        ok = (s >= t) if c.direction == "min" else (s <= t)
        rates[c.name] = float(np.mean(ok & np.isfinite(s)))
    return rates


def separable_pairs(items: pd.DataFrame, satisfied: np.ndarray) -> pd.DataFrame:
    """(prompt, safe, unsafe): every item satisfying the policy x every item violating it, for the same prompt."""
    good = items[satisfied]
    bad = items[~satisfied]
    rows = []
    for p, g in bad.groupby("prompt"):
        gg = good[good["prompt"] == p]
        rows += [(p, s, b) for s in gg["text"] for b in g["text"]]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def checked_persons(model: Any, user_ids: list[str], max_persons: int | None = None) -> list[str]:
    """The data's persons the model knows (trained or added), at most ``max_persons`` of them."""
    users = [
        u
        for u in user_ids
        if getattr(model, "user_units_", {}).get(u, -1) >= 0 or u in getattr(model, "added_", {})
    ]
    return users if max_persons is None else users[:max_persons]


def _trust_region_summary(bp: BoundedPolicy, W: np.ndarray) -> dict[str, Any]:
    prior = bp.model.prior()
    d = mahalanobis(W, prior.mean, prior.cov)
    rho = bp.policy.trust_region.rho
    return {
        "rho": rho,
        "distance_median": float(np.median(d)),
        "distance_max": float(d.max()),
        "projected_share": float(np.mean(d > rho)) if rho is not None else 0.0,
    }


def check_report(bp: BoundedPolicy, data: PreferenceData, max_persons: int | None = None) -> dict[str, Any]:
    """The ``personalign bounds check`` report: constraint pass rates on the data's items, and per person the share
    of the data's separable pairs (one satisfies, the other violates) where the violating one wins, without and
    with the policy; trust-region distances. JSON-safe."""
    model = bp.model
    items = data.items
    chk = bp.check(items["prompt"].tolist(), items["text"].tolist())
    sat = chk["satisfied"]
    pairs = separable_pairs(items, sat)
    users = checked_persons(model, list(data.user_ids), max_persons)
    res: dict[str, Any] = {
        "policy": bp.policy.name,
        "items": int(len(items)),
        "items_satisfying": float(np.mean(sat)) if len(sat) else None,
        "constraint_pass_rates": constraint_pass_rates(bp, chk),
        "thresholds": bp.thresholds,
        "separable_pairs": int(len(pairs)),
        "persons": len(users),
    }
    prior = model.prior()
    if users and prior.mean.size:
        res["trust_region"] = _trust_region_summary(bp, np.stack([model.posterior(u).mean for u in users]))
    if users and len(pairs):
        meta = pd.DataFrame({"person": users, "kind": "person"})
        W = (
            np.stack([model.posterior(u).mean for u in users])
            if prior.mean.size
            else np.zeros((len(users), 0))
        )
        vt = violation_table(bp, W, meta, pairs)
        res["violation_without"] = {
            "mean": float(vt["violation_without"].mean()),
            "max": float(vt["violation_without"].max()),
            "worst_person": str(vt.loc[vt["violation_without"].idxmax(), "person"]),
        }
        res["violation_with"] = {
            "mean": float(vt["violation_with"].mean()),
            "max": float(vt["violation_with"].max()),
        }
        res["per_person"] = vt[["person", "violation_without", "violation_with"]].to_dict(orient="records")
    return to_jsonable(res)


def check_markdown(rep: dict[str, Any]) -> str:
    """The markdown summary of a :func:`check_report` (with its ``command``, if one was recorded)."""
    lines = [
        f"# bounds check: policy {rep['policy']}",
        "",
        f"Command: `{rep.get('command', '')}`",
        "",
        f"- items: {rep['items']}, satisfying all constraints: {rep['items_satisfying']}",
        *[
            f"- constraint {k}: pass rate {v:.3f} (threshold {rep['thresholds'][k]:.4g})"
            for k, v in rep["constraint_pass_rates"].items()
        ],
        f"- separable pairs (one satisfies, one violates, same prompt): {rep['separable_pairs']}",
        f"- persons checked: {rep['persons']}",
    ]
    if "trust_region" in rep:
        tr = rep["trust_region"]
        lines.append(
            f"- trust region rho={tr['rho']}: median distance {tr['distance_median']:.2f}, "
            f"max {tr['distance_max']:.2f}, projected {tr['projected_share']:.1%}"
        )
    if "violation_without" in rep:
        lines.append(
            f"- violation rate without policy: mean {rep['violation_without']['mean']:.3f}, "
            f"max {rep['violation_without']['max']:.3f} ({rep['violation_without']['worst_person']})"
        )
        lines.append(
            f"- violation rate with policy: mean {rep['violation_with']['mean']:.3f}, "
            f"max {rep['violation_with']['max']:.3f}"
        )
    return "\n".join(lines) + "\n"
