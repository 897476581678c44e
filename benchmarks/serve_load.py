"""Load benchmark of the personalization service: throughput and p50/p99 latency of score and feedback.

Loopback only, bounded in requests and time. For each encoder (hashing, MiniLM) it trains a small LowRankBT,
starts ``personalign serve`` in a subprocess (SQLite, WAL, synchronous=FULL), creates persons with keys and some
feedback, warms the features of the candidate texts ("with cached features"), then drives with an async httpx
client:

- score (16 candidates): closed loop at several concurrencies, and open loop at fixed rates (default 100 req/s;
  latency counted from each request's scheduled send time, so a stall cannot hide queued requests);
- feedback (a comparison, committed before the reply): closed loop with many persons and with one hot person.

Prints a table and writes JSON (default benchmarks/results/serve_load.json). Client and server share the machine.

    .venv/bin/python benchmarks/serve_load.py                 # both encoders, ~2-3 min on 2 cores
    .venv/bin/python benchmarks/serve_load.py --encoder hashing --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def pct(lat: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(lat) * 1000.0, q)) if lat else None


def summary(name: str, lat: list[float], errors: int, wall: float, **extra: Any) -> dict[str, Any]:
    return {
        "phase": name,
        "requests": len(lat) + errors,
        "errors": errors,
        "throughput_rps": len(lat) / wall if wall > 0 else 0.0,
        "p50_ms": pct(lat, 50),
        "p90_ms": pct(lat, 90),
        "p99_ms": pct(lat, 99),
        "max_ms": float(max(lat) * 1000.0) if lat else None,
        "wall_s": wall,
        **extra,
    }


async def closed_loop(
    make_request, concurrency: int, n_requests: int, max_seconds: float
) -> tuple[list, int, float]:
    """``concurrency`` workers, each sending its next request when the previous one is answered."""
    lat: list[float] = []
    errors = 0
    counter = iter(range(n_requests))
    t0 = time.perf_counter()
    deadline = t0 + max_seconds

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            if time.perf_counter() > deadline:
                return
            s = time.perf_counter()
            try:
                r = await make_request(i)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                lat.append(time.perf_counter() - s)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, errors, time.perf_counter() - t0


async def open_loop(make_request, rate: float, n_requests: int) -> tuple[list, int, float]:
    """Requests sent on a fixed schedule (``rate`` per second) whatever the answers; latency from the schedule."""
    lat: list[float] = []
    errors = 0
    tasks = []
    t0 = time.perf_counter()

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        try:
            r = await make_request(i)
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            lat.append(time.perf_counter() - scheduled)
        else:
            errors += 1

    for i in range(n_requests):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return lat, errors, time.perf_counter() - t0


def candidate_sets(data: Any, n_sets: int, k: int) -> list[tuple[str, list[str]]]:
    items = data.items
    sets = []
    for prompt, g in items.groupby("prompt", sort=True):
        texts = g["text"].astype(str).tolist()
        if len(texts) >= k:
            sets.append((str(prompt), texts[:k]))
        if len(sets) == n_sets:
            break
    return sets


async def run_encoder(encoder: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from personalign.data.synthetic import generate_population
    from personalign.experiments.models import train_small_model
    from personalign.serve.launch import ServerProcess

    data = generate_population(
        persons=60, comparisons_per_person=30, n_prompts=8, responses_per_prompt=16, seed=0
    )
    t = time.perf_counter()
    model_dir = train_small_model(work / f"model-{encoder}", data=data, encoder=encoder, rank=8)
    console.print(f"[{encoder}] trained LowRankBT(rank=8) in {time.perf_counter() - t:.1f} s")
    sets = candidate_sets(data, 8, args.candidates)
    admin = "bench-" + secrets.token_hex(16)
    db_path = work / f"serve-{encoder}.db"
    env = {"PERSONALIGN_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    phases: list[dict[str, Any]] = []
    with ServerProcess(model_dir, str(db_path), admin, env=env, start_timeout=120) as srv:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=srv.url, timeout=30.0, limits=limits) as c:
            ah = {"Authorization": f"Bearer {admin}"}
            persons = [f"p{i:03d}" for i in range(args.persons)]
            keys = {}
            for p in persons:
                r = await c.post(f"/v1/persons/{p}/keys", headers=ah, json={})
                r.raise_for_status()
                keys[p] = {"Authorization": f"Bearer {r.json()['key']}"}
            rng = np.random.default_rng(0)
            # some history per person so posteriors are personal, and a warm-up of every candidate text
            for p in persons:
                prompt, texts = sets[rng.integers(len(sets))]
                for _ in range(3):
                    a, b = rng.choice(len(texts), 2, replace=False)
                    body = {"kind": "comparison", "prompt": prompt, "chosen": texts[a], "rejected": texts[b]}
                    (await c.post(f"/v1/persons/{p}/feedback", headers=keys[p], json=body)).raise_for_status()
            t = time.perf_counter()
            for prompt, texts in sets:
                r = await c.post(f"/v1/persons/{persons[0]}/score", headers=keys[persons[0]],
                                 json={"prompt": prompt, "candidates": texts})  # fmt: skip
                r.raise_for_status()
            console.print(f"[{encoder}] warmed {len(sets)} candidate sets in {time.perf_counter() - t:.2f} s")

            def score_req(i: int):
                p = persons[i % len(persons)]
                prompt, texts = sets[i % len(sets)]
                return c.post(
                    f"/v1/persons/{p}/score", headers=keys[p], json={"prompt": prompt, "candidates": texts}
                )

            def feedback_req(i: int, hot: bool = False):
                p = persons[0] if hot else persons[i % len(persons)]
                prompt, texts = sets[i % len(sets)]
                a, b = (i * 7) % len(texts), (i * 7 + 5) % len(texts)
                body = {"kind": "comparison", "prompt": prompt, "chosen": texts[a], "rejected": texts[b]}
                return c.post(f"/v1/persons/{p}/feedback", headers=keys[p], json=body)

            n, secs = args.max_requests, args.duration
            for conc in args.concurrency:
                lat, err, wall = await closed_loop(score_req, conc, n, secs)
                phases.append(
                    summary(f"score closed c={conc}", lat, err, wall, kind="score", concurrency=conc)
                )
            for rate in args.rates:
                m = int(min(n, rate * secs))
                lat, err, wall = await open_loop(score_req, rate, m)
                phases.append(summary(f"score open {rate:g}/s", lat, err, wall, kind="score", rate=rate))
            for conc in args.concurrency:
                lat, err, wall = await closed_loop(feedback_req, conc, n, secs)
                phases.append(
                    summary(f"feedback closed c={conc}", lat, err, wall, kind="feedback", concurrency=conc)
                )
            conc = max(args.concurrency)
            lat, err, wall = await closed_loop(lambda i: feedback_req(i, hot=True), conc, n, secs)
            phases.append(
                summary(f"feedback 1 person c={conc}", lat, err, wall, kind="feedback", concurrency=conc)
            )
            rate = args.feedback_rate
            lat, err, wall = await open_loop(feedback_req, rate, int(min(n, rate * secs)))
            phases.append(summary(f"feedback open {rate:g}/s", lat, err, wall, kind="feedback", rate=rate))
            metrics = (await c.get("/v1/metrics", headers=ah)).json()
    for ph in phases:
        ph["encoder"] = encoder
    return {
        "encoder": encoder,
        "model": {"class": "LowRankBT", "rank": 8, "version": metrics["model_version"]},
        "candidates": args.candidates,
        "phases": phases,
        "server_metrics": {"feature_cache": metrics["feature_cache"], "requests": metrics["requests"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", choices=["hashing", "minilm", "both"], default="both")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--persons", type=int, default=50)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument(
        "--rates", type=float, nargs="+", default=[100.0, 200.0], help="open-loop score rates (req/s)"
    )
    ap.add_argument("--feedback-rate", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=8.0, help="max seconds per phase")
    ap.add_argument("--max-requests", type=int, default=1500, help="max requests per phase")
    ap.add_argument("--target-p99-ms", type=float, default=25.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = ap.parse_args()
    encoders = ["hashing", "minilm"] if args.encoder == "both" else [args.encoder]
    results = []
    with tempfile.TemporaryDirectory(prefix="personalign-serve-bench-") as tmp:
        for enc in encoders:
            results.append(asyncio.run(run_encoder(enc, args, Path(tmp))))
    table = Table(
        title=f"personalign serve on loopback ({os.cpu_count()} cores, SQLite, {args.candidates} candidates)"
    )
    for col in ("encoder", "phase", "requests", "errors", "req/s", "p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col in ("encoder", "phase") else "right")
    verdicts = {}
    for res in results:
        for ph in res["phases"]:
            table.add_row(
                ph["encoder"], ph["phase"], str(ph["requests"]), str(ph["errors"]), f"{ph['throughput_rps']:.0f}",
                f"{ph['p50_ms']:.1f}" if ph["p50_ms"] is not None else "-",
                f"{ph['p99_ms']:.1f}" if ph["p99_ms"] is not None else "-",
            )  # fmt: skip
            if ph["kind"] == "score" and ph.get("rate") == 100.0:
                verdicts[res["encoder"]] = ph["p99_ms"]
    console.print(table)
    for enc, p99 in verdicts.items():
        ok = p99 is not None and p99 <= args.target_p99_ms
        console.print(
            f"score p99 at 100 req/s, {enc} features cached: {p99:.1f} ms "
            f"({'meets' if ok else 'MISSES'} the {args.target_p99_ms:g} ms target)"
        )
    out = {
        "benchmark": "serve_load",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "load_average_at_end": os.getloadavg(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "score_p99_ms_at_100rps": verdicts,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(out, indent=2))
    os.replace(tmp_out, args.out)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
