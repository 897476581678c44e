"""Pointwise personal judgments: "is this offensive to *you*?", per person, against the collapsed control.

Protocol (per seed): hold out 20% of the items entirely (the unseen-items cell), then 20% of each person's remaining
judgments whose items other persons also judged (the collaborative cell); fit on the rest. Rows:

- ``personal``: :class:`~personalign.models.pointwise.OrdinalLowRank` (personal cut-points, sensitivity, K low-rank
  directions over frozen text features);
- ``collapsed``: the same fitted model with every person at the population prior (the control that credits
  personalization only with what the personal part adds);
- ``crowd (LOO)``: the item's mean judgment by the *other* persons (an oracle on unseen items: it reads other
  persons' labels of the test items, which a text model never sees);
- ``crowd + personal offset``: that plus the person's shrunk mean deviation from the crowd on training items.

Metrics are per person, then averaged over persons: label accuracy (the most probable level; for 0/1 labels
P > 0.5) and, for ratings, the mean absolute error of the expected rating. Contested and consensus items apart.
The personal gain is ``personal - collapsed``, paired by seed, with a 95% t-interval over seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from personalign.data.core import PreferenceData
from personalign.errors import DataError
from personalign.features.pairs import PairFeaturizer
from personalign.models.objectives import item_keys
from personalign.models.pointwise import CrowdOffsetReference, OrdinalLowRank

ROWS = ("personal", "collapsed", "crowd (LOO)", "crowd + personal offset")


@dataclass
class PointwiseConfig:
    seeds: int = 5
    first_seed: int = 0
    rank: int = 2
    unseen_item_frac: float = 0.2
    collab_frac: float = 0.2
    min_others: int = 3  # a collaborative item needs this many other judges in training
    featurizer_mode: str = "auto"
    encoder: str = "minilm"
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def paired_interval(x: np.ndarray) -> dict[str, float]:
    """Mean and 95% t-interval of seed-paired differences."""
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return {"mean": m, "lo": float("nan"), "hi": float("nan"), "sd": float("nan"), "n": len(x)}
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return {"mean": m, "lo": m - half, "hi": m + half, "sd": float(x.std(ddof=1)), "n": len(x)}


def split_judgments(
    t: pd.DataFrame, cfg: PointwiseConfig, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Training, collaborative and unseen-item judgments of one seed, and why a test cell is empty (if one is)."""
    rng = np.random.default_rng(seed)
    items = np.array(sorted(t["key"].unique()))
    n_unseen = int(round(cfg.unseen_item_frac * len(items)))
    unseen = set(rng.choice(items, size=n_unseen, replace=False))
    test_items = t[t["key"].isin(unseen)]
    rest = t[~t["key"].isin(unseen)]
    judges = rest.groupby("key")["user_id"].transform("size")
    eligible = (judges - 1 >= cfg.min_others).to_numpy()
    u = rng.random(len(rest))
    pick = eligible & (u < cfg.collab_frac)
    notes: dict[str, str] = {}
    if not n_unseen:
        notes["unseen_items"] = (
            f"no unseen items: unseen_item_frac {cfg.unseen_item_frac:g} of {len(items)} items rounds to 0"
        )
    if not pick.any():
        if cfg.collab_frac <= 0:
            notes["collaborative"] = "collab_frac is 0: no judgments held out"
        elif not eligible.any():
            notes["collaborative"] = (
                f"no item outside the unseen ones was judged by >= {cfg.min_others + 1} persons "
                f"(a collaborative test judgment needs {cfg.min_others} other judges of its item)"
            )
        else:
            notes["collaborative"] = (
                f"the draw held out none of the {int(eligible.sum())} eligible judgments "
                f"(collab_frac {cfg.collab_frac:g})"
            )
    return rest[~pick], rest[pick], test_items, notes


def seed_notes(per_seed: list[dict[str, Any]]) -> dict[str, str]:
    """Why a cell is empty: the first seed's reason, with the seeds it applies to when not all."""
    out: dict[str, str] = {}
    for cell in ("unseen_items", "collaborative"):
        hit = [r for r in per_seed if cell in r.get("notes", {})]
        if hit:
            first = hit[0]["notes"][cell]
            seeds = ", ".join(str(r["seed"]) for r in hit)
            out[cell] = first if len(hit) == len(per_seed) else f"{first} (seeds {seeds})"
    return out


def _per_person(df: pd.DataFrame, value: np.ndarray) -> pd.Series:
    return pd.Series(value, index=df["user_id"].to_numpy()).groupby(level=0).mean()


def _metrics(
    df: pd.DataFrame, pred_level: np.ndarray, pred_mean: np.ndarray, binary: bool, contested: set[str]
) -> dict[str, float]:
    y = df["rating"].to_numpy(float)
    hit = (pred_level == y).astype(float)
    out = {"accuracy": float(_per_person(df, hit).mean())}
    if not binary:
        out["mae"] = float(_per_person(df, np.abs(pred_mean - y)).mean())
    c = df["item_id"].isin(contested).to_numpy() if "item_id" in df.columns else np.zeros(len(df), bool)
    for name, mask in (("contested", c), ("consensus", ~c)):
        if mask.any():
            out[f"accuracy_{name}"] = float(_per_person(df[mask], hit[mask]).mean())
    return out


def _round_to_levels(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    return levels[np.abs(x[:, None] - levels[None, :]).argmin(1)]


def evaluate_pointwise(
    data: PreferenceData,
    cfg: PointwiseConfig | None = None,
    featurizer: PairFeaturizer | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns per-seed figures and summaries with intervals.

    ``progress(description, done, total)`` is called before the first seed and after each one."""
    from personalign.features import get_encoder

    cfg = cfg or PointwiseConfig()
    featurizer = featurizer or PairFeaturizer(get_encoder(cfg.encoder), mode=cfg.featurizer_mode)
    # the model's table: ratings, else votes (a pass is the middle of the 3-point scale)
    t = data.pointwise("ratings" if len(data.ratings) else "votes").drop(columns=["kind"])
    if not len(t):
        raise DataError("no ratings or votes to learn pointwise judgments from", field="ratings")
    t["key"] = item_keys(t["prompt"], t["response"])
    levels = np.sort(t["rating"].astype(float).unique())
    binary = len(levels) == 2
    contested = set(data.contested_items().pipe(lambda s: s[s].index))
    per_seed: list[dict[str, Any]] = []
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    for i, seed in enumerate(seeds):
        if progress is not None:
            progress("pointwise evaluation", i, len(seeds))
        train, collab, unseen, notes = split_judgments(t, cfg, seed)
        model = OrdinalLowRank(rank=cfg.rank, featurizer=featurizer, random_state=seed, **cfg.model_kwargs)
        model.fit(train.drop(columns=["key"]))
        collapsed = model.collapsed()
        crowd_all = CrowdOffsetReference().fit(pd.concat([train, collab, unseen]).drop(columns=["key"]))
        offsets = CrowdOffsetReference().fit(train.drop(columns=["key"])).offset_
        row: dict[str, Any] = {"seed": seed, "n_train": len(train), "notes": notes}
        for cell, df in (("unseen_items", unseen), ("collaborative", collab)):
            if not len(df):
                continue
            d = df.drop(columns=["key"])
            preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for name, m in (("personal", model), ("collapsed", collapsed)):
                preds[name] = (m.predict(d), m.expected_rating(d))
            crowd = crowd_all._crowd(df["user_id"].to_numpy(), df["key"].to_numpy())
            off = offsets.reindex(df["user_id"].to_numpy()).fillna(0.0).to_numpy()
            for name, mean in (("crowd (LOO)", crowd), ("crowd + personal offset", crowd + off)):
                mean = np.clip(mean, levels[0], levels[-1])
                preds[name] = (_round_to_levels(mean, levels), mean)
            row[cell] = {
                name: _metrics(df, lv, mu, binary, contested) for name, (lv, mu) in preds.items()
            } | {"n": len(df), "persons": int(df["user_id"].nunique())}
        per_seed.append(row)
    if progress is not None:
        progress("pointwise evaluation", len(seeds), len(seeds))
    summary: dict[str, Any] = {}
    for cell in ("unseen_items", "collaborative"):
        runs = [r[cell] for r in per_seed if cell in r]
        if not runs:
            continue
        cs: dict[str, Any] = {}
        metrics = sorted({k for r in runs for k in r["personal"]})
        for name in ROWS:
            cs[name] = {
                k: {
                    "mean": float(np.mean([r[name][k] for r in runs if k in r[name]])),
                    "sd": float(np.std([r[name][k] for r in runs if k in r[name]], ddof=1))
                    if len(runs) > 1
                    else 0.0,
                }
                for k in metrics
            }
        gain = np.array([r["personal"]["accuracy"] - r["collapsed"]["accuracy"] for r in runs])
        cs["personal_gain_accuracy"] = paired_interval(gain)
        if not binary:
            g = np.array([r["collapsed"]["mae"] - r["personal"]["mae"] for r in runs])
            cs["personal_gain_mae_reduction"] = paired_interval(g)
        off_gain = np.array(
            [r["crowd + personal offset"]["accuracy"] - r["crowd (LOO)"]["accuracy"] for r in runs]
        )
        cs["offset_gain_over_crowd"] = paired_interval(off_gain)
        summary[cell] = cs
    return {
        "config": {**cfg.__dict__, "levels": levels.tolist(), "binary": bool(binary), "dataset": data.name},
        "summary": summary,
        "per_seed": per_seed,
        "notes": seed_notes(per_seed),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pointwise_markdown(res: dict[str, Any], command: str = "") -> str:
    """Tables a person reads: per cell, each row's accuracy (and MAE) with spread, the seed-paired gains."""
    cfg = res["config"]
    lines = [f"# Pointwise personal judgments: {cfg['dataset']}", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += [
        f"{cfg['seeds']} seeds; OrdinalLowRank rank {cfg['rank']} (personal cut-points, sensitivity, low-rank "
        f"directions) over frozen {cfg['encoder']} features; per-person metrics averaged over persons "
        "(mean ± sd over seeds). Personal gain = personal - collapsed (every person at the population prior), "
        "paired by seed, 95% interval. The crowd rows read other persons' labels of the test items (an oracle).",
        "",
    ]
    notes = res.get("notes", {})
    for cell in ("unseen_items", "collaborative"):
        cs = res["summary"].get(cell)
        if cs is None:
            why = notes.get(cell, "no reason was recorded (results written by an older version)")
            lines += [f"## {cell.replace('_', ' ')}", "", f"_this cell is empty: {why}_", ""]
            continue
        metrics = ["accuracy", "accuracy_contested", "accuracy_consensus"] + (
            [] if cfg["binary"] else ["mae"]
        )
        metrics = [m for m in metrics if m in cs["personal"]]
        lines += [f"## {cell.replace('_', ' ')}", ""]
        if cell in notes:
            lines += [f"_Some seeds have no judgments here: {notes[cell]}._", ""]
        lines += [
            "| row | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for name in ROWS:
            cells = []
            for m in metrics:
                v = cs[name][m]
                cells.append(
                    f"{v['mean']:.3f} ± {v['sd']:.3f}"
                    if m == "mae"
                    else f"{_pct(v['mean'])} ± {_pct(v['sd'])}"
                )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        g = cs["personal_gain_accuracy"]
        o = cs["offset_gain_over_crowd"]
        lines += [
            "",
            f"- personal gain (accuracy, points): {100 * g['mean']:+.2f} [{100 * g['lo']:+.2f}, {100 * g['hi']:+.2f}]",
            f"- crowd + offset over crowd (points): {100 * o['mean']:+.2f} [{100 * o['lo']:+.2f}, {100 * o['hi']:+.2f}]",
        ]
        if "personal_gain_mae_reduction" in cs:
            m = cs["personal_gain_mae_reduction"]
            lines.append(f"- MAE reduction over collapsed: {m['mean']:+.3f} [{m['lo']:+.3f}, {m['hi']:+.3f}]")
        sizes = [r[cell] for r in res.get("per_seed", []) if cell in r]
        if sizes:
            n = [x["n"] for x in sizes]
            p = [x["persons"] for x in sizes]
            lines.append(
                f"- test judgments per seed: {min(n):,}-{max(n):,} (mean {np.mean(n):,.0f}), from "
                + (f"{p[0]:,}" if min(p) == max(p) else f"{min(p):,}-{max(p):,}")
                + " persons"
            )
        lines.append("")
    return "\n".join(lines)


def write_pointwise(res: dict[str, Any], out: Path, command: str = "") -> None:
    """results.json and results.md under ``out`` (each written to a temporary file, then renamed)."""
    from personalign.data.files import write_json_atomic, write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", res)
    write_text_atomic(out / "results.md", pointwise_markdown(res, command))
