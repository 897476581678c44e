"""Training and serving speed of LowRankBT with precomputed 384-d features (prints a table, writes JSON).

    python benchmarks/train_speed.py [--sizes 100000 1000000] [--rank 16] [--adam-steps 200] [--skip-choix]

Data: a planted low-rank population (random unit-norm 384-d item features, ``r_u = (mu + B w_u)^T x``, K = 16,
Bradley-Terry labels), 40 comparisons per person over 2,000 items; a held-out 10% of each size gives test accuracy.
Timed (the fit only; data generation and feature loading excluded):

- LowRankBT.fit_arrays (L-BFGS on the MAP objective with early stopping on the held-out 10%, then empirical Bayes);
- choix.ilsr_pairwise on the same comparisons as item indices (item-level Bradley-Terry: one score per item, no
  persons - an independent BT implementation, so the ratio is about the algorithm's cost, not the same model);
- a plain full-batch Adam loop in PyTorch in the style of the public LoRe code: explicit per-comparison feature
  differences ``x_c - x_r`` (n x d), parameters mu, B, W, ``--adam-steps`` steps at lr 0.01, no early stopping.

Serving: ``adapt`` latency per person (k = 10 comparisons, K = 16; median and p99 over 1,000 persons) for the
array path (:meth:`adapt_arrays`, features cached) and the DataFrame path (:meth:`adapt`, featurizer lookup
included); scoring throughput from cached features; bytes per person with covariance (float32 mean + upper
triangle of the covariance + count). The machine's load average is recorded: other jobs slow every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from personalign.features import PairFeaturizer, PrecomputedEncoder
from personalign.models import HybridBT, LowRankBT, TrainArrays

console = Console(width=160)
TARGETS = {"train_1M_s": 60.0, "adapt_median_ms": 2.0, "scores_per_s": 1e6, "bytes_per_person": 2048}


def planted(n: int, d: int, K: int, n_items: int, per_person: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_items, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    mu = rng.normal(size=d) * 0.2
    B = rng.normal(size=(d, K)) * (3.0 / np.sqrt(d * K) * np.sqrt(d))  # personal margins of order 1
    U = max(1, n // per_person)
    W = rng.normal(size=(U, K))
    unit = np.repeat(np.arange(U), per_person)[:n]
    a = rng.integers(n_items, size=n)
    b = (a + rng.integers(1, n_items, size=n)) % n_items
    z = (X[a] - X[b]) @ mu + np.einsum("nk,nk->n", (X[a] - X[b]) @ B, W[unit])
    win = rng.random(n) < 1 / (1 + np.exp(-z))
    ci, ri = np.where(win, a, b).astype(np.int64), np.where(win, b, a).astype(np.int64)
    test = rng.random(n) < 0.1
    # early stopping uses its own 10% of the training rows, never the test rows
    val = ~test & (rng.random(n) < 0.1)
    oracle = float(((z > 0) == win)[test].mean())  # the true reward under the same label noise
    return {
        "X": X,
        "ci": ci,
        "ri": ri,
        "unit": unit.astype(np.int64),
        "U": U,
        "test": test,
        "val": val,
        "z": z,
        "oracle_acc": oracle,
    }


def arrays(P: dict, mask: np.ndarray) -> TrainArrays:
    m = int(mask.sum())
    return TrainArrays(
        P["X"], P["ci"][mask], P["ri"][mask], P["unit"][mask], np.ones(m, np.float32), np.ones(m, np.float32)
    )


def time_lowrank(P: dict, K: int, seed: int) -> dict:
    tr, va, te = arrays(P, ~P["test"] & ~P["val"]), arrays(P, P["val"]), arrays(P, P["test"])
    model = LowRankBT(rank=K, random_state=seed)
    model.units_ = [str(i) for i in range(P["U"])]
    model.user_units_ = {u: i for i, u in enumerate(model.units_)}
    t = time.perf_counter()
    model.fit_arrays(tr, va)
    sec = time.perf_counter() - t
    S, G = model.project(P["X"])
    z = S[te.ci] - S[te.ri] + np.einsum("nk,nk->n", G[te.ci] - G[te.ri], model.unit_means_[te.unit])
    return {
        "seconds": sec,
        "test_acc": float((z > 0).mean()),
        "rounds": len(model.history_["train_loss"]),
        "em_rounds": int(getattr(model, "em_rounds_", 0)),
        "model": model,
    }


def time_hybrid(P: dict, K: int, seed: int) -> dict:
    """HybridBT.fit_arrays on the same rows: the item table is the 2,000 items, its row the appended column."""
    n_items = P["X"].shape[0]
    Xa = np.concatenate([P["X"], np.arange(n_items, dtype=np.float32)[:, None]], 1)
    Q = {**P, "X": Xa}
    tr, va, te = arrays(Q, ~P["test"] & ~P["val"]), arrays(Q, P["val"]), arrays(Q, P["test"])
    model = HybridBT(rank=K, random_state=seed)
    model.item_index_ = {str(i): i for i in range(n_items)}
    model.units_ = [str(i) for i in range(P["U"])]
    model.user_units_ = {u: i for i, u in enumerate(model.units_)}
    t = time.perf_counter()
    model.fit_arrays(tr, va)
    sec = time.perf_counter() - t
    S, G = model.project(Xa)
    z = S[te.ci] - S[te.ri] + np.einsum("nk,nk->n", G[te.ci] - G[te.ri], model.unit_means_[te.unit])
    return {"seconds": sec, "test_acc": float((z > 0).mean()), "rounds": len(model.history_["train_loss"])}


def time_choix(P: dict, n_items: int) -> dict:
    import choix

    tr = ~P["test"]
    pairs = list(zip(P["ci"][tr].tolist(), P["ri"][tr].tolist()))
    t = time.perf_counter()
    params = choix.ilsr_pairwise(n_items, pairs, alpha=0.01, max_iter=200, tol=1e-6)
    sec = time.perf_counter() - t
    te = P["test"]
    acc = float((params[P["ci"][te]] > params[P["ri"][te]]).mean())
    return {"seconds": sec, "test_acc": acc}


def time_adam(P: dict, K: int, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    tr, te = ~P["test"], P["test"]
    X = torch.from_numpy(P["X"])
    d = X.shape[1]
    t = time.perf_counter()
    Dx = (
        X[torch.from_numpy(P["ci"][tr])] - X[torch.from_numpy(P["ri"][tr])]
    )  # explicit per-comparison differences
    u = torch.from_numpy(P["unit"][tr])
    y = torch.ones(len(u))
    mu = torch.zeros(d, requires_grad=True)
    B = (torch.randn(d, K) * 0.1).requires_grad_(True)
    W = (torch.randn(P["U"], K) * 0.01).requires_grad_(True)
    opt = torch.optim.Adam([mu, B, W], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        z = Dx @ mu + ((Dx @ B) * W[u]).sum(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y) + 0.5 * (W**2).sum() / len(u)
        loss.backward()
        opt.step()
    sec = time.perf_counter() - t
    with torch.no_grad():
        Dt = X[torch.from_numpy(P["ci"][te])] - X[torch.from_numpy(P["ri"][te])]
        zt = Dt @ mu + ((Dt @ B) * W[torch.from_numpy(P["unit"][te])]).sum(1)
    return {
        "seconds": sec,
        "test_acc": float((zt > 0).float().mean()),
        "steps": steps,
        "final_loss": float(loss.detach()),
    }


def serving(model: LowRankBT, P: dict, K: int, seed: int, n_persons: int = 1000) -> dict:
    rng = np.random.default_rng(seed)
    X = P["X"]
    S, G = model.project(X)
    prior = model.prior()
    lat = []
    w_true = rng.normal(size=K)
    for _ in range(n_persons):
        a = rng.integers(len(X), size=10)
        b = (a + rng.integers(1, len(X), size=10)) % len(X)
        D, av = G[a] - G[b], S[a] - S[b]
        y = (rng.random(10) < 1 / (1 + np.exp(-(av + D @ w_true)))).astype(float)
        t = time.perf_counter()
        model.adapt_arrays(D, av, y, np.ones(10), prior)
        lat.append(time.perf_counter() - t)
    lat = np.asarray(lat) * 1e3
    # the DataFrame path: adapt(examples) with a precomputed-feature featurizer (lookups + projection included)
    texts = [f"item {i}" for i in range(len(X))]
    model.featurizer = PairFeaturizer(PrecomputedEncoder((texts, X)), mode="response")
    lat_df = []
    for _ in range(200):
        a = rng.integers(len(X), size=10)
        b = (a + rng.integers(1, len(X), size=10)) % len(X)
        ex = pd.DataFrame(
            {
                "user_id": "new",
                "prompt": "",
                "chosen": [texts[i] for i in a],
                "rejected": [texts[i] for i in b],
            }
        )
        t = time.perf_counter()
        model.adapt(ex)
        lat_df.append(time.perf_counter() - t)
    lat_df = np.asarray(lat_df) * 1e3
    # scoring from cached features: 1M (item, person) rows
    n = 1_000_000
    rows = rng.integers(len(X), size=n)
    Xc = X[rows].astype(np.float32)  # the cached feature rows
    W = model.unit_means_.astype(np.float32)
    users = rng.integers(len(W), size=n)
    mu32, B32 = model.mu_.astype(np.float32), model.B_.astype(np.float32)
    best_many, best_one = np.inf, np.inf
    for _ in range(3):
        t = time.perf_counter()
        r = Xc @ mu32 + np.einsum("nk,nk->n", Xc @ B32, W[users])  # a different person on every row
        best_many = min(best_many, time.perf_counter() - t)
        t = time.perf_counter()
        v = mu32 + B32 @ W[0]
        r1 = Xc @ v  # one person, many candidates (best-of-N, ranking)
        best_one = min(best_one, time.perf_counter() - t)
    assert r.shape == r1.shape == (n,)
    post = model.posterior(model.units_[0])
    return {
        "adapt_ms_median": float(np.median(lat)),
        "adapt_ms_p99": float(np.percentile(lat, 99)),
        "adapt_df_ms_median": float(np.median(lat_df)),
        "adapt_df_ms_p99": float(np.percentile(lat_df, 99)),
        "scores_per_s_many_persons": n / best_many,
        "scores_per_s_one_person": n / best_one,
        "bytes_per_person": post.nbytes,
        "bytes_per_person_json": len(json.dumps(post.to_dict())),
        "K": K,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="LowRankBT training/serving speed")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--adam-steps", type=int, default=200)
    ap.add_argument("--skip-choix", action="store_true")
    ap.add_argument("--skip-adam", action="store_true")
    ap.add_argument("--skip-hybrid", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    res: dict = {
        "config": vars(args),
        "torch_threads": torch.get_num_threads(),
        "load_before": os.getloadavg(),
        "sizes": {},
    }
    model = None
    for n in args.sizes:
        P = planted(n, args.dim, args.rank, args.items, 40, args.seed)
        row: dict = {"persons": P["U"], "oracle_acc": P["oracle_acc"]}
        console.print(f"[bold]{n:,} comparisons[/]: LowRankBT ...")
        lr = time_lowrank(P, args.rank, args.seed)
        model = lr.pop("model")
        row["lowrank"] = lr
        if not args.skip_hybrid:
            console.print("  HybridBT ...")
            row["hybrid"] = time_hybrid(P, args.rank, args.seed)
        if not args.skip_choix:
            console.print("  choix.ilsr_pairwise ...")
            row["choix"] = time_choix(P, args.items)
        if not args.skip_adam:
            console.print(f"  Adam x {args.adam_steps} ...")
            row["adam"] = time_adam(P, args.rank, args.adam_steps, args.seed)
        row["load"] = os.getloadavg()
        res["sizes"][n] = row
        del P
    res["serving"] = serving(
        model, planted(10_000, args.dim, args.rank, args.items, 40, args.seed + 1), args.rank, args.seed
    )
    res["load_after"] = os.getloadavg()

    t = Table(
        title=f"Training time (fit only), 384-d features, K = {args.rank}; load avg {res['load_before'][0]:.1f}"
    )
    for c in (
        "comparisons",
        "oracle acc",
        "LowRankBT s",
        "rounds (EM)",
        "acc",
        "choix s",
        "acc",
        "choix / ours",
        "Adam s",
        "acc",
        "Adam / ours",
        "HybridBT s",
        "acc",
        "hybrid / ours",
    ):
        t.add_column(c)
    for n, row in res["sizes"].items():
        lr, ch, ad, hy = row["lowrank"], row.get("choix"), row.get("adam"), row.get("hybrid")
        t.add_row(
            f"{n:,}",
            f"{row['oracle_acc']:.3f}",
            f"{lr['seconds']:.1f}",
            f"{lr['rounds']} ({lr['em_rounds']})",
            f"{lr['test_acc']:.3f}",
            f"{ch['seconds']:.1f}" if ch else "-",
            f"{ch['test_acc']:.3f}" if ch else "-",
            f"{ch['seconds'] / lr['seconds']:.2f}" if ch else "-",
            f"{ad['seconds']:.1f}" if ad else "-",
            f"{ad['test_acc']:.3f}" if ad else "-",
            f"{ad['seconds'] / lr['seconds']:.2f}" if ad else "-",
            f"{hy['seconds']:.1f}" if hy else "-",
            f"{hy['test_acc']:.3f}" if hy else "-",
            f"{hy['seconds'] / lr['seconds']:.2f}" if hy else "-",
        )
    console.print(t)
    s = res["serving"]
    t = Table(title="Serving")
    t.add_column("figure")
    t.add_column("value")
    t.add_column("target")
    t.add_row(
        "adapt median / p99 (ms, k=10, K=16, arrays)",
        f"{s['adapt_ms_median']:.3f} / {s['adapt_ms_p99']:.3f}",
        "<= 2",
    )
    t.add_row(
        "adapt median / p99 (ms, DataFrame path)",
        f"{s['adapt_df_ms_median']:.3f} / {s['adapt_df_ms_p99']:.3f}",
        "",
    )
    t.add_row("scores/s, a different person per row", f"{s['scores_per_s_many_persons']:.3g}", ">= 1e6")
    t.add_row("scores/s, one person", f"{s['scores_per_s_one_person']:.3g}", ">= 1e6")
    t.add_row("bytes per person (float32, with covariance)", str(s["bytes_per_person"]), "<= 2048")
    console.print(t)
    big = res["sizes"].get(1_000_000)
    res["targets"] = {
        "train_1M_s<=60": None if big is None else big["lowrank"]["seconds"] <= TARGETS["train_1M_s"],
        "adapt_median_ms<=2": s["adapt_ms_median"] <= TARGETS["adapt_median_ms"],
        "scores_per_s>=1e6": s["scores_per_s_many_persons"] >= TARGETS["scores_per_s"],
        "bytes_per_person<=2048": s["bytes_per_person"] <= TARGETS["bytes_per_person"],
    }
    console.print("targets: " + ", ".join(f"{k}: {v}" for k, v in res["targets"].items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as fh:
        json.dump(res, fh, indent=2, default=float)
    os.replace(fh.name, out / "train_speed.json")
    console.print(f"wrote {out / 'train_speed.json'}")
    return res


if __name__ == "__main__":
    main()
