"""Numbers over seeds: mean, std and 95% interval of every figure, personal gains paired by seed (results.json)."""

from __future__ import annotations

from typing import Any

import numpy as np

import personalign.evaluate.metrics as M
from personalign.data.core import PreferenceData
from personalign.data.files import to_jsonable
from personalign.evaluate.cells import SeedResult
from personalign.evaluate.config import CELLS, EvalConfig

SCALARS = (
    "accuracy",
    "pair_accuracy",
    "worst_decile",
    "worst_group",
    "group_gap",
    "max_group_gap",
    "contested_accuracy",
    "consensus_accuracy",
    "log_loss",
    "ece",
    "brier",
    "n_pairs",
    "n_persons",
)


def cell_row(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's figures in one cell over seeds: every scalar, the collapsed control, the seed-paired gain and
    the consensus tax."""
    row = {k: M.interval([r.get(k, np.nan) for r in rs]) for k in SCALARS}
    row["worst_group_names"] = [r["worst_group_name"] for r in rs]
    acc = [r["accuracy"] for r in rs]
    cacc = [r["collapsed"]["accuracy"] for r in rs]
    row["collapsed_accuracy"] = M.interval(cacc)
    row["personal_gain"] = M.paired_difference(acc, cacc)
    cons = [r.get("consensus_accuracy", np.nan) for r in rs]
    ccons = [r["collapsed"].get("consensus_accuracy", np.nan) for r in rs]
    # the tax: consensus accuracy the personal part costs (collapsed - personalized; > 0 means lost)
    row["tax_consensus"] = M.paired_difference(ccons, cons)
    return row


def aggregate_cells(
    out: dict[str, Any], models: list[str], per_seed: list[SeedResult], cells: tuple[str, ...] = CELLS
) -> None:
    """``cells``, ``groups`` and ``per_person`` of each of ``cells`` (a model with figures in every seed)."""
    for cell in cells:
        rows: dict[str, Any] = {}
        for m in models:
            rs = [r.cells.get(cell, {}).get(m) for r in per_seed]
            if not all(rs):
                continue
            rows[m] = cell_row(rs)
            grp: dict[str, dict[str, Any]] = {}
            for col in sorted({c for r in rs for c in r["groups"]}):
                vals = {v for r in rs for v in r["groups"].get(col, {})}
                grp[col] = {
                    v: M.interval([r["groups"].get(col, {}).get(v, np.nan) for r in rs]) for v in sorted(vals)
                }
            out["groups"].setdefault(cell, {})[m] = grp
            out["per_person"].setdefault(cell, {})[m] = [float(x) for x in rs[0]["per_person"].to_numpy()]
        # gains against aggregated BT too (seed-paired), where it ran
        if "bt" in rows:
            base = [r.cells[cell]["bt"]["accuracy"] for r in per_seed]
            for m in rows:
                rows[m]["gain_vs_bt"] = M.paired_difference(
                    [r.cells[cell][m]["accuracy"] for r in per_seed], base
                )
        out["cells"][cell] = rows


def aggregate_kshot(out: dict[str, Any], models: list[str], per_seed: list[SeedResult]) -> None:
    """``kshot``: per model and mode, accuracy at each k with its gain over the collapsed prior."""
    for m in models:
        ks = [r.kshot.get(m) for r in per_seed]
        if not all(ks):
            continue
        entry: dict[str, Any] = {}
        coll = [k["collapsed"][0]["accuracy"] for k in ks] if all("collapsed" in k for k in ks) else None
        if coll:
            entry["collapsed"] = M.interval(coll)
        for mode in ("random", "active"):
            kvals = sorted({k for s in ks for k in s[mode]})
            if not kvals:
                continue
            entry[mode] = {}
            for k in kvals:
                acc = [s[mode].get(k, {}).get("accuracy", np.nan) for s in ks]
                e = M.interval(acc)
                if coll:
                    e["personal_gain"] = M.paired_difference(acc, coll)
                entry[mode][str(k)] = e
        out["kshot"][m] = entry


def aggregate_pointwise(out: dict[str, Any], per_seed: list[SeedResult]) -> None:
    """``pointwise``: the crowd references' label / rating figures, and the personal offset's gain."""
    for cell in sorted({c for r in per_seed for c in r.pointwise}):  # sorted: same file in every process
        preds = {p for r in per_seed for p in r.pointwise.get(cell, {})}
        out["pointwise"][cell] = {}
        for p in sorted(preds):
            rs = [r.pointwise[cell][p] for r in per_seed if p in r.pointwise.get(cell, {})]
            out["pointwise"][cell][p] = {k: M.interval([x.get(k, np.nan) for x in rs]) for k in rs[0]}
        if "crowd+offset" in preds and "crowd" in preds:
            key = "label_accuracy" if "label_accuracy" in per_seed[0].pointwise[cell]["crowd"] else "mae"
            out["pointwise"][cell]["offset_gain"] = {
                key: M.paired_difference(
                    [r.pointwise[cell]["crowd+offset"][key] for r in per_seed],
                    [r.pointwise[cell]["crowd"][key] for r in per_seed],
                )
            }


def cell_notes(per_seed: list[SeedResult], seeds: list[int]) -> dict[str, str]:
    """Why a cell (or the k-shot curve) has no test pairs: the reason of the first seed without pairs, and how
    many seeds it applies to."""
    out: dict[str, str] = {}
    for key in sorted({k for r in per_seed for k in r.notes}):
        hit = [s for s, r in zip(seeds, per_seed, strict=True) if key in r.notes]
        first = per_seed[seeds.index(hit[0])].notes[key]
        out[key] = first if len(hit) == len(seeds) else f"{first} (seeds {', '.join(map(str, hit))})"
    return out


def aggregate(
    data: PreferenceData,
    cfg: EvalConfig,
    per_seed: list[SeedResult],
    seeds: list[int],
    timing: dict[str, Any],
    skipped: dict[str, str] | None = None,
    cells: tuple[str, ...] = CELLS,
) -> dict[str, Any]:
    """Numbers over seeds: mean, std, 95% interval; personal gain paired by seed (``cells``: the cells of the
    run, :data:`~personalign.evaluate.config.TRANSFER_CELLS` for a transfer test)."""
    out: dict[str, Any] = {
        "dataset": data.name,
        "summary": to_jsonable(data.summary()),
        "config": cfg.to_dict(),
        "seeds": seeds,
        "timing": timing,
        "cells": {},
        "groups": {},
        "per_person": {},
        "kshot": {},
        "pointwise": {},
        "harmless": {},
        "fit_seconds": {},
    }
    models = list(cfg.models)
    aggregate_cells(out, models, per_seed, cells)
    aggregate_kshot(out, models, per_seed)
    aggregate_pointwise(out, per_seed)
    for m in models:
        hs = [r.harmless.get(m) for r in per_seed]
        if all(hs) and hs:
            out["harmless"][m] = {
                "accuracy": M.interval([h["accuracy"] for h in hs]),
                "collapsed": M.interval([h["collapsed"] for h in hs]),
                "tax": M.paired_difference([h["collapsed"] for h in hs], [h["accuracy"] for h in hs]),
            }
    for m in models:
        out["fit_seconds"][m] = M.interval([r.fit_seconds.get(m, np.nan) for r in per_seed])
    out["chosen_hyperparameters"] = {
        m: [r.chosen.get(m) for r in per_seed] for m in models if any(m in r.chosen for r in per_seed)
    }
    reach = [r.reach for r in per_seed if r.reach]
    if reach:
        out["crowd_reach"] = {k: M.interval([r[k] for r in reach]) for k in reach[0]}
    out["skipped_models"] = dict(skipped or {})
    out["cell_notes"] = missing_figures_notes(out, models, cells) | cell_notes(per_seed, seeds)
    return to_jsonable(out)


def missing_figures_notes(out: dict[str, Any], models: list[str], cells: tuple[str, ...]) -> dict[str, str]:
    """Why a cell (or the k-shot curve) without figures is empty although every seed had test pairs: no model
    of the run has figures there on every seed (the skipped models named). The split's own reasons
    (:func:`cell_notes`) take precedence over these."""
    skipped = out.get("skipped_models") or {}
    tail = f"; skipped: {', '.join(f'{m} ({why})' for m, why in skipped.items())}" if skipped else ""
    ran = ", ".join(models) or "none"
    notes: dict[str, str] = {}
    for cell in cells:
        if not out["cells"].get(cell):
            notes[cell] = (
                f"every seed had test pairs, but no model run ({ran}) has figures here on every seed{tail}"
            )
    if not out["kshot"]:
        notes["kshot"] = f"no model run ({ran}) adapts to new persons on every seed{tail}"
    return notes
