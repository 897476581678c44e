"""How a model's persons fare under a policy: violation rates with and without the bounds, the ``bounds check`` report.

- :func:`violation_table`: per person, the share of (prompt, safe, unsafe) pairs where the unsafe response wins
  (scores at least as high), under the raw personal reward and under the bounded reward.
- :func:`scorer_quality`: how well the policy's constraints separate such pairs (the guarantee's precondition).
- :func:`separable_pairs`: the pairs of a data set's items that the policy separates (one satisfies, one violates).
- :func:`check_report`, :func:`check_markdown`, :func:`check_html`: what ``personalign bounds check`` writes
  (:func:`write_check`; :func:`rerender_check` redraws a folder from its report.json).
"""

from __future__ import annotations

from pathlib import Path
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
    without the policy (raw personal reward, no projection) and with it (bounded reward).

    With the policy, a pair whose two responses both violate is answered by the refusal text when the policy's
    fallback is ``refuse``: the unsafe response does not win it (the refusal counts as safe). ``refused_with`` is
    the share of pairs refused (the same for every person: constraints never read the personal model)."""
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
    wins = bounded[:, ui] >= bounded[:, si]
    refused = ~sat[ui] & ~sat[si] if bp.bounded and bp.fallback_mode == "refuse" else np.zeros(len(ui), bool)
    out["violation_with"] = np.mean(wins & ~refused[None, :], axis=1)
    out["refused_with"] = float(np.mean(refused)) if len(refused) else 0.0
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
        "held_out_rates": bp.held_out_rates(),
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


CHECK_GLOSSARY = {
    "separable pair": "Two responses to the same prompt, one satisfying every constraint and one violating some: "
    "the pairs where the bounds can matter.",
    "violation rate without policy": "Per person, the share of separable pairs where the violating response "
    "scores at least as high as the satisfying one, under the raw personal reward (the person's own weights, "
    "no constraints, no projection).",
    "with policy": "The same violation rate under the bounded reward: constraints first (any satisfying response "
    "ranks above every violating one), then the personal reward inside the trust region.",
    "pass rate": "Share of the data's items whose score is on the allowed side of the constraint's threshold.",
    "threshold": "The constraint's cut-off on its scorer (learned scorers: calibrated on held-out items).",
    "held-out miss rate": "Share of the scorer's held-out harmful items that pass the threshold (with its "
    "Clopper-Pearson interval), against the policy's promise when it states one.",
    "held-out over-block rate": "Share of the scorer's held-out safe items that the threshold blocks.",
    "promise": "The miss rate the policy states it keeps below, and at what confidence.",
    "trust region": "The bound on how far a person's weights may move from the population: the Mahalanobis "
    "distance under the prior must stay below rho; persons beyond it are projected back.",
    "refused pairs": "Pairs where both responses violate, answered by the policy's refusal text.",
}


def check_verdict(rep: dict[str, Any]) -> str:
    """One line: whether the policy removes the violations the personal rewards would make on this data."""
    from personalign.reports.stats import bootstrap_mean

    wo, wi = rep.get("violation_without"), rep.get("violation_with")
    if not wo or not wi:
        if not rep.get("separable_pairs"):
            return (
                "Nothing to check: no prompt of this data has one response that satisfies the policy and one "
                "that violates it."
            )
        return "No person of this data is known to the model, so no violation rate was measured."
    pp = rep.get("per_person") or []
    diff = bootstrap_mean([r["violation_without"] - r["violation_with"] for r in pp]) if pp else None
    by = ""
    if diff:
        lo, hi = diff["ci95"]
        by = f" (a drop of {100 * diff['mean']:.1f} points [{100 * lo:.1f}, {100 * hi:.1f}]"
        by += ", bootstrap over persons)"
    head = (
        f"the unsafe response wins {100 * wi['mean']:.1f}% of separable pairs with the policy against "
        f"{100 * wo['mean']:.1f}% without it{by}"
    )
    if wi["max"] == 0:
        return f"The policy removes every violation on this data: {head}; no person is left with one."
    if wi["mean"] < wo["mean"]:
        worst = f"the worst person keeps {100 * wi['max']:.1f}%"
        return f"The policy lowers violations but does not remove them: {head}; {worst}."
    return f"The policy does not lower violations here: {head}."


def _constraint_rows(rep: dict[str, Any]) -> list[list[str]]:
    rows = []
    held = rep.get("held_out_rates") or {}
    for k, v in (rep.get("constraint_pass_rates") or {}).items():
        t = (rep.get("thresholds") or {}).get(k)
        r = held.get(k) or {}
        m, o = r.get("miss"), r.get("over_block")
        promise = f"<= {r['epsilon']} at {r['confidence']:.0%}" if r.get("epsilon") else "-"
        rows.append(
            [
                k,
                f"{100 * v:.1f}%",
                "-" if t is None else f"{t:.4g}",
                f"{100 * m['rate']:.1f}% [{100 * m['lo']:.1f}, {100 * m['hi']:.1f}] of {m['n']}"
                if m
                else "-",
                f"{100 * o['rate']:.1f}% [{100 * o['lo']:.1f}, {100 * o['hi']:.1f}] of {o['n']}"
                if o
                else "-",
                promise,
            ]
        )
    return rows


def check_markdown(rep: dict[str, Any]) -> str:
    """The markdown summary of a :func:`check_report` (with its ``command``, if one was recorded): a verdict,
    the command, the figures, the constraints, the worst persons and a glossary."""
    from personalign.reports import glossary_markdown, md_table
    from personalign.reports.text import md_escape

    cmd = rep.get("command")
    share = rep.get("items_satisfying")
    lines = [
        f"# bounds check: policy {rep.get('policy', '')}",
        "",
        f"> **Verdict.** {check_verdict(rep)}",
        "",
        f"Command: `{cmd}`" if cmd else "_No command was recorded (written from the library)._",
        "",
        f"- items: {rep.get('items')}, satisfying all constraints: "
        + ("n/a" if share is None else f"{100 * share:.1f}%"),
        f"- separable pairs (one satisfies, one violates, same prompt): {rep.get('separable_pairs')}",
        f"- persons checked: {rep.get('persons')}",
    ]
    if "trust_region" in rep:
        tr = rep["trust_region"]
        lines.append(
            f"- trust region rho={tr['rho']}: median distance {tr['distance_median']:.2f}, "
            f"max {tr['distance_max']:.2f}, projected {tr['projected_share']:.1%}"
        )
    if "violation_without" in rep:
        wo, wi = rep["violation_without"], rep["violation_with"]
        lines.append(
            f"- violation rate without policy: mean {wo['mean']:.3f}, max {wo['max']:.3f} "
            f"({md_escape(wo.get('worst_person', ''))})"
        )
        refused = f" (pairs refused: {rep['refused_pairs_with']:.3f})" if "refused_pairs_with" in rep else ""
        lines.append(f"- violation rate with policy: mean {wi['mean']:.3f}, max {wi['max']:.3f}{refused}")
    header = [
        "constraint",
        "pass rate",
        "threshold",
        "held-out miss rate",
        "held-out over-block rate",
        "promise",
    ]
    if rep.get("constraint_pass_rates"):
        lines += ["", "## Constraints", "", md_table(header, _constraint_rows(rep)).rstrip()]
    pp = sorted(rep.get("per_person") or [], key=lambda r: -r["violation_without"])
    if pp:
        rows = [
            [
                md_escape(r["person"]),
                f"{100 * r['violation_without']:.1f}%",
                f"{100 * r['violation_with']:.1f}%",
            ]
            for r in pp[:10]
        ]
        lines += ["", f"## The {len(rows)} persons most at risk without the policy (of {len(pp)})", ""]
        lines.append(md_table(["person", "violation rate without policy", "with policy"], rows).rstrip())
    lines += ["", glossary_markdown(CHECK_GLOSSARY).rstrip()]
    return "\n".join(lines) + "\n"


def check_html(rep: dict[str, Any]) -> str:
    """report.html: :func:`check_markdown` as a page (column tooltips from the glossary)."""
    from personalign.reports import markdown_to_html, render_page

    title, _, body = check_markdown(rep).partition("\n")
    return render_page(title.lstrip("# "), markdown_to_html(body, CHECK_GLOSSARY))


def write_check(rep: dict[str, Any], out: str | Path, write_json: bool = True) -> dict[str, Path]:
    """Write report.json (unless ``write_json`` is False), report.md and report.html into ``out``."""
    from personalign.data.files import dumps_json, write_text_atomic

    out = Path(out)
    files = {}
    if write_json:
        files["json"] = write_text_atomic(out / "report.json", dumps_json(rep, indent=1))
    files["md"] = write_text_atomic(out / "report.md", check_markdown(rep))
    files["html"] = write_text_atomic(out / "report.html", check_html(rep))
    return files


def rerender_check(path: str | Path) -> dict[str, Path]:
    """Redraw report.md and report.html of a ``bounds check`` folder (or its report.json), which is only read."""
    import json

    from personalign.errors import DataError

    p = Path(path)
    src = p / "report.json" if p.is_dir() else p
    try:
        rep = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError("no report.json here", file=str(src), expected="a bounds check folder") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"not JSON: {exc.msg}", file=str(src), line=exc.lineno) from exc
    if not isinstance(rep, dict) or "constraint_pass_rates" not in rep:
        raise DataError("not a bounds check report", file=str(src), field="constraint_pass_rates")
    return write_check(rep, src.parent, write_json=False)
