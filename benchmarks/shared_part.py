"""How much of the gap to the crowd oracle does a stronger shared (population) reward close? (issue 9, item 5)

Task (the same for every row): held-out ITEMS, persons seen. Per seed, 20% of the items are held out
(``personalign.data.split`` with ``unseen_user_frac=0``, ``unit="item"``); the persons' ratings of the other
items give per-person training pairs (two items a person rated differently, at most 200 per person), their
ratings of the held-out items give test pairs (at most 100 per person). Metric: per-person pairwise accuracy on
those test pairs, averaged over persons (``personalign.evaluate.metrics.mean_person_accuracy``).

Rows (all population-level: one reward for everybody, so the shared part is what is measured):
  (a) baseline      AggregatedBT over frozen MiniLM features, PairFeaturizer mode "auto"
  (b) sentences     AggregatedBT over PairFeaturizer mode "sentences" (adds a sum-pool of sentence vectors)
  (c) mlp           MLPLowRankBT with rank 0 (aggregated use: a linear path plus a one-hidden-layer residual)
  (d) finetuned     AggregatedBT over the features of a MiniLM whose top 2 layers were fine-tuned by LoRA on the
                    training pairs (personalign.features.finetune: 16 pairs a step, at most --ft-steps
                    steps or --ft-seconds, early-stopped on held-out texts); (d') its own linear head
  crowd             the held-out item's leave-one-out crowd from OTHER persons' ratings of it
                    (personalign.evaluate.baselines.CrowdOracle). Not fair to the text models: it sees other
                    persons' labels of the test items, the text models see none of them.

Regularization: l2_mean of (a) and (b) and l2_mlp of (c) are chosen per seed on an inner split of the training
items (80/20); (c) and (d) reuse (a)'s l2_mean. Share of the gap closed by a row:
``(row - baseline) / (crowd - baseline)``, per seed and of the means; negative when the row is worse.

    python benchmarks/shared_part.py --datasets popquorn,toxicity --seeds 3 --out results/shared_part
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.data import PreferenceData, read_data, split
from personalign.evaluate import metrics as M
from personalign.evaluate.baselines import CrowdOracle
from personalign.evaluate.protocol import all_texts, judgment_pairs, make_featurizer
from personalign.features import PairFeaturizer
from personalign.features.finetune import EncoderFineTuner, FrozenPrefix
from personalign.models import AggregatedBT, MLPLowRankBT

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = {
    "popquorn": (DATA / "popquorn" / "offensiveness", "popquorn"),
    "toxicity": (DATA / "toxicity-perspective-prolific", "toxicity"),
    "csc": (DATA / "lewidi2025-multipico-csc" / "CSC", "lewidi"),
    "mp": (DATA / "lewidi2025-multipico-csc" / "MP", "lewidi"),
}
ROWS = ("baseline", "sentences", "mlp", "finetuned", "finetuned_head", "crowd")
LABELS = {
    "baseline": "(a) aggregated linear, frozen MiniLM",
    "sentences": "(b) + sentence-pooled features",
    "mlp": "(c) MLP basis (rank 0)",
    "finetuned": "(d) LoRA-fine-tuned MiniLM + linear BT",
    "finetuned_head": "(d') fine-tuned MiniLM, its own head",
    "crowd": "crowd oracle (leave-one-out)",
}
L2_GRID = (3.0, 30.0, 300.0)
L2_MLP_GRID = (0.1, 1.0, 10.0)


def _acc(model: Any, pairs: pd.DataFrame) -> float:
    return M.mean_person_accuracy(pairs["user_id"].to_numpy(), model.predict_proba(pairs))


def _train_data(pairs: pd.DataFrame, data: PreferenceData) -> PreferenceData:
    return PreferenceData(comparisons=pairs, users=data.users, items=data.items, name=data.name)


def _inner(train_pairs: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inner split of the training ITEMS (80/20) for choosing regularization: pairs within each side."""
    items = np.array(
        sorted(set(train_pairs["chosen_id"].astype(str)) | set(train_pairs["rejected_id"].astype(str)))
    )
    rng = np.random.default_rng(10_000 + seed)
    val = set(items[rng.permutation(len(items))[: int(round(0.2 * len(items)))]])
    c = train_pairs["chosen_id"].astype(str).isin(val).to_numpy()
    r = train_pairs["rejected_id"].astype(str).isin(val).to_numpy()
    return train_pairs[~c & ~r].reset_index(drop=True), train_pairs[c & r].reset_index(drop=True)


def _choose(
    make: Any, grid: tuple[float, ...], itr: pd.DataFrame, iva: pd.DataFrame, data: PreferenceData
) -> tuple[float, dict[str, float]]:
    scores = {g: _acc(make(g).fit(_train_data(itr, data)), iva) for g in grid}
    return max(scores, key=lambda g: (scores[g], -abs(np.log(g / grid[len(grid) // 2])))), {
        str(k): v for k, v in scores.items()
    }


class _Vectors:
    """An Encoder serving fixed vectors (the fine-tuned encoder's, computed once per seed) under its own name."""

    def __init__(self, name: str, texts: list[str], mat: np.ndarray) -> None:
        self.name, self.dim = name, int(mat.shape[1])
        self.vec = dict(zip(texts, mat, strict=True))

    def encode(self, texts: Any, show_progress: bool = False) -> np.ndarray:
        return (
            np.stack([self.vec[str(t)] for t in texts]) if len(texts) else np.zeros((0, self.dim), np.float32)
        )


def run_dataset(key: str, seeds: list[int], ft_steps: int, ft_seconds: float, log: Any) -> dict[str, Any]:
    path, fmt = DATASETS[key]
    data = read_data(path, format=fmt)
    texts = all_texts(data)
    t0 = time.perf_counter()
    base = make_featurizer("minilm", texts, show_progress=True)
    sent = PairFeaturizer(base.encoder, mode="sentences")
    sent.transform([""] * len(texts), texts, show_progress=True)  # encode every sentence once (disk cache)
    feat_s = time.perf_counter() - t0
    log(f"[{key}] features ready in {feat_s:.0f}s ({len(texts)} texts)")
    prefix = FrozenPrefix(n_frozen=4)
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        ts = time.perf_counter()
        sp = split(data, unseen_user_frac=0.0, unseen_item_frac=0.2, seed=seed, unit="item")
        rng = np.random.default_rng(seed)
        train_pairs = judgment_pairs(sp.train, 200, rng)
        test = judgment_pairs(sp.seen_users_unseen_items, 100, rng)
        td = _train_data(train_pairs, data)
        itr, iva = _inner(train_pairs, seed)
        out: dict[str, Any] = {
            "seed": seed,
            "n_train_pairs": len(train_pairs),
            "n_test_pairs": len(test),
            "n_test_persons": int(test["user_id"].nunique()),
            "acc": {},
            "chosen": {},
            "seconds": {},
        }
        t = time.perf_counter()
        l2, sc = _choose(
            lambda g, s=seed: AggregatedBT(base, l2_mean=g, random_state=s), L2_GRID, itr, iva, data
        )
        out["acc"]["baseline"] = _acc(AggregatedBT(base, l2_mean=l2, random_state=seed).fit(td), test)
        out["chosen"]["baseline"] = {"l2_mean": l2, "inner_val": sc}
        out["seconds"]["baseline"] = time.perf_counter() - t
        t = time.perf_counter()
        l2s, sc = _choose(
            lambda g, s=seed: AggregatedBT(sent, l2_mean=g, random_state=s), L2_GRID, itr, iva, data
        )
        out["acc"]["sentences"] = _acc(AggregatedBT(sent, l2_mean=l2s, random_state=seed).fit(td), test)
        out["chosen"]["sentences"] = {"l2_mean": l2s, "inner_val": sc}
        out["seconds"]["sentences"] = time.perf_counter() - t
        t = time.perf_counter()

        def mlp(g: float, l2: float = l2, s: int = seed) -> MLPLowRankBT:
            return MLPLowRankBT(rank=0, featurizer=base, l2_mean=l2, l2_mlp=g, random_state=s)

        l2m, sc = _choose(mlp, L2_MLP_GRID, itr, iva, data)
        out["acc"]["mlp"] = _acc(mlp(l2m).fit(td), test)
        out["chosen"]["mlp"] = {"l2_mean": l2, "l2_mlp": l2m, "inner_val": sc}
        out["seconds"]["mlp"] = time.perf_counter() - t
        t = time.perf_counter()
        ft = EncoderFineTuner(
            "lora",
            train_layers=2,
            max_steps=ft_steps,
            max_seconds=ft_seconds,
            batch_size=16,
            eval_every=25,
            seed=seed,
            verbose=True,
        ).fit(train_pairs, prefix=prefix)
        enc = _Vectors(ft.name, texts, ft.encode(texts, show_progress=True))
        ftz = PairFeaturizer(enc, mode="auto")
        out["acc"]["finetuned"] = _acc(AggregatedBT(ftz, l2_mean=l2, random_state=seed).fit(td), test)
        r = dict(zip(texts, ft.reward(texts), strict=True))
        d = np.array([r[c] - r[j] for c, j in zip(test["chosen"], test["rejected"], strict=True)])
        out["acc"]["finetuned_head"] = M.mean_person_accuracy(
            test["user_id"].to_numpy(), 1 / (1 + np.exp(-d))
        )
        out["chosen"]["finetuned"] = {
            "l2_mean": l2,
            "encoder": ft.name,
            **{k: v for k, v in ft.history_.items() if k != "train_loss"},
        }
        out["seconds"]["finetuned"] = time.perf_counter() - t
        crowd = CrowdOracle().fit(data, train_pairs)
        out["acc"]["crowd"] = _acc(crowd, test)
        out["seconds"]["seed"] = time.perf_counter() - ts
        per_seed.append(out)
        log(
            f"[{key}] seed {seed}: "
            + ", ".join(f"{k} {100 * v:.1f}" for k, v in out["acc"].items())
            + f" ({out['seconds']['seed']:.0f}s; fine-tuning {ft.history_['steps']} steps, "
            f"best {ft.history_['best_step']}, {ft.history_['stopped']})"
        )
    return {
        "dataset": data.name,
        "key": key,
        "summary": data.summary(),
        "features_seconds": feat_s,
        "per_seed": per_seed,
        "rows": summarize(per_seed),
    }


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    acc = {r: [s["acc"][r] for s in per_seed] for r in ROWS}
    base, crowd = np.array(acc["baseline"]), np.array(acc["crowd"])
    gap = crowd - base
    rows: dict[str, Any] = {}
    for r in ROWS:
        a = np.array(acc[r])
        e: dict[str, Any] = {"accuracy": M.interval(a), "gain_vs_baseline": M.paired_difference(a, base)}
        if r not in ("baseline", "crowd"):
            e["share_of_gap"] = {
                "of_means": float((a.mean() - base.mean()) / gap.mean()) if gap.mean() > 0 else None,
                "per_seed": M.interval((a - base) / np.where(gap > 0, gap, np.nan)),
            }
        rows[r] = e
    rows["gap"] = M.interval(gap)
    return rows


def _pm(x: dict[str, Any], scale: float = 100.0) -> str:
    if x.get("mean") is None:
        return "-"
    return f"{scale * x['mean']:.1f} ± {scale * x['std']:.1f}"


def write_outputs(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=float))
    os.replace(tmp, out / "results.json")
    lines = [
        "# Shared part: how much of the gap to the crowd oracle each improvement closes",
        "",
        "Task: held-out items (20% per seed), persons seen; per-person pairwise accuracy on pairs of held-out items",
        "a person rated differently (at most 100 per person), averaged over persons. Mean ± std over seeds "
        f"{results['seeds']}. Share of gap = (row - baseline) / (crowd - baseline); per-seed share mean ± std in brackets.",
        "The crowd oracle sees other persons' ratings of the test items; the text models see none. "
        "Config: " + json.dumps(results["config"]),
        "",
    ]
    for ds in results["datasets"]:
        rows = ds["rows"]
        lines += [
            f"## {ds['dataset']}",
            "",
            f"Gap crowd - baseline: {_pm(rows['gap'])} points.",
            "",
            "| row | accuracy (%) | gain vs (a), points [95% CI] | share of gap closed |",
            "|---|---|---|---|",
        ]
        for r in ROWS:
            e = rows[r]
            g = e["gain_vs_baseline"]
            ci = g["ci95"]
            gs = (
                "-"
                if r == "baseline"
                else (
                    f"{100 * g['mean']:+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
                    if ci[0] is not None
                    else f"{100 * g['mean']:+.1f}"
                )
            )
            sh = e.get("share_of_gap")
            ss = (
                "-"
                if not sh
                else (
                    f"{100 * sh['of_means']:+.0f}% "
                    f"[{100 * sh['per_seed']['mean']:+.0f}% ± {100 * sh['per_seed']['std']:.0f}]"
                )
            )
            lines.append(f"| {LABELS[r]} | {_pm(e['accuracy'])} | {gs} | {ss} |")
        ft = [s["chosen"]["finetuned"] for s in ds["per_seed"]]
        lines += [
            "",
            "Fine-tuning per seed: "
            + "; ".join(
                f"{f['steps']} steps (best {f['best_step']}, {f['stopped']}, {f['seconds']:.0f}s)" for f in ft
            ),
            "Seconds per seed: " + ", ".join(f"{s['seconds']['seed']:.0f}" for s in ds["per_seed"]),
            "",
        ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(results, out / "shared_part.png")


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dss = results["datasets"]
    fig, axes = plt.subplots(1, len(dss), figsize=(5.5 * len(dss), 4), squeeze=False)
    for ax, ds in zip(axes[0], dss, strict=True):
        rows = [r for r in ROWS if r != "crowd"]
        m = [100 * ds["rows"][r]["accuracy"]["mean"] for r in rows]
        s = [100 * ds["rows"][r]["accuracy"]["std"] for r in rows]
        ax.bar(range(len(rows)), m, yerr=s, color=["#888"] + ["#4a7"] * (len(rows) - 1), capsize=3)
        c = 100 * ds["rows"]["crowd"]["accuracy"]["mean"]
        ax.axhline(c, color="#c33", ls="--", label=f"crowd oracle {c:.1f}")
        ax.axhline(m[0], color="#888", ls=":", lw=1)
        ax.set_xticks(
            range(len(rows)), ["(a) base", "(b) sent.", "(c) MLP", "(d) LoRA", "(d') head"], fontsize=8
        )
        lo = min(min(m) - 3, c - 10)
        ax.set_ylim(lo, max(c, max(m)) + 2)
        ax.set_title(ds["dataset"])
        ax.set_ylabel("per-person pairwise accuracy on held-out items (%)")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(".tmp_" + path.name)
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="popquorn,toxicity")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ft-steps", type=int, default=300)
    ap.add_argument("--ft-seconds", type=float, default=150.0, help="wall-clock cap of one fine-tuning")
    ap.add_argument("--out", default="results/shared_part")
    a = ap.parse_args(argv)
    keys = [k.strip() for k in a.datasets.split(",") if k.strip()]
    bad = [k for k in keys if k not in DATASETS]
    if bad:
        print(f"error: unknown dataset(s) {bad}; expected some of {sorted(DATASETS)}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "seeds": list(range(a.seeds)),
        "datasets": [],
        "config": {
            "ft_steps": a.ft_steps,
            "ft_seconds": a.ft_seconds,
            "l2_grid": L2_GRID,
            "l2_mlp_grid": L2_MLP_GRID,
            "unseen_item_frac": 0.2,
            "max_train_pairs": 200,
            "max_test_pairs": 100,
        },
    }

    def log(msg: str) -> None:
        print(f"{time.perf_counter() - t0:7.0f}s {msg}", flush=True)

    for k in keys:
        results["datasets"].append(run_dataset(k, list(range(a.seeds)), a.ft_steps, a.ft_seconds, log))
        results["total_seconds"] = time.perf_counter() - t0
        write_outputs(results, Path(a.out))  # after each dataset, so a long run keeps what it finished
    for ds in results["datasets"]:
        r = ds["rows"]
        print(f"\n{ds['dataset']}: gap crowd - baseline {_pm(r['gap'])} points")
        for row in ROWS:
            sh = r[row].get("share_of_gap")
            print(
                f"  {LABELS[row]:42s} {_pm(r[row]['accuracy']):>12s}"
                + (f"   share of gap {100 * sh['of_means']:+.0f}%" if sh else "")
            )
    print(f"\ntotal {results['total_seconds']:.0f}s; wrote {a.out}/results.md, results.json, shared_part.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
