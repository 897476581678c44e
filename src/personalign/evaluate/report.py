"""Results of an evaluation as files people read: results.json, results.md (tables), PNG plots, one HTML page.

Every table carries the collapsed control (every person at the population prior mean) and the seed-paired
personal gain (personalized - collapsed) with its 95% interval. The report opens with one verdict line per cell
and the command that reproduces the folder, keeps its default tables short (the other columns in an expandable
section) and ends with a glossary of every column. :func:`rerender` redraws a folder from its results.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from personalign.data.files import write_text_atomic
from personalign.data.validate import merged_repeats_note
from personalign.reports import glossary_markdown, markdown_to_html, md_table, render_page, verdict_word
from personalign.reports import plots as rp
from personalign.reports.text import counts_text

CELL_TITLES = {
    "collaborative": "Seen persons, items others judged (collaborative cell)",
    "unseen_items": "Seen persons, unseen items",
}
CELL_SHORT = {
    "collaborative": "Seen persons, items others judged",
    "unseen_items": "Seen persons, unseen items",
    "kshot": "New persons",
}
LABELS = {
    "majority": "per-item majority",
    "choix": "choix item BT",
    "crowd": "crowd LOO (oracle)",
    "bt": "aggregated BT",
    "group": "group BT",
    "independent": "independent BT",
    "lowrank": "low-rank BT",
    "mixture": "mixture BT",
    "oracle": "true reward (oracle)",
}
# the personalized model a verdict speaks for, in order of preference (the project's model first)
VERDICT_MODELS = ("lowrank", "mixture", "independent", "group")
PERSONAL_MODELS = ("lowrank", "hybrid", "mixture", "independent", "group")
# the order models take in the per-person and group plots; a model outside it comes after them
PLOT_ORDER = ("crowd", "bt", "lowrank", "hybrid", "independent", "group", "mixture", "svd", "oracle")

GLOSSARY = {
    "per-person acc": "Mean over persons of the share of their test pairs the model orders as they did "
    "(points; mean ± std over seeds). Chance is 50.",
    "collapsed": "The same model with every person at the population prior mean: no personal part. "
    "The control that isolates what personalization adds.",
    "personal gain [95% CI]": "Personalized minus collapsed accuracy, paired by seed, in points, with its "
    "95% interval over seeds; * marks an interval that excludes 0.",
    "vs aggregated BT": "This model minus the aggregated Bradley-Terry reward (one reward for everybody), paired "
    "by seed, with its 95% interval; * marks an interval that excludes 0.",
    "worst 10% persons": "Mean accuracy of the tenth of persons the model serves worst.",
    "worst group": "Accuracy of the demographic group the model serves worst (the group named is the one most "
    "often worst over seeds).",
    "group gap": "Best-served minus worst-served group accuracy.",
    "contested": "Accuracy on contested pairs (people disagree about them).",
    "consensus": "Accuracy on consensus pairs (nearly everybody agrees).",
    "consensus tax": "Collapsed minus personalized accuracy on consensus pairs: above 0, the personal part costs "
    "accuracy where people agree.",
    "log-loss": "Mean negative log-likelihood of the person's choices (lower is better; 0.693 is a coin flip).",
    "ECE": "Expected calibration error of P(chosen > rejected) (lower is better).",
    "Brier": "Mean squared error of P(chosen > rejected) (lower is better; 0.25 is a coin flip).",
    "pairs / persons": "Test pairs and persons in the cell (mean over seeds).",
    "mode": "How the k judgments of a new person were picked: random, or active (each chosen by the model's "
    "suggest_query).",
    "k": "Judgments of a new person (not seen in training) used to adapt the model before testing on unseen "
    "items.",
    "gain at k": "Personal gain (adapted minus collapsed) at the largest k, with its 95% interval.",
    "collaborative cell": "Seen persons, test pairs of items other people judged in training.",
    "unseen items": "Seen persons, test pairs of items nobody judged in training: only the text informs.",
    "aggregated BT": "One Bradley-Terry reward trained on everybody's pooled comparisons (what RLHF does).",
    "low-rank BT": "Population reward plus a low-rank personal part, r_u = (mu + B w_u)^T phi, with a learned prior "
    "over w_u.",
    "group BT": "One Bradley-Terry reward per demographic group.",
    "independent BT": "One Bradley-Terry reward per person, nothing shared.",
    "mixture BT": "A mixture of a few latent reward types (EM).",
    "per-item majority / choix item BT": "Item-level baselines: they know nothing about an unseen item and answer "
    "1/2 there.",
    "crowd LOO (oracle)": "Other people's judgments of the same test items (leave one out): an oracle bound.",
    "true reward (oracle)": "Synthetic data only: each person's true reward.",
    "mae": "Mean absolute error of a predicted rating (lower is better).",
    "label_accuracy": "Share of exact label predictions (pointwise data).",
}


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def fmt(iv: dict[str, Any] | None, scale: float = 100.0, digits: int = 1, ci: bool = False) -> str:
    """'mean ± std' (optionally '[lo, hi]') of an interval dict, in points (scale 100) by default."""
    if not iv or iv.get("mean") is None:
        return "-"
    s = f"{scale * iv['mean']:.{digits}f} ± {scale * (iv.get('std') or 0):.{digits}f}"
    if ci and iv.get("ci95") and iv["ci95"][0] is not None:
        s += f" [{scale * iv['ci95'][0]:.{digits}f}, {scale * iv['ci95'][1]:.{digits}f}]"
    return s


def fmt_gain(iv: dict[str, Any] | None) -> str:
    """A paired difference in points with its interval, starred when the interval excludes 0."""
    if not iv or iv.get("mean") is None:
        return "-"
    lo, hi = (list(iv.get("ci95") or []) + [None, None])[:2]
    star = "*" if iv.get("significant") else ""
    if lo is None:
        return f"{100 * iv['mean']:+.1f}"
    return f"{100 * iv['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{star}"


def label(m: str) -> str:
    return LABELS.get(m, m)


def _worst_group_name(r: dict[str, Any]) -> str:
    names = [n for n in r.get("worst_group_names", []) if n]
    # the group most often worst over seeds; ties go to the first in name order (not to set order)
    return min(sorted(set(names)), key=lambda n: -names.count(n)) if names else ""


COMPACT_HEADER = (
    "model",
    "per-person acc",
    "personal gain [95% CI]",
    "vs aggregated BT",
    "worst 10% persons",
    "worst group",
)
FULL_HEADER = (
    "model",
    "per-person acc",
    "collapsed",
    "personal gain [95% CI]",
    "vs aggregated BT",
    "worst 10% persons",
    "worst group",
    "group gap",
    "contested",
    "consensus",
    "consensus tax",
    "log-loss",
    "ECE",
    "Brier",
    "pairs / persons",
)


def _full_row(m: str, r: dict[str, Any]) -> list[str]:
    wname = _worst_group_name(r)
    n_pairs = int((r.get("n_pairs") or {}).get("mean") or 0)
    n_persons = int((r.get("n_persons") or {}).get("mean") or 0)
    return [
        label(m),
        fmt(r.get("accuracy")),
        fmt(r.get("collapsed_accuracy")),
        fmt_gain(r.get("personal_gain")),
        fmt_gain(r.get("gain_vs_bt")),
        fmt(r.get("worst_decile")),
        f"{fmt(r.get('worst_group'))} {wname}".strip(),
        fmt(r.get("group_gap")),
        fmt(r.get("contested_accuracy")),
        fmt(r.get("consensus_accuracy")),
        fmt_gain(r.get("tax_consensus")),
        fmt(r.get("log_loss"), 1, 3),
        fmt(r.get("ece"), 1, 3),
        fmt(r.get("brier"), 1, 3),
        f"{n_pairs} / {n_persons}",
    ]


def cell_table(res: dict[str, Any], cell: str, columns: str = "full") -> str:
    """One cell's models as a Markdown table: every column (``full``) or the six read first (``compact``)."""
    rows = res.get("cells", {}).get(cell, {})
    if not rows:
        why = res.get("cell_notes", {}).get(
            cell, "no reason was recorded (results written by an older version)"
        )
        return f"_this cell is empty: {why}_\n"
    full = [_full_row(m, r) for m, r in rows.items()]
    if columns == "full":
        return md_table(FULL_HEADER, full)
    keep = [FULL_HEADER.index(h) for h in COMPACT_HEADER]
    return md_table(COMPACT_HEADER, [[row[i] for i in keep] for row in full])


def kshot_table(res: dict[str, Any]) -> str:
    ks = sorted({int(k) for e in res.get("kshot", {}).values() for k in e.get("random", {})})
    if not ks:
        why = res.get("cell_notes", {}).get(
            "kshot", "no reason was recorded (results written by an older version)"
        )
        return f"_no k-shot curve: {why}_\n"
    header = ["model", "mode", "collapsed", *[f"k={k}" for k in ks], f"gain at k={ks[-1]}"]
    rows = []
    for m, e in res["kshot"].items():
        for mode in ("random", "active"):
            if mode not in e or not e[mode]:
                continue
            last = e[mode].get(str(max(int(k) for k in e[mode])), {})
            vals = [fmt(e[mode].get(str(k))) for k in ks]
            rows.append([label(m), mode, fmt(e.get("collapsed")), *vals, fmt_gain(last.get("personal_gain"))])
    return md_table(header, rows)


def pointwise_table(res: dict[str, Any]) -> str:
    if not res.get("pointwise"):
        return ""
    out = []
    for cell, preds in res["pointwise"].items():
        keys = [
            k
            for k in ("label_accuracy", "contested_label_accuracy", "consensus_label_accuracy", "mae")
            if any(k in v for p, v in preds.items() if p != "offset_gain")
        ]
        rows = [
            [p, *[fmt(v.get(k), 1 if k == "mae" else 100, 3 if k == "mae" else 1) for k in keys]]
            for p, v in preds.items()
            if p != "offset_gain"
        ]
        table = md_table([f"{CELL_SHORT.get(cell, cell)}: predictor", *keys], rows)
        g = preds.get("offset_gain")
        if g:
            ((k, iv),) = g.items()
            sc = 1 if k == "mae" else 100
            lo, hi = (list(iv.get("ci95") or []) + [None, None])[:2]
            table += (
                f"\nCrowd + personal offset minus crowd ({k}, seed-paired): {iv['mean'] * sc:+.3g} "
                f"[{(lo or 0) * sc:+.3g}, {(hi or 0) * sc:+.3g}]\n"
            )
        out.append(table)
    return "\n".join(out)


def harmless_table(res: dict[str, Any]) -> str:
    h = res.get("harmless") or {}
    if not h:
        return ""
    header = ["model", "hh-rlhf harmless acc (personal weights)", "collapsed", "tax (collapsed - personal)"]
    rows = [
        [label(m), fmt(v.get("accuracy")), fmt(v.get("collapsed")), fmt_gain(v.get("tax"))]
        for m, v in h.items()
    ]
    return md_table(header, rows)


def comparison_rows(res: dict[str, Any], cell: str = "unseen_items") -> list[list[str]]:
    """Compact rows (model, accuracy, collapsed, gain, worst group) for consoles."""
    out = []
    for m, r in res["cells"].get(cell, {}).items():
        out.append(
            [
                label(m),
                fmt(r["accuracy"]),
                fmt(r["collapsed_accuracy"]),
                fmt_gain(r["personal_gain"]),
                fmt(r["worst_decile"]),
                fmt(r["worst_group"]),
            ]
        )
    return out


def groups_table(res: dict[str, Any], cell: str = "unseen_items") -> str:
    g = res.get("groups", {}).get(cell, {})
    if not g:
        return "_no demographic groups with enough persons_\n"
    models = list(g)
    cols = sorted({c for m in models for c in g[m]})
    rows = []
    for c in cols:
        for v in sorted({v for m in models for v in g[m].get(c, {})}):
            rows.append([c, v, *[fmt(g[m].get(c, {}).get(v)) for m in models]])
    return md_table(["column", "group", *[label(m) for m in models]], rows)


# ------------------------------------------------------------------------------------------- verdicts
def _ci(iv: dict[str, Any] | None) -> tuple[float | None, float | None]:
    lo, hi = (list((iv or {}).get("ci95") or []) + [None, None])[:2]
    return lo, hi


def verdict_line(res: dict[str, Any], cell: str) -> str | None:
    """'<cell>: personalization (<model>) helps / does not help / hurts here, by X [CI] points over its collapsed
    control' for the first personalized model of :data:`VERDICT_MODELS` in ``cell`` ('kshot': new persons at the
    largest k); None when the cell holds none."""
    if cell == "kshot":
        entries = res.get("kshot", {})
        m = next((m for m in VERDICT_MODELS if entries.get(m, {}).get("random")), None)
        if m is None:
            return None
        rnd = entries[m]["random"]
        kmax = max(int(k) for k in rnd)
        gain, vs_bt, where = rnd[str(kmax)].get("personal_gain"), None, f"{CELL_SHORT[cell]} after k={kmax}"
    else:
        rows = res.get("cells", {}).get(cell, {})
        m = next((m for m in VERDICT_MODELS if m in rows), None)
        if m is None:
            return None
        gain, vs_bt, where = rows[m].get("personal_gain"), rows[m].get("gain_vs_bt"), CELL_SHORT[cell]
    if not gain or gain.get("mean") is None:
        return f"**{where}**: no personal gain was measured for {label(m)}."
    lo, hi = _ci(gain)
    word = verdict_word(lo, hi, gain["mean"])
    if lo is not None and max(abs(lo), abs(hi), abs(gain["mean"])) < 5e-4:
        # a zero-width interval at 0: the personal part was shrunk away (e.g. by the tuned penalty)
        word, joint = "adds nothing", " (its personal part is shrunk to zero):"
    else:
        joint = ", by" if word in ("helps", "hurts") else ":"
    line = (
        f"**{where}**: personalization ({label(m)}) **{word}** here{joint} {fmt_gain(gain)} points over its "
    )
    line += "collapsed control"
    if vs_bt and vs_bt.get("mean") is not None and m != "bt":
        line += f"; against one aggregated reward (aggregated BT) {fmt_gain(vs_bt)}"
    return line + "."


def verdict(res: dict[str, Any]) -> list[str]:
    """One verdict line per cell (seen persons on judged items, on unseen items; new persons)."""
    lines = [verdict_line(res, c) for c in ("collaborative", "unseen_items", "kshot")]
    return [x for x in lines if x]


# ------------------------------------------------------------------------------------------- markdown
def _setup_paragraph(res: dict[str, Any]) -> str:
    cfg, s, t = res.get("config", {}), res.get("summary", {}), res.get("timing", {})
    jp = s.get("judgments_per_person") or {}
    per = f" ({jp['min']}–{jp['max']} per person)" if jp.get("min") is not None else ""
    demo = s.get("demographic_columns")
    text = (
        f"**Data.** {s.get('persons', '?'):,} persons, {s.get('items', '?'):,} items, "
        f"{counts_text(s.get('judgments'))}{per}."
        + (f" Demographic columns: {', '.join(demo)}." if demo else "")
        + (
            f" {note[0].upper()}{note[1:]}."
            if (note := merged_repeats_note(s.get("repeat_judgments_merged")))
            else ""
        )
        + f" **Protocol.** {len(res.get('seeds', []))} seeds ({', '.join(map(str, res.get('seeds', [])))}). "
        f"Held out: {cfg.get('unseen_user_frac', 0):.0%} of persons (new persons), "
        f"{cfg.get('unseen_item_frac', 0):.0%} of items (unseen items) and {cfg.get('collab_frac', 0):.0%} of "
        "each seen person's items (collaborative cell; a test pair holds two held-out items). At most "
        f"{cfg.get('max_train_pairs')} training and {cfg.get('max_test_pairs')} test pairs per person and cell"
        + (f"; {cfg['max_persons']:,} persons sampled" if cfg.get("max_persons") else "")
        + f". Encoder: {t.get('encoder')}"
        + (f", pair features {t['pair_mode']}" if t.get("pair_mode") not in (None, "auto") else "")
    )
    if t.get("total_s") is not None:
        text += f". Run time {t['total_s']:.0f} s (features {t.get('features_s') or 0:.0f} s)"
    return text + ".\n"


HOW_TO_READ = (
    "**How to read.** Numbers are per-person pairwise accuracy in points (mean ± std over seeds; chance is 50). "
    "The personal gain is personalized minus collapsed (every person at the population prior mean), paired by "
    "seed, with its 95% interval (* = excludes 0). Item-level baselines (majority, choix) know nothing about "
    "unseen items (they answer 1/2 there); crowd LOO is an oracle that sees other people's judgments of the "
    "test items. Hover a column name for its meaning; the glossary is at the end.\n"
)


def _details(summary: str, body: str) -> str:
    # raw HTML that GitHub and markdown-it both render; blank lines keep the Markdown inside it parsed
    return f"<details><summary>{summary}</summary>\n\n{body}\n</details>\n"


def _figure(plots: list[str] | None, name: str, caption: str) -> str:
    return f"![{caption}]({name})\n\n_{caption}_\n" if plots and name in plots else ""


def markdown(res: dict[str, Any], command: str | None = None, plots: list[str] | None = None) -> str:
    """results.md: verdicts, the command, the setup, compact tables (all columns folded), plots, glossary."""
    command = command or res.get("command")
    parts = [f"# Evaluation: {res.get('dataset', '')}\n"]
    lines = verdict(res)
    if lines:
        parts.append("> **Verdict**\n>\n" + "\n".join(f"> - {x}" for x in lines) + "\n")
    if command:
        parts.append(f"Reproduce this folder:\n\n```\n{command}\n```\n")
    else:
        parts.append("_No command was recorded (written from the library, not the command line)._\n")
    parts.append(_setup_paragraph(res))
    parts.append(HOW_TO_READ)
    chosen = res.get("chosen_hyperparameters", {})
    if chosen.get("lowrank"):
        vals = [c.get("l2_basis") for c in chosen["lowrank"] if c]
        parts.append(
            f"Low-rank's personal-basis penalty l2_basis was chosen per seed by log-loss on training items "
            f"held out from the fit (grid {res.get('config', {}).get('tune_l2_basis')}): {vals}.\n"
        )
    for name, seeds in chosen.items():
        removed = sum(1 for c in seeds if c and str(c.get("personal_part", "")).startswith("removed"))
        if removed:
            parts.append(
                f"{name}: the personal part was removed in {removed} of {len(seeds)} seeds (on held-out training "
                "items it lost to the same model collapsed to the population), so there it serves the "
                "population's reward and its gain is 0.\n"
            )
        powers = [c["likelihood_power"] for c in seeds if c and "likelihood_power" in c]
        if powers:
            parts.append(
                f"{name}: the persons' likelihood power (how far a person's judgments move them from the class "
                f"prior; 0 = the collapsed model) was chosen per seed on held-out training rows: {powers}.\n"
            )
        priors = [c["item_prior"].get("l2_item") for c in seeds if c and c.get("item_prior")]
        if priors:
            parts.append(
                f"{name}: the item prior's precision l2_item was chosen per seed on a collaborative split of the "
                f"training judgments (grid {res.get('config', {}).get('tune_l2_item')}): {priors}.\n"
            )
    for cell in ("collaborative", "unseen_items"):
        parts.append(f"## {CELL_TITLES[cell]}\n\n{cell_table(res, cell, 'compact')}")
        reach = res.get("crowd_reach") if cell == "collaborative" else None
        if reach:
            parts.append(
                f"The crowd oracle reads {reach['crowd_oracle']['mean']:.1f} other judges per test item (the whole "
                f"data set, test cells included); the models' training data holds {reach['training']['mean']:.1f}. "
                "Per-item majority is the crowd of the training data alone.\n"
            )
        if res.get("cells", {}).get(cell):
            parts.append(
                _details(
                    "All columns (collapsed control, group gap, contested and consensus pairs, calibration, sizes)",
                    cell_table(res, cell, "full"),
                )
            )
    parts.append(_figure(plots, "per_person.png", "How accuracy spreads over persons (first seed)"))
    parts.append("## New persons: k-shot adaptation, tested on unseen items\n\n" + kshot_table(res))
    parts.append(
        _figure(plots, "kshot.png", "New persons: accuracy after k judgments (95% bands over seeds)")
    )
    pw = pointwise_table(res)
    if pw:
        parts.append("## Pointwise labels and ratings: crowd references\n\n" + pw)
    hm = harmless_table(res)
    if hm:
        parts.append("## Personalization tax on population-wide harmlessness pairs (hh-rlhf)\n\n" + hm)
    parts.append("## Groups (seen persons, unseen items)\n")
    parts.append(_figure(plots, "groups.png", "Accuracy by demographic group (± std over seeds)"))
    parts.append(_details("Every group and model", groups_table(res)))
    parts.append(glossary_markdown(GLOSSARY))
    parts.append("Numbers: `results.json`; this page: `results.md` and `index.html`.\n")
    return "\n".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------- plots
def _bounds(points: dict[str, Any], ks: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def at(k: int, i: int | None) -> float:
        p = points[str(k)]
        v = p.get("mean") if i is None else _ci(p)[i]
        return np.nan if v is None else 100 * v

    return tuple(np.array([at(k, i) for k in ks], float) for i in (None, 0, 1))  # type: ignore[return-value]


def kshot_figure(res: dict[str, Any]) -> Any:
    """New persons' accuracy against k (ticks at the k values), 95% bands for the personalized models, a chance
    line, the legend beside the plot; None without k-shot results."""
    entries = {m: e for m, e in res.get("kshot", {}).items() if e.get("random")}
    if not entries:
        return None
    plt = rp.pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    all_ks: set[int] = set()
    for m, e in entries.items():
        personal = m in PERSONAL_MODELS
        for mode, ls in (("random", "-"), ("active", "--")):
            if not e.get(mode):
                continue
            ks = sorted(int(k) for k in e[mode])
            all_ks |= set(ks)
            mu, lo, hi = _bounds(e[mode], ks)
            name = label(m) + (", active" if mode == "active" else "")
            kw = dict(color=rp.model_color(m), lw=2.0 if personal else 1.1, alpha=1.0 if personal else 0.75)
            ax.plot(ks, mu, ls, marker="o", ms=3.5 if personal else 2.5, label=name, **kw)
            if personal and mode == "random":
                ax.fill_between(ks, lo, hi, color=kw["color"], alpha=0.13, lw=0)
    rp.chance_line(ax)
    rp.kshot_axis(ax, sorted(all_ks))
    rp.style(
        ax,
        f"{res.get('dataset', '')}: new persons adapted from k judgments",
        "k: judgments of the new person used to adapt (log(1 + k) spacing)",
        "per-person accuracy on unseen items (%)",
    )
    rp.legend_outside(ax, title="model")
    return fig


def _plot_models(available: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """The models of ``available`` to draw, in PLOT_ORDER, then any others; ``skip`` left out unless nothing
    else is there."""
    ordered = [m for m in PLOT_ORDER if m in available] + sorted(set(available) - set(PLOT_ORDER))
    return [m for m in ordered if m not in skip] or ordered[:3]


def _group_columns(g: dict[str, Any], models: list[str], limit: int = 6) -> list[str]:
    cols = sorted(
        {c for m in models for c in g[m] if len({v for mm in models for v in g[mm].get(c, {})}) >= 2}
    )
    return cols[:limit]


def groups_figure(res: dict[str, Any], cell: str = "unseen_items") -> Any:
    """Per demographic column, each group's accuracy (a point per model, ± std over seeds) with a chance line;
    None without groups."""
    g = res.get("groups", {}).get(cell, {})
    models = _plot_models(g, skip=("majority", "choix", "crowd", "svd"))
    cols = _group_columns(g, models) if g else []
    if not cols:
        return None
    plt = rp.pyplot()
    sizes = [len({v for m in models for v in g[m].get(c, {})}) for c in cols]
    fig, axes = plt.subplots(
        len(cols),
        1,
        figsize=(8.4, 1.0 + 0.34 * sum(sizes) + 0.55 * len(cols)),
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": sizes},
    )
    dy = 0.7 / max(1, len(models))
    for ax, c in zip(axes[:, 0], cols, strict=True):
        vals = sorted({v for m in models for v in g[m].get(c, {})})
        for i, m in enumerate(models):
            rec = [g[m].get(c, {}).get(v) or {} for v in vals]
            xs = np.array([np.nan if r.get("mean") is None else 100 * r["mean"] for r in rec], float)
            es = np.array([100 * (r.get("std") or 0) for r in rec], float)
            ys = np.arange(len(vals)) - 0.35 + dy * (i + 0.5)
            ax.errorbar(xs, ys, xerr=es, fmt="o", ms=4, capsize=2, color=rp.model_color(m), label=label(m))
        ax.set_yticks(np.arange(len(vals)), [str(v) for v in vals])
        ax.invert_yaxis()
        rp.chance_line(ax, axis="x")
        ax.set_ylabel(c)
        ax.tick_params(labelbottom=True)
        ax.grid(axis="y", alpha=0)
    axes[0, 0].set_title(
        f"{res.get('dataset', '')}: accuracy by group ({CELL_SHORT.get(cell, cell).lower()}, ± std over seeds)",
        loc="left",
    )
    axes[-1, 0].set_xlabel("per-person accuracy (%)")
    rp.legend_outside(axes[0, 0], title="model")
    fig.tight_layout()
    return fig


def per_person_figure(res: dict[str, Any]) -> Any:
    """How accuracy spreads over persons (first seed), one panel per cell, with a chance line; None without
    data."""
    pp = res.get("per_person", {})
    cells = [c for c in ("collaborative", "unseen_items") if pp.get(c)]
    if not cells:
        return None
    plt = rp.pyplot()
    fig, axes = plt.subplots(1, len(cells), figsize=(5.2 * len(cells), 3.8), squeeze=False, sharey=True)
    for ax, c in zip(axes[0], cells, strict=True):
        # majority and choix are item-level and svd answers 1/2 on items nobody judged: spikes, not spreads
        skip = ("majority", "choix") + (("svd",) if c == "unseen_items" else ())
        for m in _plot_models(pp[c], skip=skip):
            v = 100 * np.asarray(pp[c][m], float)
            ax.hist(
                v, bins=20, range=(0, 100), histtype="step", lw=1.6, color=rp.model_color(m), label=label(m)
            )
        rp.chance_line(ax, axis="x")
        seed = (res.get("seeds") or ["?"])[0]
        rp.style(
            ax,
            f"{CELL_SHORT[c]} (seed {seed})",
            "per-person accuracy (%)",
            "persons" if ax is axes[0, 0] else None,
        )
    rp.legend_outside(axes[0, -1], title="model")
    fig.tight_layout()
    return fig


def plots(res: dict[str, Any], out: Path) -> list[str]:
    """Draw kshot.png, groups.png and per_person.png (those the results allow) into ``out``; their names."""
    made = []
    for name, draw in (
        ("kshot.png", kshot_figure),
        ("groups.png", groups_figure),
        ("per_person.png", per_person_figure),
    ):
        fig = draw(res)
        if fig is not None:
            rp.save(fig, Path(out) / name)
            made.append(name)
    return made


# --------------------------------------------------------------------------------------------- output
def html(md: str, dataset: str) -> str:
    """index.html: results.md as a page (the title from its first heading, column tooltips from the glossary)."""
    title, _, body = md.partition("\n") if md.startswith("# ") else (f"# Evaluation: {dataset}", "", md)
    return render_page(title[2:].strip(), markdown_to_html(body, GLOSSARY))


def render_report(res: dict[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write results.md, the PNG plots and index.html for ``res`` into ``out`` (results.json left as it is)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made = plots(res, out)
    md = markdown(res, res.get("command"), plots=made)
    files = {"md": write_text_atomic(out / "results.md", md)}
    files["html"] = write_text_atomic(out / "index.html", html(md, res.get("dataset", "")))
    files.update({p: out / p for p in made})
    return files


def write_report(res: dict[str, Any], out: str | os.PathLike, command: str | None = None) -> dict[str, Path]:
    """Write results.json, results.md, the PNG plots and index.html into ``out`` (each file atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if command:
        res = {**res, "command": command}
    files = {"json": write_text_atomic(out / "results.json", json.dumps(res, indent=1, allow_nan=False))}
    files.update(render_report(res, out))
    return files


def rerender(path: str | os.PathLike) -> dict[str, Path]:
    """Redraw results.md, the plots and index.html of a results folder (or its results.json) from the numbers in
    results.json, which is read and never written: a new report look without rerunning anything."""
    p = Path(path)
    src = p / "results.json" if p.is_dir() else p
    from personalign.errors import DataError

    try:
        res = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(
            "no results.json here", file=str(src), expected="a folder written by personalign eval"
        ) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"not JSON: {exc.msg}", file=str(src), line=exc.lineno) from exc
    if not isinstance(res, dict) or "cells" not in res:
        raise DataError(
            "not an evaluation's results", file=str(src), field="cells", expected="personalign eval results"
        )
    return render_report(res, src.parent)
