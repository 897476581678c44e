"""The aggregation audit end to end: run every section, write audit.json, PNG plots and report.html, summarize."""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from personalign.audit.table import (
    judgments_from_data,
    pairs_from_comparisons,
    pairs_from_judgments,
    restrict,
)
from personalign.audit.groups import group_analysis, group_labels, worst_group
from personalign.audit.heterogeneity import heterogeneity
from personalign.audit.representation import representation
from personalign.audit.social_choice import social_choice
from personalign.audit.structure import structure_test
from personalign.data.core import PreferenceData
from personalign.data.files import dumps_json, to_jsonable, write_bytes_atomic, write_text_atomic
from personalign.errors import ConfigError, DataError


def run_audit(
    data: PreferenceData,
    *,
    group_by: list[str] | None = None,
    model_dir: str | Path | None = None,
    max_items: int | None = None,
    min_judgments: int = 1,
    sc_items: int = 40,
    polarity: str = "higher",
    n_permutations: int = 99,
    max_pairs_per_person: int | None = 2000,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Audit what one aggregated reward would hide in ``data``; returns every figure (private arrays under '_').

    ``max_items`` keeps the most-judged items (then persons with >= ``min_judgments`` of them) for every section;
    ``sc_items`` caps the items of the social-choice profile; ``polarity`` 'lower' means a lower rating or vote is
    preferred (e.g. offensiveness) for social choice and welfare.
    """
    if polarity not in ("higher", "lower"):
        raise ConfigError(f"polarity must be 'higher' or 'lower', got {polarity!r}")
    sign = 1.0 if polarity == "higher" else -1.0
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal t0
        timings[name] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()

    def step(msg: str) -> None:
        if progress is not None:
            progress(msg)

    item_text = dict(zip(data.items["item_id"].astype(str), data.items["text"].astype(str), strict=False))
    res: dict[str, Any] = {"dataset": data.name, "summary_counts": data.counts(), "notes": []}
    j = judgments_from_data(data)
    if j is not None:
        n0 = (len(j.users), len(j.items), j.n)
        j = restrict(j, max_items, min_judgments)
        res["selection"] = {
            "max_items": max_items,
            "min_judgments": min_judgments,
            "before": {"persons": n0[0], "items": n0[1], "judgments": n0[2]},
            "after": {"persons": len(j.users), "items": len(j.items), "judgments": j.n},
        }
        res["kind"] = j.kind
        res["scale"] = list(j.scale)
        res["notes"] += j.notes
        pairs = pairs_from_judgments(j, max_pairs_per_person=max_pairs_per_person, seed=seed)
        persons, items, prompts = j.users, j.items, j.prompts
    else:
        if not len(data.comparisons):
            raise DataError(f"{data.name}: no judgments to audit", expected="ratings, votes or comparisons")
        pairs, persons, items = pairs_from_comparisons(data)
        if len(pairs) == 0:
            raise DataError(
                f"{data.name}: no per-person comparisons (population-level data has no persons to audit)",
                field="user_id",
                expected="comparisons with person ids",
            )
        prompt_of = dict(
            zip(data.items["item_id"].astype(str), data.items["prompt"].astype(str), strict=False)
        )
        prompts = [prompt_of.get(i, "") for i in items]
        res["kind"] = "comparisons"
        res["notes"].append(
            "comparison data: alpha, variance decomposition, group distributions and the structure "
            "test need pointwise judgments and are left out"
        )
    res["persons"], res["items"], res["pairs"] = len(persons), len(items), int(len(pairs))
    if max_pairs_per_person is not None:
        res["notes"].append(f"at most {max_pairs_per_person} derived pairs per person (sampled, seed {seed})")
    lap("load")

    labels, gnotes = group_labels(data.users, persons, group_by)
    res["notes"] += gnotes
    res["group_columns"] = list(labels)

    if j is not None:
        step("heterogeneity")
        res["heterogeneity"] = heterogeneity(j)
        lap("heterogeneity")
    step("who the average represents")
    res["representation"] = representation(j, pairs, model_dir=model_dir, item_text=item_text)
    lap("representation")
    if j is not None and labels:
        step("groups")
        res["groups"] = group_analysis(
            j,
            labels,
            person_acc=res["representation"]["_acc"],
            person_n=res["representation"]["_n"],
            item_text=item_text,
        )
        res["worst_group"] = worst_group(res["groups"])
    elif labels:
        res["groups"] = _comparison_groups(labels, res["representation"])
        res["worst_group"] = worst_group(res["groups"])
    lap("groups")
    step("social choice")
    res["social_choice"] = social_choice(
        j, pairs, item_ids=items, item_prompts=prompts, max_items=sc_items, sign=sign, groups=labels or None
    )
    res["social_choice"]["polarity"] = polarity
    lap("social_choice")
    if j is not None:
        step(f"structure test ({n_permutations} permutations)")
        res["structure"] = structure_test(j, n_permutations=n_permutations, seed=seed)
        lap("structure")
    res["item_text"] = {k: v[:200] for k, v in item_text.items()}
    res["timings_s"] = timings
    res["headline"] = headline(res)
    return res


def _comparison_groups(labels: dict[str, np.ndarray], rep: dict[str, Any]) -> dict[str, Any]:
    """Groups of comparison data: only how well the aggregated model fits each."""
    acc, n = rep["_acc"], rep["_n"]
    out: dict[str, Any] = {}
    for col, lab in labels.items():
        groups = {}
        for g in sorted(set(lab) - {""}):
            m = (lab == g) & (n >= 5) & ~np.isnan(acc)
            if m.sum() >= 5:
                groups[g] = {
                    "persons": int(m.sum()),
                    "aggregate_fit_mean": float(acc[m].mean()),
                    "aggregate_fit_share_below_60": float((acc[m] < 0.6).mean()),
                }
        out[col] = {
            "groups": groups,
            "names": list(groups),
            "worst_fit_group": min(groups, key=lambda g: groups[g]["aggregate_fit_mean"]) if groups else None,
        }
    return out


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """The figures an auditor reads first."""
    h = res.get("heterogeneity", {})
    sc = (res.get("social_choice") or {}).get("main") or {}
    rep = res.get("representation", {})
    st = res.get("structure", {})
    wg = res.get("worst_group")
    return {
        "persons": res["persons"],
        "items": res["items"],
        "alpha": (h.get("krippendorff") or {}).get("alpha"),
        "contested_share": (h.get("contested") or {}).get("contested_share"),
        "person_share_of_variance": (h.get("variance") or {}).get("person_share"),
        "explained_variance_ratio": (h.get("variance") or {}).get("explained_variance_ratio"),
        "condorcet_winner_exists": None if not sc else sc.get("condorcet_winner") is not None,
        "three_cycles": (sc.get("cycles") or {}).get("three_cycles"),
        "three_cycles_significant": (sc.get("cycles") or {}).get("three_cycles_all_edges_significant"),
        "smith_set_size": sc.get("smith_set_size"),
        "rules_disagree": sc.get("any_disagreement"),
        "aggregate_fit_mean": rep.get("aggregated", {}).get("mean"),
        "share_below_60": rep.get("aggregated", {}).get("share_below_60"),
        "personalized_share_below_60": (rep.get("personalized") or {}).get("share_below_60"),
        "worst_group": None if not wg else f"{wg['column']}={wg['group']}",
        "worst_group_fit": None if not wg else wg["aggregate_fit_mean"],
        "structure_verdict": st.get("verdict"),
        "structure_p": st.get("p_value"),
        "structure_effect": st.get("effect_size"),
    }


# ------------------------------------------------------------------------------------------------- output
def public(x: Any) -> Any:
    """A copy without the private entries (keys starting with '_': arrays kept for the plots)."""
    if isinstance(x, dict):
        return {k: public(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [public(v) for v in x]
    return x


def _plots(res: dict[str, Any], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, str] = {}
    # per-person fit histogram
    rep = res["representation"]
    acc, n = rep["_acc"], rep["_n"]
    ok = (n >= 5) & ~np.isnan(acc)
    if ok.any():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        bins = np.linspace(0, 1, 21)
        ax.hist(acc[ok], bins=bins, alpha=0.7, label="aggregated BT")
        if "_macc" in rep:
            ax.hist(
                rep["_macc"][ok], bins=bins, alpha=0.5, label=f"personalized ({rep['personalized']['model']})"
            )
        ax.axvline(0.6, color="crimson", ls="--", lw=1, label="60%")
        ax.set_xlabel("pairwise accuracy on the person's own comparisons")
        ax.set_ylabel("persons")
        ax.set_title("Who the aggregate represents")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "person_fit.png", dpi=90)
        plt.close(fig)
        files["person_fit"] = "person_fit.png"
    # group divergence heatmaps
    cols = [c for c, v in (res.get("groups") or {}).items() if "jsd_between" in v]
    if cols:
        fig, axes = plt.subplots(1, len(cols), figsize=(3.6 * len(cols), 3.4), squeeze=False)
        for ax, c in zip(axes[0], cols, strict=False):
            g = res["groups"][c]
            m = np.array(g["jsd_between"], float)
            im = ax.imshow(m, cmap="viridis", vmin=0)
            ax.set_xticks(range(len(g["names"])))
            ax.set_xticklabels([s[:12] for s in g["names"]], rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(g["names"])))
            ax.set_yticklabels([s[:12] for s in g["names"]], fontsize=7)
            ax.set_title(c, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle("Mean per-item Jensen-Shannon divergence between groups", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "group_divergence.png", dpi=90)
        plt.close(fig)
        files["group_divergence"] = "group_divergence.png"
    # majority graph with a cycle drawn
    sc = (res.get("social_choice") or {}).get("main")
    if sc and sc.get("n_items", 0) >= 2:
        S, theta = sc["_support"], sc["_theta"]
        nodes = list(
            dict.fromkeys(sc["_cycle_idx"] + list(np.argsort(-theta)[: max(0, 14 - len(sc["_cycle_idx"]))]))
        )
        nodes = [int(x) for x in nodes]
        k = len(nodes)
        ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
        xy = np.c_[np.cos(ang), np.sin(ang)]
        fig, ax = plt.subplots(figsize=(6, 6))
        cyc = set(zip(sc["_cycle_idx"], sc["_cycle_idx"][1:] + sc["_cycle_idx"][:1], strict=False))
        for p, a in enumerate(nodes):
            for q, b in enumerate(nodes):
                if S[a, b] > S[b, a]:
                    red = (a, b) in cyc
                    ax.annotate(
                        "",
                        xy=xy[q] * 0.92,
                        xytext=xy[p] * 0.92,
                        arrowprops=dict(
                            arrowstyle="-|>",
                            lw=2.2 if red else 0.5,
                            color="crimson" if red else "0.7",
                            alpha=1 if red else 0.6,
                        ),
                    )
        for p, a in enumerate(nodes):
            ax.scatter(*xy[p], s=300, color="crimson" if a in sc["_cycle_idx"] else "steelblue", zorder=3)
            ax.text(*(xy[p] * 1.13), sc["items"][a][-12:], ha="center", va="center", fontsize=7)
        ax.set_xlim(-1.35, 1.35)
        ax.set_ylim(-1.35, 1.35)
        ax.axis("off")
        ax.set_title(
            f"Majority graph ({k} of {sc['n_items']} items: a cycle in red, then the BT top)", fontsize=9
        )
        fig.tight_layout()
        fig.savefig(out / "majority_graph.png", dpi=90)
        plt.close(fig)
        files["majority_graph"] = "majority_graph.png"
    return files


def write_audit(res: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write audit.json, the PNG plots and report.html into ``out`` (each file written to a temp path, renamed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the plots are drawn in a scratch folder (the HTML embeds them), then every file is written atomically
    with tempfile.TemporaryDirectory(prefix="personalign-audit-") as tmp:
        tmp_p = Path(tmp)
        plots = _plots(res, tmp_p)
        doc = to_jsonable(public({k: v for k, v in res.items() if k != "item_text"}))
        doc["plots"] = plots
        wf = ((res.get("social_choice") or {}).get("main") or {}).get("welfare") or {}
        shown = {c["item"] for c in wf.values() if isinstance(c, dict)}
        doc["item_text"] = {k: v for k, v in res.get("item_text", {}).items() if k in shown}
        written = {"audit.json": write_text_atomic(out / "audit.json", dumps_json(doc, indent=1))}
        html = render_html(doc, {k: tmp_p / v for k, v in plots.items()})
        written["report.html"] = write_text_atomic(out / "report.html", html)
        for name in plots.values():
            written[name] = write_bytes_atomic(out / name, (tmp_p / name).read_bytes())
    return written


def render_html(doc: dict[str, Any], plot_paths: dict[str, Path]) -> str:
    """The report for an auditor (jinja2 template; PNGs embedded as data URIs)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("personalign.audit", "templates"),
        undefined=jinja2.ChainableUndefined,
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )

    def missing(v: Any) -> bool:
        return v is None or isinstance(v, jinja2.Undefined)

    # comparison data leaves some figures out: they print as n/a
    env.filters["pct"] = lambda v: "n/a" if missing(v) else f"{100 * v:.1f}%"
    env.filters["num"] = lambda v, d=3: (
        "n/a" if missing(v) else (f"{v:.{d}f}" if isinstance(v, float) else str(v))
    )
    imgs = {k: base64.b64encode(p.read_bytes()).decode() for k, p in plot_paths.items()}
    return env.get_template("report.html.j2").render(d=doc, h=doc["headline"], imgs=imgs)
