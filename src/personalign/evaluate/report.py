"""Results of an evaluation as files people read: results.json, results.md (tables), PNG plots, one HTML page.

Every table carries the collapsed control (every person at the population prior mean) and the seed-paired
personal gain (personalized - collapsed) with its 95% interval.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from personalign.data.files import atomic_write, write_text_atomic

CELL_TITLES = {
    "collaborative": "Seen persons, items others judged (collaborative cell)",
    "unseen_items": "Seen persons, unseen items",
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
    lo, hi = iv["ci95"]
    star = "*" if iv.get("significant") else ""
    if lo is None:
        return f"{100 * iv['mean']:+.1f}"
    return f"{100 * iv['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{star}"


def label(m: str) -> str:
    return LABELS.get(m, m)


def cell_table(res: dict[str, Any], cell: str) -> str:
    rows = res["cells"].get(cell, {})
    if not rows:
        return f"_no test pairs in this cell: {res.get('cell_notes', {}).get(cell, 'see the protocol')}_\n"
    head = (
        "| model | per-person acc | collapsed | personal gain [95% CI] | vs aggregated BT | worst 10% persons "
        "| worst group | group gap | contested | consensus | consensus tax | log-loss | ECE | Brier | pairs / persons |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for m, r in rows.items():
        names = [n for n in r.get("worst_group_names", []) if n]
        # the group most often worst over seeds; ties go to the first in name order (not to set order)
        wname = min(sorted(set(names)), key=lambda n: -names.count(n)) if names else ""
        lines.append(
            f"| {label(m)} | {fmt(r['accuracy'])} | {fmt(r['collapsed_accuracy'])} | {fmt_gain(r['personal_gain'])} "
            f"| {fmt_gain(r.get('gain_vs_bt'))} | {fmt(r['worst_decile'])} | {fmt(r['worst_group'])} {wname} "
            f"| {fmt(r['group_gap'])} | {fmt(r['contested_accuracy'])} | {fmt(r['consensus_accuracy'])} "
            f"| {fmt_gain(r.get('tax_consensus'))} | {fmt(r['log_loss'], 1, 3)} | {fmt(r['ece'], 1, 3)} "
            f"| {fmt(r['brier'], 1, 3)} | {int(r['n_pairs']['mean'] or 0)} / {int(r['n_persons']['mean'] or 0)} |"
        )
    return "\n".join(lines) + "\n"


def kshot_table(res: dict[str, Any]) -> str:
    ks = sorted({int(k) for e in res["kshot"].values() for k in e.get("random", {})})
    if not ks:
        return "_no unseen persons with test pairs_\n"
    head = "| model | mode | collapsed | " + " | ".join(f"k={k}" for k in ks) + f" | gain at k={ks[-1]} |"
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for m, e in res["kshot"].items():
        for mode in ("random", "active"):
            if mode not in e:
                continue
            vals = [fmt(e[mode].get(str(k))) for k in ks]
            last = e[mode].get(str(max(int(k) for k in e[mode])), {})
            lines.append(
                f"| {label(m)} | {mode} | {fmt(e.get('collapsed'))} | "
                + " | ".join(vals)
                + f" | {fmt_gain(last.get('personal_gain'))} |"
            )
    return "\n".join(lines) + "\n"


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
        head = f"| {cell}: predictor | " + " | ".join(keys) + " |"
        lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
        for p, v in preds.items():
            if p == "offset_gain":
                continue
            lines.append(
                f"| {p} | "
                + " | ".join(fmt(v.get(k), 1 if k == "mae" else 100, 3 if k == "mae" else 1) for k in keys)
                + " |"
            )
        g = preds.get("offset_gain")
        if g:
            ((k, iv),) = g.items()
            sc = 1 if k == "mae" else 100
            lines.append(
                f"\ncrowd + offset minus crowd ({k}, seed-paired): {iv['mean'] * sc:+.3g} "
                f"[{(iv['ci95'][0] or 0) * sc:+.3g}, {(iv['ci95'][1] or 0) * sc:+.3g}]"
            )
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def harmless_table(res: dict[str, Any]) -> str:
    h = res.get("harmless") or {}
    if not h:
        return ""
    lines = [
        "| model | hh-rlhf harmless acc (personal weights) | collapsed | tax (collapsed - personal) |",
        "|---|---|---|---|",
    ]
    for m, v in h.items():
        lines.append(f"| {label(m)} | {fmt(v['accuracy'])} | {fmt(v['collapsed'])} | {fmt_gain(v['tax'])} |")
    return "\n".join(lines) + "\n"


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


def markdown(res: dict[str, Any], command: str | None = None) -> str:
    cfg = res["config"]
    s = res["summary"]
    parts = [f"# Evaluation: {res['dataset']}\n"]
    if command:
        parts.append(f"Command:\n\n```\n{command}\n```\n")
    parts.append(
        f"{s.get('persons')} persons, {s.get('items')} items, judgments {s.get('judgments')}. Seeds {res['seeds']}; "
        f"unseen persons {cfg['unseen_user_frac']:.0%}, unseen items {cfg['unseen_item_frac']:.0%}, collaborative "
        f"hold-out {cfg['collab_frac']:.0%} of each person's items (its test pairs hold two held-out items); at most {cfg['max_train_pairs']} training and "
        f"{cfg['max_test_pairs']} test pairs per person and cell"
        + (f"; {cfg['max_persons']} persons sampled" if cfg.get("max_persons") else "")
        + f". Encoder: {res['timing'].get('encoder')}"
        + (
            f", pair features {res['timing']['pair_mode']}"
            if res["timing"].get("pair_mode") not in (None, "auto")
            else ""
        )
        + f". Run time {res['timing']['total_s']:.0f} s "
        f"(features {res['timing']['features_s']:.0f} s).\n"
    )
    parts.append(
        "Numbers are per-person pairwise accuracy in points (mean ± std over seeds); the personal gain is "
        "personalized - collapsed (every person at the population prior mean), paired by seed, with its "
        "95% interval (* = excludes 0). Consensus tax = collapsed - personalized on consensus pairs "
        "(> 0: the personal part costs accuracy where people agree). Item-level baselines (majority, choix) "
        "know nothing about unseen items (they answer 1/2 there); crowd LOO is an oracle that sees other "
        "people's judgments of the test items.\n"
    )
    chosen = res.get("chosen_hyperparameters", {})
    if chosen.get("lowrank"):
        vals = [c.get("l2_basis") for c in chosen["lowrank"] if c]
        parts.append(
            f"Low-rank's personal-basis penalty l2_basis was chosen per seed by log-loss on training items "
            f"held out from the fit (grid {cfg.get('tune_l2_basis')}): {vals}.\n"
        )
    for cell in ("collaborative", "unseen_items"):
        parts.append(f"## {CELL_TITLES[cell]}\n\n{cell_table(res, cell)}")
    parts.append("## Unseen persons: k-shot adaptation, tested on unseen items\n\n" + kshot_table(res))
    pw = pointwise_table(res)
    if pw:
        parts.append("## Pointwise labels / ratings: crowd references\n\n" + pw)
    hm = harmless_table(res)
    if hm:
        parts.append("## Personalization tax on population-wide harmlessness pairs (hh-rlhf)\n\n" + hm)
    parts.append("## Worst and best groups (unseen items)\n\n" + groups_table(res))
    parts.append(
        "Plots: `kshot.png`, `groups.png`, `per_person.png`; everything in `index.html`, numbers in "
        "`results.json`.\n"
    )
    return "\n".join(parts)


def groups_table(res: dict[str, Any], cell: str = "unseen_items") -> str:
    g = res.get("groups", {}).get(cell, {})
    if not g:
        return "_no demographic groups with enough persons_\n"
    models = list(g)
    cols = sorted({c for m in models for c in g[m]})
    lines = [
        "| column | group | " + " | ".join(label(m) for m in models) + " |",
        "|" + "|".join(["---"] * (len(models) + 2)) + "|",
    ]
    for c in cols:
        vals = sorted({v for m in models for v in g[m].get(c, {})})
        for v in vals:
            lines.append(f"| {c} | {v} | " + " | ".join(fmt(g[m].get(c, {}).get(v)) for m in models) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- plots
def plots(res: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    # k-shot curves with bands (95% interval over seeds)
    if res["kshot"]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m, e in res["kshot"].items():
            for mode, ls in (("random", "-"), ("active", "--")):
                if mode not in e:
                    continue
                ks = sorted(int(k) for k in e[mode])
                mu = np.array([e[mode][str(k)]["mean"] for k in ks], float)
                lo = np.array(
                    [
                        e[mode][str(k)]["ci95"][0] if e[mode][str(k)]["ci95"][0] is not None else np.nan
                        for k in ks
                    ],
                    float,
                )
                hi = np.array(
                    [
                        e[mode][str(k)]["ci95"][1] if e[mode][str(k)]["ci95"][1] is not None else np.nan
                        for k in ks
                    ],
                    float,
                )
                xs = np.array(ks, float) + 0.5  # log axis with k = 0
                (line,) = ax.plot(xs, 100 * mu, ls, marker="o", ms=3, label=f"{label(m)} ({mode})")
                ax.fill_between(xs, 100 * lo, 100 * hi, color=line.get_color(), alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("k examples of the new person (+0.5, log scale)")
        ax.set_ylabel("per-person accuracy on unseen items (%)")
        ax.set_title(f"{res['dataset']}: new persons adapted from k examples (95% bands over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_write(out / "kshot.png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        made.append("kshot.png")
    # per-group bars
    g = res.get("groups", {}).get("unseen_items", {})
    models = [m for m in g if m in ("bt", "lowrank", "group", "independent", "mixture")] or list(g)[:3]
    if g and any(g[m] for m in models):
        col = max({c for m in models for c in g[m]}, key=lambda c: len(next(iter(g.values())).get(c, {})))
        vals = sorted({v for m in models for v in g[m].get(col, {})})
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(vals) * max(1, len(models)) / 2), 4))
        w = 0.8 / max(1, len(models))
        for i, m in enumerate(models):
            ys = [g[m].get(col, {}).get(v, {}).get("mean") or np.nan for v in vals]
            es = [g[m].get(col, {}).get(v, {}).get("std") or 0 for v in vals]
            ax.bar(
                np.arange(len(vals)) + i * w,
                100 * np.array(ys, float),
                w,
                yerr=100 * np.array(es, float),
                label=label(m),
                capsize=2,
            )
        ax.set_xticks(np.arange(len(vals)) + 0.4 - w / 2)
        ax.set_xticklabels(vals, rotation=30, ha="right", fontsize=7)
        lo = np.nanmin(
            [100 * (g[m].get(col, {}).get(v, {}).get("mean") or np.nan) for m in models for v in vals]
        )
        ax.set_ylim(max(0, lo - 10), 100)
        ax.set_ylabel("per-person accuracy (%)")
        ax.set_title(f"{res['dataset']}: accuracy by {col} (unseen items, ± std over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_write(out / "groups.png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        made.append("groups.png")
    # per-person accuracy distributions, aggregated vs personalized
    pp = res.get("per_person", {})
    cells = [c for c in ("collaborative", "unseen_items") if c in pp]
    if cells:
        fig, axes = plt.subplots(1, len(cells), figsize=(5.5 * len(cells), 4), squeeze=False)
        for ax, c in zip(axes[0], cells):
            for m in [
                m for m in ("bt", "lowrank", "independent", "group", "mixture", "oracle") if m in pp[c]
            ]:
                ax.hist(
                    100 * np.array(pp[c][m]), bins=20, range=(0, 100), histtype="step", lw=1.5, label=label(m)
                )
            ax.set_title(f"{CELL_TITLES[c]} (seed {res['seeds'][0]})", fontsize=8)
            ax.set_xlabel("per-person accuracy (%)")
            ax.set_ylabel("persons")
            ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_write(out / "per_person.png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        made.append("per_person.png")
    return made


HTML = """<!doctype html><html><head><meta charset="utf-8"><title>personalign evaluation: {{ name }}</title>
<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}pre{background:#f6f6f6;padding:.6em}
</style></head><body>
{{ body }}
{% for p in plots %}<h3>{{ p }}</h3><img src="{{ p }}" alt="{{ p }}">{% endfor %}
<p><a href="results.json">results.json</a> · <a href="results.md">results.md</a></p>
</body></html>"""


def _md_to_html(md: str) -> str:
    """The small markdown subset results.md uses (headings, pipe tables, code blocks, paragraphs)."""
    from html import escape

    out, table, code = [], [], False
    for line in md.splitlines() + [""]:
        if line.startswith("```"):
            out.append("</pre>" if code else "<pre>")
            code = not code
            continue
        if code:
            out.append(escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        if table:
            out.append(
                "<table>"
                + "".join(
                    "<tr>"
                    + "".join(
                        f"<{'th' if i == 0 else 'td'}>{escape(c)}</{'th' if i == 0 else 'td'}>" for c in r
                    )
                    + "</tr>"
                    for i, r in enumerate(table)
                )
                + "</table>"
            )
            table = []
        if line.startswith("#"):
            n = len(line) - len(line.lstrip("#"))
            out.append(f"<h{n}>{escape(line[n:].strip())}</h{n}>")
        elif line.strip():
            out.append(f"<p>{escape(line)}</p>")
    return "\n".join(out)


def write_report(res: dict[str, Any], out: str | os.PathLike, command: str | None = None) -> dict[str, Path]:
    """Write results.json, results.md, the PNG plots and index.html into ``out`` (each file atomically)."""
    import jinja2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if command:
        res = {**res, "command": command}
    write_text_atomic(out / "results.json", json.dumps(res, indent=1, allow_nan=False))
    md = markdown(res, command)
    write_text_atomic(out / "results.md", md)
    made = plots(res, out)
    html = (
        jinja2.Environment(autoescape=False)
        .from_string(HTML)
        .render(name=res["dataset"], body=_md_to_html(md), plots=made)
    )
    write_text_atomic(out / "index.html", html)
    files = {"json": out / "results.json", "md": out / "results.md", "html": out / "index.html"}
    files.update({p: out / p for p in made})
    return files
