"""Benchmark: reading the real datasets with their adapters, and the canonical Parquet round trip.

Targets (2 CPU cores): POPQUORN and toxicity < 3 s, one Polis conversation < 5 s.
Run: ``python benchmarks/bench_data_io.py [--repeat 3] [--out results/bench_data_io.json]``.
Prints a table; writes JSON (median and min seconds per dataset, with the counts read).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from personalign.data import read_data, write_data

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PERSONALIGN_SHARED_DATA", ROOT.parent / "shared" / "data"))
CASES = [
    ("popquorn", "popquorn/offensiveness/raw_data.csv", 3.0),
    ("toxicity", "toxicity-perspective-prolific", 3.0),
    ("lewidi MP", "lewidi2025-multipico-csc/MP", None),
    ("lewidi CSC", "lewidi2025-multipico-csc/CSC", None),
    ("polis vtaiwan.uberx", "polis-opendata/vtaiwan.uberx", 5.0),
    ("polis bowling-green (largest)", "polis-opendata/american-assembly.bowling-green", 5.0),
    ("polis all 17 conversations", "polis-opendata", None),
    ("hh-rlhf harmless test", "hh-rlhf-harmless-test/test.jsonl.gz", None),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_data_io.json")
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"real data folder {DATA} is absent")
    rows = []
    for label, rel, target in CASES:
        path = DATA / rel
        if not path.exists():
            continue
        times, data = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            data = read_data(path)
            times.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_data(data, Path(tmp) / "d.parquet")
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            read_data(Path(tmp) / "d.parquet")
            t_read = time.perf_counter() - t0
        rows.append(
            {
                "dataset": label,
                "path": rel,
                "persons": data.n_users,
                "items": len(data.items),
                "judgments": len(data),
                "read_median_s": statistics.median(times),
                "read_min_s": min(times),
                "parquet_write_s": t_write,
                "parquet_read_s": t_read,
                "target_s": target,
                "meets_target": None if target is None else statistics.median(times) < target,
            }
        )
    table = Table(title=f"read_data on real files (median of {args.repeat}, {os.cpu_count()} CPUs)")
    for col in ("dataset", "persons", "items", "judgments", "read s", "target s", "parquet write/read s"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for r in rows:
        table.add_row(
            r["dataset"],
            f"{r['persons']:,}",
            f"{r['items']:,}",
            f"{r['judgments']:,}",
            f"{r['read_median_s']:.2f}",
            "-" if r["target_s"] is None else f"{r['target_s']:.0f}",
            f"{r['parquet_write_s']:.2f} / {r['parquet_read_s']:.2f}",
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"repeat": args.repeat, "cpus": os.cpu_count(), "rows": rows}, indent=2))
    os.replace(tmp, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
