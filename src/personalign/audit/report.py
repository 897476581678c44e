"""The aggregation audit's output: audit.json, PNG plots and report.html (the analysis: :mod:`.pipeline`)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# the analysis lives in personalign.audit.pipeline; run_audit and headline stay importable from here
from personalign.audit.pipeline import headline, run_audit
from personalign.data.files import dumps_json, to_jsonable, write_bytes_atomic, write_text_atomic
from personalign.reports import environment
from personalign.reports import plots as rp

__all__ = ["headline", "public", "render_html", "run_audit", "write_audit"]


# ------------------------------------------------------------------------------------------------- output
GLOSSARY = {
    "Krippendorff's alpha": "Agreement between people beyond chance: 1 is perfect agreement, 0 is what chance "
    "gives (ordinal distances for ratings, nominal for votes).",
    "contested item": "An item whose larger side (above or below the neutral answer) holds fewer than the stated "
    "share of its judgments.",
    "person share of variance": "Share of the label variance that who judged explains beyond which item was "
    "judged (degrees-of-freedom corrected).",
    "explained-variance ratio": "Share of the label variance the item alone explains; 1 minus it is what a "
    "reward of the item alone cannot see (hidden context).",
    "aggregate fit": "Share of a person's own comparisons that one aggregated reward (item-level Bradley-Terry "
    "on everybody's pooled pairs) orders as that person did; 50% is chance.",
    "fit gap vs rest": "A group's mean aggregate fit minus everyone else's, in points, with a 95% bootstrap "
    "interval over persons.",
    "Condorcet winner": "An item that a majority prefers to every other item.",
    "majority 3-cycle": "Three items where a majority prefers A to B, B to C and C to A; 'all edges "
    "significant' counts those whose three majorities each pass a sign test at 5%.",
    "Smith set": "The smallest set of items each of which a majority prefers to every item outside it.",
    "top cycle": "The items that can be reached from the top through majority preferences.",
    "voting rules": "Borda (mean rank), Copeland (majority wins), maximin (the weakest majority), plurality "
    "(most first places) and BT (the aggregated reward's top item).",
    "Kendall tau": "Rank correlation between the aggregated reward's order and Borda's (1: the same order).",
    "utilitarian choice": "The item with the highest mean utility over persons.",
    "egalitarian choice": "The item that does best for the worst-off: the bottom decile of persons (person) or "
    "the worst group's mean (group).",
    "bottom decile": "The utility the 10% worst-off persons get at most.",
    "judges at the bottom": "Share of the item's judges who put it at the bottom of the scale.",
    "JSD": "Jensen-Shannon divergence between two groups' answer distributions on an item (base 2: 0 is "
    "identical, 1 is disjoint), averaged over items.",
    "opposite-majority items": "Items where the group's majority is on the other side from everyone's.",
    "representativeness": "1 minus the Wasserstein distance between the group's answers and the pooled "
    "answers (or the majority label), over the scale's range (OpinionQA).",
    "structure test": "Held-out gain of a person model (offsets and a low-rank interaction) over the item mean, "
    "against the same fit with person ids shuffled within items; p is the permutation p-value.",
    "effect": "The held-out gain beyond the shuffled mean, as a share of the within-item variance.",
    "split-half reliability": "How well person offsets from one half of the judgments predict those from "
    "the other half (Spearman-Brown corrected; shuffled ids for comparison).",
}


def public(x: Any) -> Any:
    """A copy without the private entries (keys starting with '_': arrays kept for the plots)."""
    if isinstance(x, dict):
        return {k: public(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [public(v) for v in x]
    return x


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _gap_text(iv: dict[str, Any] | None) -> str:
    if not iv:
        return ""
    lo, hi = iv["ci95"]
    return f"{100 * iv['mean']:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def audit_verdict(doc: dict[str, Any]) -> str:
    """One line an auditor reads first: how much personal structure the data holds and whom one reward fails."""
    h, st = doc.get("headline") or {}, doc.get("structure") or {}
    parts = []
    if h.get("structure_verdict"):
        strength = {"none detected": "no detectable"}.get(h["structure_verdict"], h["structure_verdict"])
        parts.append(
            f"This data holds {strength} personal structure: who judges explains "
            f"{_pct(h.get('person_share_of_variance'))} of the label variance beyond the item "
            f"(permutation p = {st.get('p_value', h.get('structure_p')):.2g}, effect "
            f"{_pct(h.get('structure_effect'))} of within-item variance)"
        )
    else:
        parts.append("Personal structure was not tested here (the permutation test was switched off)")
    if h.get("aggregate_fit_mean") is not None:
        parts.append(
            f"one aggregated reward fits the average person's own comparisons at {_pct(h['aggregate_fit_mean'])} "
            f"and {_pct(h.get('share_below_60'))} of persons below 60%"
        )
    wg = doc.get("worst_group") or {}
    if wg:
        gap = wg.get("gap_vs_rest")
        clear = gap is not None and (gap["ci95"][1] < 0)
        who = f"{wg['column']}={wg['group']}"
        if gap is None:
            parts.append(f"it serves {who} worst ({_pct(wg.get('aggregate_fit_mean'))})")
        elif clear:
            parts.append(f"it serves {who} worst, {_gap_text(gap)} against everyone else")
        else:
            parts.append(
                f"its worst-served group, {who}, is not clearly worse off ({_gap_text(gap)} vs the rest)"
            )
    return "; ".join(parts) + "."


def _graph_nodes(sc: dict[str, Any], limit: int = 12) -> list[int]:
    """The majority graph's nodes: the cycle drawn, then the aggregated reward's top items, ``limit`` at most."""
    cyc = [int(x) for x in sc.get("_cycle_idx", [])][:limit]
    top = [int(x) for x in np.argsort(-np.asarray(sc["_theta"]))]
    return list(dict.fromkeys(cyc + top))[: max(limit, len(cyc))]


def _node_label(text: str, fallback: str, width: int = 17, lines: int = 2) -> str:
    """``text`` (or ``fallback``) wrapped to ``lines`` lines of ``width`` characters, an ellipsis where cut."""
    import textwrap

    wrapped = textwrap.wrap(" ".join(str(text or fallback).split()), width)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 1].rstrip(" ,.;:") + "…"
    return "\n".join(wrapped)


def person_fit_figure(res: dict[str, Any]) -> Any:
    """Histogram of the aggregated reward's fit to each person (and the personalized model's), chance and 60%
    lines, legend beside the plot; None without persons."""
    rep = res["representation"]
    acc, n = rep["_acc"], rep["_n"]
    ok = (n >= 5) & ~np.isnan(acc)
    if not ok.any():
        return None
    plt = rp.pyplot()
    fig, ax = plt.subplots(figsize=(7.4, 3.8))
    bins = np.linspace(0, 100, 21)
    ax.hist(100 * acc[ok], bins=bins, alpha=0.75, color=rp.model_color("bt"), label="aggregated BT")
    if "_macc" in rep:
        name = f"personalized ({rep['personalized']['model']})"
        ax.hist(100 * rep["_macc"][ok], bins=bins, alpha=0.55, color=rp.model_color("lowrank"), label=name)
    rp.chance_line(ax, axis="x")
    ax.axvline(60, color="crimson", ls="--", lw=1.2, label="60% (fit threshold)")
    rp.style(
        ax,
        "Who the aggregate represents",
        "fit: share of the person's own comparisons ordered as they did (%)",
        "persons",
    )
    rp.legend_outside(ax)
    return fig


def divergence_figure(res: dict[str, Any]) -> Any:
    """Heatmaps of the mean per-item Jensen-Shannon divergence between groups, one per column; None without."""
    cols = [c for c, v in (res.get("groups") or {}).items() if "jsd_between" in v]
    if not cols:
        return None
    plt = rp.pyplot()
    ncol = min(3, len(cols))
    nrow = -(-len(cols) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 4.2 * nrow), squeeze=False)
    for ax in axes.flat[len(cols) :]:
        ax.set_visible(False)
    for ax, c in zip(axes.flat, cols, strict=False):
        g = res["groups"][c]
        m = np.array(g["jsd_between"], float)
        im = ax.imshow(m, cmap="viridis", vmin=0)
        names = [
            _node_label(s, s, 22, lines=1) if rp.drawable(s) else f"group {i + 1}"
            for i, s in enumerate(g["names"])
        ]
        ax.set_xticks(range(len(names)), names, rotation=55, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.grid(False)
        rp.style(ax, c, None, None)
        fig.colorbar(im, ax=ax, fraction=0.046, label="mean JSD")
    fig.suptitle(
        "How differently groups answer: mean per-item Jensen-Shannon divergence between two groups "
        "(blank: too few shared judges)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def majority_graph_figure(res: dict[str, Any], item_text: dict[str, str]) -> Any:
    """The majority graph of a few items (a cycle in red, then the aggregated reward's top), labelled with short
    item texts outside the circle, with a legend; None without a social-choice profile."""
    sc = (res.get("social_choice") or {}).get("main")
    if not sc or sc.get("n_items", 0) < 2 or "_support" not in sc:
        return None
    from matplotlib.lines import Line2D

    plt = rp.pyplot()
    S, nodes, cyc_idx = sc["_support"], _graph_nodes(sc), [int(x) for x in sc.get("_cycle_idx", [])]
    k = len(nodes)
    ang = np.pi / 2 - np.linspace(0, 2 * np.pi, k, endpoint=False)
    xy = np.c_[np.cos(ang), np.sin(ang)]
    fig, ax = plt.subplots(figsize=(9.6, 8.4))
    cyc = set(zip(cyc_idx, cyc_idx[1:] + cyc_idx[:1], strict=False))
    for p, a in enumerate(nodes):
        for q, b in enumerate(nodes):
            if S[a, b] > S[b, a]:
                red = (a, b) in cyc
                arrow = dict(
                    arrowstyle="-|>",
                    lw=2.2 if red else 0.6,
                    color="crimson" if red else "0.6",
                    alpha=1 if red else 0.5,
                    shrinkA=12,  # points: the arrow starts and ends at a node's edge
                    shrinkB=12,
                    mutation_scale=14 if red else 9,
                )
                ax.annotate("", xy=xy[q], xytext=xy[p], arrowprops=arrow, zorder=2 if red else 1)
    for p, a in enumerate(nodes):
        on = a in cyc_idx
        ax.scatter(*xy[p], s=380, color="crimson" if on else "steelblue", zorder=3, edgecolor="white")
        ax.text(
            *xy[p], str(p + 1), ha="center", va="center", fontsize=9, color="white", weight="bold", zorder=4
        )
        cx, cy = xy[p]
        ha = "left" if cx > 0.2 else "right" if cx < -0.2 else "center"
        va = "bottom" if cy > 0.2 else "top" if cy < -0.2 else "center"
        full = item_text.get(sc["items"][a], "")
        # without a font for its script, the item's id stands in for its text
        text = f"{p + 1}. " + _node_label(full if rp.drawable(full) else "", sc["items"][a], 24)
        ax.text(*(xy[p] * 1.12), text, ha=ha, va=va, fontsize=8.5, linespacing=1.15)
    ax.set_xlim(-2.0, 2.0)
    ax.set_ylim(-1.4, 1.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"Majority graph: {k} of the {sc['n_items']} items of the social-choice profile", loc="left")
    handles = [
        Line2D(
            [], [], marker="o", ls="", color="steelblue", ms=10, label="top item of the aggregated reward"
        ),
        Line2D([], [], color="0.6", lw=0.8, label="majority preference (tail -> head)"),
    ]
    if cyc_idx:  # the cycle's entries only where one is drawn
        handles[:0] = [
            Line2D(
                [], [], marker="o", ls="", color="crimson", ms=10, label="item on the majority cycle drawn"
            ),
            Line2D([], [], color="crimson", lw=2.2, label="cycle edge: a majority prefers the arrow's head"),
        ]
    else:
        ax.text(0, -1.38, "no majority cycle among these items", ha="center", fontsize=9, color="0.35")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.01), ncol=2, frameon=False)
    return fig


def _plots(res: dict[str, Any], out: Path) -> dict[str, str]:
    item_text = res.get("item_text", {})
    files: dict[str, str] = {}
    for key, fig in (
        ("person_fit", person_fit_figure(res)),
        ("group_divergence", divergence_figure(res)),
        ("majority_graph", majority_graph_figure(res, item_text)),
    ):
        if fig is not None:
            rp.save(fig, out / f"{key}.png")
            files[key] = f"{key}.png"
    return files


def _shown_items(res: dict[str, Any]) -> set[str]:
    """Every item id the report names (winners, welfare choices, the graph's nodes): their texts are kept."""
    sc = (res.get("social_choice") or {}).get("main") or {}
    shown = {c["item"] for c in (sc.get("welfare") or {}).values() if isinstance(c, dict)}
    shown |= {w for v in (sc.get("winners") or {}).values() for w in v}
    shown |= set(sc.get("cycle_drawn") or []) | {sc.get("condorcet_winner")} - {None}
    if "_support" in sc:
        shown |= {sc["items"][i] for i in _graph_nodes(sc)}
    return shown


def write_audit(res: dict[str, Any], out: str | Path, command: str | None = None) -> dict[str, Path]:
    """Write audit.json, the PNG plots and report.html into ``out`` (each file written to a temp path, renamed);
    ``command`` (the command line that reproduces the folder) is recorded and printed in the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the plots are drawn in a scratch folder (the HTML embeds them), then every file is written atomically
    with tempfile.TemporaryDirectory(prefix="personalign-audit-") as tmp:
        tmp_p = Path(tmp)
        plots = _plots(res, tmp_p)
        doc = to_jsonable(public({k: v for k, v in res.items() if k != "item_text"}))
        if command:
            doc["command"] = command
        doc["plots"] = plots
        shown = _shown_items(res)
        doc["item_text"] = {k: v for k, v in res.get("item_text", {}).items() if k in shown}
        written = {"audit.json": write_text_atomic(out / "audit.json", dumps_json(doc, indent=1))}
        html = render_html(doc, {k: tmp_p / v for k, v in plots.items()})
        written["report.html"] = write_text_atomic(out / "report.html", html)
        for name in plots.values():
            written[name] = write_bytes_atomic(out / name, (tmp_p / name).read_bytes())
    return written


SECTIONS = ("heterogeneity", "social_choice", "groups", "representation", "structure")


def render_html(doc: dict[str, Any], plot_paths: dict[str, Path]) -> str:
    """The report for an auditor (jinja2 template over the shared page; PNGs embedded as data URIs). Tolerant of
    missing keys: a section without its figures is left out, and sections are numbered as they appear."""
    present = [s for s in SECTIONS if doc.get(s) or s == "representation"]
    imgs = {k: base64.b64encode(p.read_bytes()).decode() for k, p in plot_paths.items()}
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in (doc.get("timings_s") or {}).items())
    return (
        environment("personalign.audit")
        .get_template("report.html.j2")
        .render(
            d=doc,
            h=doc.get("headline") or {},
            imgs=imgs,
            num={s: i + 1 for i, s in enumerate(present)},
            verdict=audit_verdict(doc),
            glossary=GLOSSARY,
            texts=doc.get("item_text") or {},
            timings=timings,
        )
    )
