"""One model in one seed: fit it (tuning its personal part where configured), then every figure of every cell.

A *cell* is a set of test pairs of persons the model knows (``collaborative``, ``unseen_items``, ``transfer_seen``);
the k-shot curve covers persons it does not know; the harmlessness tax scores universal pairs for a sample of
training persons. Every personalized model is also evaluated *collapsed* (``model.collapsed()``: every person at
the population prior) on the same pairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import personalign.evaluate.metrics as M
from personalign.data.core import POPULATION_USER, PreferenceData
from personalign.evaluate.baselines import BASELINES, CrowdOracle, crowd_pointwise
from personalign.evaluate.candidates import build_model, is_personal, is_text_model
from personalign.evaluate.config import EvalConfig
from personalign.evaluate.holdout import SeedPairs, held_only
from personalign.evaluate.kshot import kshot_eval
from personalign.evaluate.tuning import tune_personal

COLLAPSED_KEYS = (
    "accuracy",
    "consensus_accuracy",
    "contested_accuracy",
    "worst_group",
    "worst_decile",
    "log_loss",
)


@dataclass
class SeedResult:
    """Every figure of one seed: per cell and model, k-shot, pointwise references, harmlessness, fit times, the
    hyper-parameters chosen, and why a cell has no test pairs (``notes``)."""

    cells: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # cell -> model -> metrics
    kshot: dict[str, dict[str, dict[int, dict[str, Any]]]] = field(default_factory=dict)
    pointwise: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    harmless: dict[str, dict[str, float]] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    reach: dict[str, float] = field(default_factory=dict)  # other judges per collaborative test item


@dataclass
class SeedContext:
    """What every model of one seed is fitted on and tested with."""

    data: PreferenceData  # the data the cells and groups come from (the test data in a transfer run)
    fit_data: PreferenceData  # pointwise and native judgments the item-level baselines fit on
    train_data: PreferenceData  # the training pairs as comparisons (what the text models fit on)
    pairs: SeedPairs
    contested: dict[str, np.ndarray]
    group_cols: list[str]
    crowd_data: PreferenceData  # the whole data the crowd oracle reads (test cells included)
    crowd_pairs: pd.DataFrame  # the pairs the crowd's temperature is fitted on


# ------------------------------------------------------------------------------------------ metrics
def cell_metrics(
    model: Any,
    coll: Any,
    df: pd.DataFrame,
    contested: np.ndarray,
    data: PreferenceData,
    cfg: EvalConfig,
    group_cols: list[str],
) -> dict[str, Any]:
    """Every pairwise metric of a model on one test cell, with its collapsed control's (``coll``) main figures."""
    uid = df["user_id"].to_numpy()
    m = M.pair_metrics(uid, model.predict_proba(df), data.users, contested, group_cols, cfg.min_group_persons)
    if coll is not model:
        pc = coll.predict_proba(df)
        mc = M.pair_metrics(uid, pc, data.users, contested, group_cols, cfg.min_group_persons)
    else:
        mc = m
    m["collapsed"] = {k: mc[k] for k in COLLAPSED_KEYS if k in mc}
    return m


def kshot_metrics(
    model: Any, sp: SeedPairs, users: pd.DataFrame, cfg: EvalConfig, seed: int
) -> dict[str, Any]:
    """Accuracy of the unseen persons after k of their judgments (random and active), and at the collapsed prior."""
    personal = is_personal(model)
    ks_out = kshot_eval(
        model,
        sp.pools,
        sp.tests,
        users,
        cfg.ks,
        np.random.default_rng(seed + 1000),
        cfg.active_max_k if (cfg.active and personal) else 0,
    )
    kk: dict[str, dict[int, dict[str, Any]]] = {"random": {}, "active": {}}
    for mode in ("random", "active"):
        for k, (u, p) in ks_out[mode].items():
            if len(p):
                kk[mode][k] = {
                    "accuracy": M.mean_person_accuracy(u, p),
                    "log_loss": M.log_loss(p),
                    "per_person": M.per_person_accuracy(u, p),
                }
    u, p = ks_out["collapsed"]
    if len(p):
        kk["collapsed"] = {0: {"accuracy": M.mean_person_accuracy(u, p), "log_loss": M.log_loss(p)}}
    return kk


def harmless_metrics(
    model: Any, coll: Any, harmless: pd.DataFrame, train_pairs: pd.DataFrame, cfg: EvalConfig, seed: int
) -> dict[str, float] | None:
    """Accuracy on the universal (harmlessness) pairs for a sample of training persons, and collapsed."""
    persons = sorted(set(train_pairs["user_id"]) - {POPULATION_USER})
    if not persons:
        return None
    sel = np.random.default_rng(seed).choice(
        len(persons), min(cfg.harmless_persons, len(persons)), replace=False
    )
    us = [persons[i] for i in np.sort(sel)]
    cross = harmless.loc[harmless.index.repeat(len(us))].reset_index(drop=True)
    cross["user_id"] = np.tile(np.asarray(us, dtype=object), len(harmless))
    p = model.predict_proba(cross)
    pc = coll.predict_proba(cross) if coll is not model else p
    return {
        "accuracy": M.mean_person_accuracy(cross["user_id"], p),
        "collapsed": M.mean_person_accuracy(cross["user_id"], pc),
    }


def pointwise_metrics(
    pt: pd.DataFrame, pred: np.ndarray, binary: bool, contested: pd.Series
) -> dict[str, float]:
    """Per-person mean absolute error of point predictions and, for binary labels, label accuracy (overall,
    on contested and on consensus items)."""
    d = pt.assign(pred=pred, err=np.abs(pred - pt["rating"].to_numpy(float)))
    out = {"mae": float(d.groupby("user_id")["err"].mean().mean()), "n": int(len(d))}
    if binary:
        lo, hi = float(pt["rating"].min()), float(pt["rating"].max())
        mid = (lo + hi) / 2
        d["ok"] = ((d["pred"] > mid) == (d["rating"] > mid)).astype(float)
        d.loc[d["pred"] == mid, "ok"] = 0.5
        out["label_accuracy"] = float(d.groupby("user_id")["ok"].mean().mean())
        c = d["item_id"].map(contested)
        for name, v in (("contested", True), ("consensus", False)):
            s = d[c == v]
            out[f"{name}_label_accuracy"] = (
                float(s.groupby("user_id")["ok"].mean().mean()) if len(s) else float("nan")
            )
    return out


def pointwise_cells(data: PreferenceData, sp: Any, pairs: SeedPairs) -> dict[str, dict[str, Any]]:
    """Label / rating predictions of the crowd references in the collaborative and unseen-items cells."""
    full_pt = data.pointwise(passes=False)
    if not len(full_pt):
        return {}
    binary = full_pt["rating"].nunique() == 2
    citems = data.contested_items()
    fit_pt = pairs.fit_data.pointwise(passes=False)
    pcells = {
        "collaborative": held_only(sp.train.pointwise(passes=False), pairs.held),
        "unseen_items": sp.seen_users_unseen_items.pointwise(passes=False),
    }
    out = {}
    for cname, tpt in pcells.items():
        if not len(tpt):
            continue
        tpt = tpt.reset_index(drop=True)
        preds = crowd_pointwise(full_pt, fit_pt, tpt)
        out[cname] = {k: pointwise_metrics(tpt, v, binary, citems) for k, v in preds.items()}
    return out


# ------------------------------------------------------------------------------------------ one model
def fit_model(
    name: str,
    featurizer: Any,
    seed: int,
    cfg: EvalConfig,
    ctx: SeedContext,
    step: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """A fitted model of one seed, and the hyper-parameters chosen for it (None: nothing was chosen)."""
    model = build_model(name, featurizer, seed, cfg, ctx.data)
    if isinstance(model, CrowdOracle):
        return model.fit(ctx.crowd_data, ctx.crowd_pairs), None
    if name in BASELINES:
        return model.fit(ctx.fit_data, ctx.pairs.train_pairs), None
    if name in cfg.tuned_models and is_text_model(name) and (cfg.tune_l2_basis or len(cfg.rank_grid()) > 1):

        def make(**params: Any) -> Any:
            return build_model(name, featurizer, seed, cfg, ctx.data, **params)

        # a model with item parameters (the hybrid) gets its item prior chosen first, unless it is configured
        has_items = "l2_item" in model.get_params() and "l2_item" not in cfg.model_params.get(name, {})
        item_grid = tuple(cfg.tune_l2_item) if has_items else ()
        caps = (cfg.max_train_pairs, cfg.max_test_pairs)
        return tune_personal(
            make,
            ctx.train_data,
            cfg.rank,
            cfg.rank_grid(),
            cfg.tune_l2_basis,
            seed,
            step,
            item_grid,
            ctx.fit_data,
            caps,
        )
    if name != "oracle":
        model.fit(ctx.train_data)
    return model, None


# what a model chose on its own validation rows while fitting (fitted attribute -> results.json key)
CALIBRATION_ATTRIBUTES = {"prior_scale_": "prior_scale", "likelihood_power_": "likelihood_power"}


def calibration_choices(model: Any) -> dict[str, Any]:
    """The calibration a fitted model made itself (the person prior's scale, the mixture's likelihood power)."""
    return {
        key: float(getattr(model, attr))
        for attr, key in CALIBRATION_ATTRIBUTES.items()
        if getattr(model, attr, None) is not None
    }


def evaluate_model(
    name: str,
    featurizer: Any,
    seed: int,
    cfg: EvalConfig,
    ctx: SeedContext,
    res: SeedResult,
    harmless: pd.DataFrame | None = None,
    step: Callable[[str], None] | None = None,
) -> None:
    """Fit one model and add its figures (cells, k-shot, harmlessness, fit time, choices) to ``res``."""
    t0 = time.perf_counter()
    model, chosen = fit_model(name, featurizer, seed, cfg, ctx, step)
    res.fit_seconds[name] = time.perf_counter() - t0
    calibrated = calibration_choices(model)
    if chosen is not None or calibrated:
        res.chosen[name] = {**(chosen or {}), **calibrated}
    coll = model.collapsed() if is_personal(model) else model
    if step is not None:
        step("test cells")
    for cname, df in ctx.pairs.cells.items():
        if len(df):
            res.cells.setdefault(cname, {})[name] = cell_metrics(
                model, coll, df, ctx.contested[cname], ctx.data, cfg, ctx.group_cols
            )
    if ctx.pairs.tests:
        if step is not None:
            step("k-shot")
        res.kshot[name] = kshot_metrics(model, ctx.pairs, ctx.data.users, cfg, seed)
    if harmless is not None and len(harmless) and hasattr(model, "score") and is_text_model(name):
        h = harmless_metrics(model, coll, harmless, ctx.pairs.train_pairs, cfg, seed)
        if h is not None:
            res.harmless[name] = h
