"""Choosing a model's personal part per seed on an inner split of the training pairs grouped by item.

The inner split (:func:`tuning_split`) holds out every training pair of a random share of the prompts (with at
least ``MIN_PROMPTS`` prompts) or, otherwise, every pair of two held-out items (pairs of one held-out and one
training item are dropped: the person's judgments of the training item would leak the answer, which the test
cells never allow), through :func:`personalign.data.splits.split_by_items`; a single-prompt dataset is split by
items, never by a random split of judgments, and the split is checked: no item (prompt) of a validation pair
appears in the inner training pairs. Selected on
such a split, a personal part that only memorizes a person's training items cannot look useful.

The grid (:func:`tune_personal`), coordinate-wise to bound the cost: the personal-basis penalty ``l2_basis`` over
``cfg.tune_l2_basis`` at the full ``rank``, then the smaller ranks of ``cfg.rank_grid()`` (rank 0: no personal part
at all) at the chosen penalty: ``len(l2 grid) + len(ranks) - 1`` inner fits and one refit on all training pairs.

Each personal candidate is also scored *shared only* (``model.shared_only()``: its personal part folded into the
population's reward, ``mu + B m``, rank 0). When that wins, the personal part is removed from the refitted model:
a personal part is kept only where it beats its own collapsed control on held-out items, so that the gain a
richer shared reward brings (``B m``) is never mistaken for a personal one.

A model with item parameters (the hybrid's ``b_i, v_i``, shrunk by the prior precision ``l2_item``) first gets that
precision chosen over ``cfg.tune_l2_item`` (:func:`tune_item_prior`) on a *collaborative* inner split: the outer
split's collaborative hold-out one level down (:func:`personalign.evaluate.holdout.collaborative_pairs` on the
judgments the training pairs come from), so each person's judgments of a few items that others also judged are held
out and the validation pairs are that person's pairs of two held-out items. It is chosen at rank 0 (the item
parameters alone). Held-out items would never exercise ``b_i``, and held-out pairs that share an item with the
person's training pairs would reward memorizing it. How strongly an item's judgments should move it off its text
depends on how many people judged it and how much they agree, so it is chosen per dataset and seed; the personal
grid then runs at the chosen precision. Such a model also serves the collaborative cell, so a personal part it keeps
must beat its collapsed control on that collaborative split as well (:func:`collaborative_check`, one more fit), or
it is removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.data.splits import split_by_items
from personalign.evaluate.holdout import collaborative_pairs

MIN_PROMPTS = (
    20  # fewer prompts than this: the inner split holds out items, not prompts (as the outer split does)
)
INNER_FRAC = 0.2
MIN_ITEM_PRIOR_PAIRS = 30  # fewer held-out pairs than this: the item prior keeps the model's default


def tuning_split(
    comps: pd.DataFrame, frac: float = INNER_FRAC, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]] | None:
    """(inner training pairs, inner validation pairs, what the split was), grouped by prompt or item; None when no
    such split exists (too few items, or every pair touches a held-out item)."""
    prompts = comps["prompt"].fillna("").astype(str)
    by_prompt = prompts[prompts != ""].nunique() >= MIN_PROMPTS
    table = comps.assign(_row=np.arange(len(comps)))
    if not by_prompt:
        # no prompts to speak of: blank them so that split_by_items holds out items
        table = table.assign(prompt="")
    tr, va = split_by_items(table, frac, seed=seed, both=True)
    # a person whose every pair touches a held-out item is unknown to the inner fit: nothing personal to validate
    va = va[va["user_id"].isin(set(tr["user_id"]))]
    if not len(tr) or not len(va):
        return None
    if by_prompt:
        grouped = not set(tr["prompt"]) & set(va["prompt"])
    else:
        seen = set(tr["chosen_id"].astype(str)) | set(tr["rejected_id"].astype(str))
        a, b = va["chosen_id"].astype(str), va["rejected_id"].astype(str)
        grouped = bool((~a.isin(seen) & ~b.isin(seen)).all())  # both items of every validation pair unseen
    if not grouped:  # a split of judgments (some versions fall back to one): not a grouped split
        return None
    info = {"unit": "prompt" if by_prompt else "item", "train_pairs": int(len(tr)), "val_pairs": int(len(va))}
    rows_tr, rows_va = tr["_row"].to_numpy(), va["_row"].to_numpy()
    return comps.iloc[rows_tr].reset_index(drop=True), comps.iloc[rows_va].reset_index(drop=True), info


def val_log_loss(model: Any, pairs: pd.DataFrame) -> float:
    """Mean -log P(chosen > rejected) on validation pairs."""
    p = np.clip(np.asarray(model.predict_proba(pairs), float), 1e-7, 1 - 1e-7)
    return float(-np.mean(np.log(p)))


def grid_label(rank: int, l2: float | None) -> str:
    return f"rank={rank}" if rank == 0 or l2 is None else f"rank={rank},l2_basis={l2:g}"


def collaborative_split(
    judgments: PreferenceData, seed: int, caps: tuple[int | None, int | None] = (None, None)
) -> tuple[PreferenceData, pd.DataFrame] | None:
    """(inner training pairs as comparison data, validation pairs) of a collaborative inner split of
    ``judgments``: the outer split's own hold-out one level down
    (:func:`personalign.evaluate.holdout.collaborative_pairs` with the (training, test) pair ``caps``); None with
    fewer than :data:`MIN_ITEM_PRIOR_PAIRS` validation pairs."""
    rng = np.random.default_rng(seed)
    _, _, tr, va = collaborative_pairs(judgments, INNER_FRAC, caps[0], caps[1], rng)
    va = va[va["user_id"].astype(str).isin(set(tr["user_id"].astype(str)))] if len(va) and len(tr) else va
    if not len(tr) or len(va) < MIN_ITEM_PRIOR_PAIRS:
        return None
    inner = PreferenceData(comparisons=tr, users=judgments.users, items=judgments.items, name=judgments.name)
    return inner, va.reset_index(drop=True)


def tune_item_prior(
    make: Callable[..., Any],
    split: tuple[PreferenceData, pd.DataFrame],
    grid: tuple[float, ...],
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The item prior's precision ``l2_item`` (and ``l2_item_factors``, tied to it) chosen over ``grid`` by
    log-loss at rank 0 on a :func:`collaborative_split`. Returns ``l2_item``, ``val_log_loss`` per value and
    the ``split`` sizes."""
    inner, va = split
    losses: dict[float, float] = {}
    for n, l2 in enumerate(grid, start=1):
        if step is not None:
            step(f"tuning item prior l2_item={l2:g} ({n}/{len(grid)})")
        model = make(rank=0, l2_item=l2, l2_item_factors=l2).fit(inner)
        losses[float(l2)] = val_log_loss(model, va)
    best = min(losses, key=losses.get)
    sizes = {"train_pairs": int(len(inner.comparisons)), "val_pairs": int(len(va))}
    return {"l2_item": best, "val_log_loss": {f"{k:g}": v for k, v in losses.items()}, "split": sizes}


def collaborative_check(
    make: Callable[..., Any], split: tuple[PreferenceData, pd.DataFrame], params: dict[str, Any]
) -> dict[str, float]:
    """The chosen personal candidate ``make(**params)`` fitted on a :func:`collaborative_split`, scored as it
    is and shared only on its validation pairs (judgments of items other people judged)."""
    inner, va = split
    model = make(**params).fit(inner)
    return {"personal": val_log_loss(model, va), "shared_only": val_log_loss(model.shared_only(), va)}


def tune_personal(
    make: Callable[..., Any],
    train_data: PreferenceData,
    rank: int,
    ranks: list[int],
    l2_grid: tuple[float, ...],
    seed: int,
    step: Callable[[str], None] | None = None,
    item_grid: tuple[float, ...] = (),
    item_judgments: PreferenceData | None = None,
    item_caps: tuple[int | None, int | None] = (None, None),
) -> tuple[Any, dict[str, Any]]:
    """Fit ``make(**params)`` with the personal rank and penalty chosen on :func:`tuning_split` (see the module);
    with ``item_grid`` the item prior's precision is chosen first (:func:`tune_item_prior` on ``item_judgments``,
    the judgments the training pairs were drawn from, with their pair ``item_caps``; default ``train_data``).

    Returns the model refitted on all of ``train_data`` and what was chosen: ``rank``, ``l2_basis`` (None: the
    model's default), ``inner_val_log_loss`` per grid point, ``inner_fits``, ``tuning_seconds``, ``inner_split``
    (or ``note`` when no grouped split exists and the configured model is fitted as it is), ``item_prior``.
    """
    t0 = time.perf_counter()
    item_prior: dict[str, Any] | None = None
    collab = None
    if item_grid:
        judgments = item_judgments if item_judgments is not None else train_data
        collab = collaborative_split(judgments, seed, item_caps)
        if collab is None:
            item_prior = {"l2_item": None, "note": "no collaborative inner split (too few held-out pairs)"}
        else:
            item_prior = tune_item_prior(make, collab, item_grid, step)
            make = _with_item_prior(make, item_prior["l2_item"])
    model, chosen = _tune_personal_part(make, train_data, rank, ranks, l2_grid, seed, step)
    if item_prior is not None:
        chosen["item_prior"] = item_prior
    if collab is not None and chosen.get("personal_part") == "kept":
        # a model with item parameters serves the collaborative cell too: its personal part must also beat its
        # collapsed control on judgments of items other people judged, which the split by items never scores
        if step is not None:
            step("checking the personal part on the collaborative split")
        params = {"rank": chosen["fitted_rank"]}
        if chosen.get("l2_basis") is not None:
            params["l2_basis"] = chosen["l2_basis"]
        check = collaborative_check(make, collab, params)
        chosen["collaborative_check"] = check
        if check["shared_only"] <= check["personal"]:
            model = model.shared_only()
            chosen["rank"] = 0
            chosen["personal_part"] = (
                "removed: its collapsed control was better on held-out judgments of items others judged"
            )
    chosen["tuning_seconds"] = time.perf_counter() - t0
    return model, chosen


def _with_item_prior(make: Callable[..., Any], l2: float) -> Callable[..., Any]:
    def with_prior(**params: Any) -> Any:
        return make(**{"l2_item": l2, "l2_item_factors": l2, **params})

    return with_prior


def _tune_personal_part(
    make: Callable[..., Any],
    train_data: PreferenceData,
    rank: int,
    ranks: list[int],
    l2_grid: tuple[float, ...],
    seed: int,
    step: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    split = tuning_split(train_data.comparisons, seed=seed)
    if split is None or (len(ranks) <= 1 and not l2_grid):
        model = make(rank=rank)
        model.fit(train_data)
        note = "no grouped inner split (too few items or prompts)" if split is None else "nothing to choose"
        return model, {"rank": rank, "l2_basis": None, "note": note, "inner_fits": 0}
    tr, va, info = split
    inner = train_data.copy(comparisons=tr)
    # (rank, l2, shared only): a personal candidate is also scored with its personal part folded into the
    # population's reward (``shared_only``): its gain over rank 0 may be only the extra shared capacity ``B m``
    losses: dict[tuple[int, float | None, bool], float] = {}
    n_fits = max(len(l2_grid), 1) + sum(r != rank for r in ranks) if rank > 0 else 1

    def trial(r: int, l2: float | None) -> None:
        if step is not None:
            step(f"tuning {grid_label(r, l2)} ({len({k[:2] for k in losses}) + 1}/{n_fits})")
        params: dict[str, Any] = {"rank": r} if l2 is None or r == 0 else {"rank": r, "l2_basis": l2}
        model = make(**params).fit(inner)
        key = (r, None if r == 0 else l2)
        losses[(*key, False)] = val_log_loss(model, va)
        if r > 0 and hasattr(model, "shared_only"):
            losses[(*key, True)] = val_log_loss(model.shared_only(), va)

    for l2 in (l2_grid if rank > 0 else ()) or (None,):
        trial(rank, l2)
    best_l2 = min(losses, key=losses.get)[1]
    for r in ranks:
        if r != rank:
            trial(r, best_l2)
    best_rank, best_l2, shared = min(losses, key=losses.get)
    params = {"rank": best_rank} if best_l2 is None else {"rank": best_rank, "l2_basis": best_l2}
    if step is not None:
        step(f"refit at {grid_label(best_rank, best_l2)}{' (shared only)' if shared else ''}")
    model = make(**params).fit(train_data)
    if shared:
        model = model.shared_only()
    return model, {
        "rank": 0 if shared else best_rank,
        "fitted_rank": best_rank,
        "l2_basis": best_l2,
        "personal_part": (
            "removed: its collapsed control was better on held-out items"
            if shared
            else ("none: rank 0 was best" if best_rank == 0 else "kept")
        ),
        "inner_val_log_loss": {
            grid_label(r, l2) + (" shared only" if sh else ""): v for (r, l2, sh), v in losses.items()
        },
        "inner_fits": len({k[:2] for k in losses}),
        "inner_split": info,
    }
