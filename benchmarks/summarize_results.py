"""Headline numbers of every results/<dataset>/results.json (one table; also written as results/summary.json).

    python benchmarks/summarize_results.py [--write] [--readme]

``--rerun`` prints the tables of the rerun with the calibrated prior and the hybrid (folders that have it).
``--readme`` prints the pairwise tables of the README's Evaluation section (low-rank; the latent-class mixture) from
the same files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("PERSONALIGN_RESULTS", Path(__file__).resolve().parents[1] / "results"))


def pt(iv):
    return (
        "-"
        if not iv or iv.get("mean") is None
        else f"{100 * iv['mean']:.1f}±{100 * (iv.get('std') or 0):.1f}"
    )


def gain(iv):
    if not iv or iv.get("mean") is None or iv["ci95"][0] is None:
        return "-"
    return f"{100 * iv['mean']:+.1f} [{100 * iv['ci95'][0]:+.1f},{100 * iv['ci95'][1]:+.1f}]"


README_ROWS = {
    "toxicity": "toxicity",
    "popquorn": "POPQUORN",
    "csc": "CSC",
    "multipico": "MultiPICo (300 persons)",
    "polis-vtaiwan.uberx": "Polis vTaiwan (500 persons)",
    "polis-brexit-consensus": "Polis Brexit consensus (500)",
    "polis-15-per-hour-seattle": "Polis $15/hour Seattle (500)",
    "convabuse": "ConvAbuse (8 annotators)",
    "synthetic-alpha0.01": "synthetic alpha 0.01",
    "synthetic-alpha0.1": "synthetic alpha 0.1",
    "synthetic-alpha0.1-attributes": "synthetic alpha 0.1, true attributes as features",
    "synthetic-alpha0.1-sentences": "synthetic alpha 0.1, MiniLM + sentence pooling",
    "synthetic-alpha1": "synthetic alpha 1",
    "synthetic-alpha10": "synthetic alpha 10",
    "synthetic-alpha10-attributes": "synthetic alpha 10, true attributes as features",
}


def _acc(iv) -> str:
    return f"{100 * iv['mean']:.1f} ± {100 * (iv.get('std') or 0):.1f}"


def _gain(iv) -> str:
    if not iv or iv["ci95"][0] is None:
        return "-"
    lo, hi = iv["ci95"]
    return f"{100 * iv['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _cells():
    """(README label, unseen_items cell, collaborative cell) of every folder that has results."""
    for folder, label in README_ROWS.items():
        f = ROOT / folder / "results.json"
        if f.is_file():
            c = json.loads(f.read_text())["cells"]
            yield label, c["unseen_items"], c["collaborative"]


def readme_table() -> str:
    lines = [
        "| dataset | aggregated BT, unseen items | low-rank, unseen items | gain | crowd oracle | true reward "
        "| aggregated BT, collaborative | low-rank, collaborative | gain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, u, k in _cells():
        crowd = _acc(u["crowd"]["accuracy"]) if "crowd" in u else "-"
        oracle = _acc(u["oracle"]["accuracy"]) if "oracle" in u else "-"
        lines.append(
            f"| {label} | {_acc(u['bt']['accuracy'])} | {_acc(u['lowrank']['accuracy'])} "
            f"| {_gain(u['lowrank']['personal_gain'])} | {crowd} | {oracle} | {_acc(k['bt']['accuracy'])} "
            f"| {_acc(k['lowrank']['accuracy'])} | {_gain(k['lowrank']['personal_gain'])} |"
        )
    return "\n".join(lines)


def mixture_table() -> str:
    """The latent-class mixture beside aggregated BT (rows with a mixture only)."""
    lines = [
        "| dataset | mixture, unseen items | gain | vs aggregated BT | mixture, collaborative | gain "
        "| vs aggregated BT |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, cu, ck in _cells():
        u, k = cu.get("mixture"), ck.get("mixture")
        if u is None or k is None:
            continue
        lines.append(
            f"| {label} | {_acc(u['accuracy'])} | {_gain(u['personal_gain'])} | {_gain(u.get('gain_vs_bt'))} "
            f"| {_acc(k['accuracy'])} | {_gain(k['personal_gain'])} | {_gain(k.get('gain_vs_bt'))} |"
        )
    return "\n".join(lines)


def _paired(a, b) -> str:
    """Per-seed a - b with a 95% t interval (a and b: {"values": [...]} over the same seeds)."""
    import numpy as np
    from scipy.stats import t

    d = 100 * (np.asarray(a["values"], float) - np.asarray(b["values"], float))
    if len(d) < 2:
        return "-"
    h = t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    star = "*" if (d.mean() - h > 0 or d.mean() + h < 0) else ""
    return f"{d.mean():+.1f} [{d.mean() - h:+.1f}, {d.mean() + h:+.1f}]{star}"


def _commit(folder: Path) -> str:
    """The short commit of the code that wrote a results folder (its manifest), or '?'."""
    m = folder / "manifest.json"
    if not m.is_file():
        return "?"
    git = json.loads(m.read_text()).get("git", {}).get("personalign") or {}
    return (git.get("commit") or "?")[:7] + ("+" if git.get("dirty") else "")


def _cell_gain(c: dict, model: str) -> str:
    """The model's gain over its collapsed control in one cell, ``*`` when its interval excludes 0."""
    if model not in c:
        return "-"
    g = c[model].get("personal_gain") or {}
    return _gain(g) + ("*" if g.get("significant") else "")


def _kshot_end(r: dict, model: str) -> str:
    """A model's k-shot curve: accuracy at k = 0 -> 50 and the paired change."""
    ks = r.get("kshot", {}).get(model, {}).get("random", {})
    if "0" not in ks or "50" not in ks:
        return "-"
    return f"{100 * ks['0']['mean']:.1f} -> {100 * ks['50']['mean']:.1f}, {_paired(ks['50'], ks['0'])}"


def rerun_table() -> str:
    """The rerun with the calibrated prior and the hybrid (folders whose results have the hybrid): per cell the
    aggregated baseline, the crowd oracle, low-rank and the hybrid with their gains over their collapsed controls,
    the hybrid against the crowd, against the per-item majority (the crowd of the training data alone) and against
    aggregated BT, and in the collaborative cell how many other judges per test item the crowd oracle and the
    training data hold; then each k-shot curve's change from k = 0 to 50. ``*``: the 95% interval excludes 0."""
    lines = [
        "| dataset | cell | aggregated BT | crowd | majority | svd | low-rank | gain | hybrid | gain | hybrid - crowd "
        "| hybrid - majority | hybrid - BT | other judges per item, crowd / training |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    kshot = ["| dataset | low-rank, k = 0 -> 50 | hybrid, k = 0 -> 50 |", "|---|---|---|"]
    for folder, label in README_ROWS.items():
        f = ROOT / folder / "results.json"
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        if "hybrid" not in r["cells"].get("collaborative", {}):
            continue
        label = f"{label} ({_commit(f.parent)})"
        for cell in ("collaborative", "unseen_items"):
            c = r["cells"].get(cell, {})
            if "hybrid" not in c:
                continue
            acc = {m: (_acc(v["accuracy"]) if m in c else "-") for m, v in c.items()}
            crowd = _paired(c["hybrid"]["accuracy"], c["crowd"]["accuracy"]) if "crowd" in c else "-"
            collab = cell == "collaborative"
            major = (
                _paired(c["hybrid"]["accuracy"], c["majority"]["accuracy"])
                if collab and "majority" in c
                else "-"
            )
            reach = r.get("crowd_reach") if collab else None
            judges = (
                f"{reach['crowd_oracle']['mean']:.1f} / {reach['training']['mean']:.1f}" if reach else "-"
            )
            lines.append(
                f"| {label} | {cell.replace('_', ' ')} | {acc.get('bt', '-')} | {acc.get('crowd', '-')} "
                f"| {acc.get('majority', '-') if collab else '-'} "
                f"| {acc.get('svd', '-')} | {acc.get('lowrank', '-')} | {_cell_gain(c, 'lowrank')} | {acc['hybrid']} "
                f"| {_cell_gain(c, 'hybrid')} | {crowd} | {major} "
                f"| {_paired(c['hybrid']['accuracy'], c['bt']['accuracy'])} | {judges} |"
            )
        kshot.append(f"| {label} | {_kshot_end(r, 'lowrank')} | {_kshot_end(r, 'hybrid')} |")
    return "\n".join(lines) + "\n\n" + "\n".join(kshot)


def main() -> None:
    if "--rerun" in sys.argv:
        print(rerun_table())
        return
    if "--readme" in sys.argv:
        print(readme_table())
        print()
        print(mixture_table())
        return
    out = {}
    for f in sorted(ROOT.glob("*/results.json")):
        r = json.loads(f.read_text())
        if "timing" not in r or "cells" not in r:  # another study's folder (pointwise, shared_part)
            continue
        row = {"time_s": r["timing"]["total_s"]}
        print(f"\n## {f.parent.name}  ({r['timing']['total_s']:.0f} s, seeds {len(r['seeds'])})")
        for cell in ("collaborative", "unseen_items"):
            for m, v in r["cells"].get(cell, {}).items():
                print(
                    f"{cell:14s} {m:12s} acc {pt(v['accuracy']):10s} collapsed {pt(v['collapsed_accuracy']):10s} "
                    f"gain {gain(v['personal_gain']):22s} vsBT {gain(v.get('gain_vs_bt')):22s} "
                    f"worst10% {pt(v['worst_decile'])} worstgrp {pt(v['worst_group'])}"
                )
                row[f"{cell}/{m}"] = {"acc": v["accuracy"]["mean"], "gain": v["personal_gain"]["mean"]}
        for m, e in r["kshot"].items():
            if "random" in e and len(e["random"]) > 1:
                print(f"kshot {m:10s} " + " ".join(f"k={k}:{pt(v)}" for k, v in e["random"].items()))
            if "active" in e:
                print(f"kshot {m:10s} active " + " ".join(f"k={k}:{pt(v)}" for k, v in e["active"].items()))
        for cell, preds in r.get("pointwise", {}).items():
            print(
                f"pointwise {cell}: "
                + " ".join(
                    f"{p}:{pt(v.get('label_accuracy'))}" for p, v in preds.items() if p != "offset_gain"
                ),
                "offset gain",
                gain(preds.get("offset_gain", {}).get("label_accuracy")),
            )
        out[f.parent.name] = row
    if "--write" in sys.argv:
        (ROOT / "summary.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
