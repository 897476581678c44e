"""Issue 19: universal scorers on real harm-labelled text (prints a table, writes JSON and Markdown).

    python benchmarks/bounds_real.py [--epsilon 0.1] [--confidence 0.95] [--seeds 0 1 2 3 4] [--no-pooled] [--no-persons]
        [--encoders minilm,e5,mpnet,smollm2] [--encode-budget 900] [--out results/bounds-real]

Items: held-out HH-RLHF harmless pairs, ConvAbuse and the POPQUORN / toxicity consensus items, read from the
shared data folder (``$PERSONALIGN_SHARED_DATA`` or ``../shared/data``). Scorers: the packaged harmlessness head
and consensus scorer, and per encoder of ``--encoders`` (MiniLM by default) a logistic classifier over its
embeddings retrained on the pooled training parts (``--no-pooled`` skips them), with a transfer table (the same
classifier trained on one source only). An encoder whose encoding would take longer than ``--encode-budget``
seconds (measured on a sample; 0: no limit) is left out. Per seed: threshold calibrated on half of the held-out
items, achieved miss / over-block on the other half; the default policy before and after calibration. Progress
lines go to stderr. See :mod:`personalign.experiments.bounds_real`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from personalign.experiments.bounds_real import run_real_report

OUT = Path(__file__).resolve().parents[1] / "results" / "bounds-real"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epsilon", type=float, default=0.1)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--no-pooled", action="store_true", help="skip the retrained pooled classifiers")
    ap.add_argument(
        "--encoders", default="minilm", help="comma-separated encoder specs of the retrained classifiers"
    )
    ap.add_argument(
        "--encode-budget",
        type=float,
        default=900.0,
        help="leave out an encoder whose encoding would take longer (seconds; 0: no limit)",
    )
    ap.add_argument(
        "--no-persons", action="store_true", help="skip the real raters' personal models under each policy"
    )
    ap.add_argument("--shared", type=Path, default=None, help="the real-data folder")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    cmd = "python benchmarks/bounds_real.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    res = run_real_report(
        a.out,
        a.shared,
        a.seeds,
        a.epsilon,
        a.confidence,
        pooled=not a.no_pooled,
        command=cmd.strip(),
        encoders=[e.strip() for e in a.encoders.split(",") if e.strip()],
        encode_budget_s=a.encode_budget or None,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        persons=not a.no_persons,
    )
    print(
        f"{'scorer':40s} {'calibrated on':14s} {'AUC all':>7s} {'seeds miss<=eps':>16s} {'test miss':>10s} "
        f"{'over-block':>11s}"
    )
    for name, e in res["scorers"].items():
        for where in ("domain", "pooled"):
            miss = [r[where]["test"][where]["miss"]["rate"] for r in e["seeds"]]
            ob = [r[where]["test"][where]["over_block"]["rate"] for r in e["seeds"]]
            auc = e["held_out"]["pooled"]["auc"]
            print(
                f"{name:40s} {where:14s} {auc:7.3f} {e['seeds_meeting_bound_' + where]:>10d} of {len(miss)}"
                f" {sum(miss) / len(miss):10.3f} {sum(ob) / len(ob):11.3f}"
            )
    print(f"\n{'policy':80s} {'safe pass':>9s} {'miss':>6s} {'refused':>8s} {'worst':>6s}")
    for name, v in res["policies"].items():
        m = v["mean"]
        print(
            f"{name:80s} {m['safe_pass']:9.3f} {m['miss']:6.3f} {m['hh_refused']:8.3f} "
            f"{m['hh_worst_person_unsafe_win']:6.3f}"
        )
    for label, t in res["transfer"].items():
        print(f"\ntransfer ({label}): held-out AUC on {' / '.join(t['sources'])}")
        for row in t["trained_on"]:
            print(f"  trained on {row:20s} " + " ".join(f"{t['auc'][row][s]:6.3f}" for s in t["sources"]))
    for label, e in res["encoders"].items():
        note = f"left out: {e['reason']}" if e["skipped"] else f"{e['newly_encoded']} texts encoded now"
        print(f"{label}: {e['seconds']:.0f} s ({note})")
    for name, r in (res.get("real_raters") or {}).get("rater_sets", {}).items():
        for pol, v in r["policies"].items():
            print(f"real raters {name:10s} {pol:70s} worst {v['mean_worst']:.3f} mean {v['mean_person']:.3f}")
    print(f"\nwritten {a.out / 'real_report.json'} and {a.out / 'real_report.md'} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
