"""Headline numbers of every results/<dataset>/results.json (one table; also written as results/summary.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "results"


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


def main() -> None:
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
