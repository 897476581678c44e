"""Deterministic splits: persons (seen / unseen) crossed with items or prompts (seen / unseen), and k-shot context.

The unit of the item axis is the prompt when the data has prompts (a comparison's candidates stay together),
otherwise the item (a comparison belongs to a cell only when both of its items do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from personalign.data.core import KINDS, POPULATION_USER, PreferenceData


@dataclass
class Split:
    """Four cells of a person x item split. ``train`` is seen persons on seen items."""

    train: PreferenceData
    seen_users_unseen_items: PreferenceData
    unseen_users_seen_items: PreferenceData
    unseen_users_unseen_items: PreferenceData
    seen_users: list[str]
    unseen_users: list[str]
    unit: str  # "prompt" or "item"
    seed: int

    def cells(self) -> dict[str, PreferenceData]:
        """The training data and the three held-out cells, by name."""
        return {
            "train": self.train,
            "seen_users_unseen_items": self.seen_users_unseen_items,
            "unseen_users_seen_items": self.unseen_users_seen_items,
            "unseen_users_unseen_items": self.unseen_users_unseen_items,
        }


def _has_prompts(data: PreferenceData) -> bool:
    return any(len(t := getattr(data, k)) and (t["prompt"] != "").any() for k in KINDS)


def _shuffle_take(ids: list[str], frac: float, rng: np.random.Generator) -> set[str]:
    ids = sorted(ids)
    order = rng.permutation(len(ids))
    n = int(round(frac * len(ids)))
    return {ids[i] for i in order[:n]}


def split(
    data: PreferenceData,
    *,
    unseen_user_frac: float = 0.2,
    unseen_item_frac: float = 0.2,
    seed: int = 0,
    unit: str | None = None,
) -> Split:
    """Split persons and items (or prompts) at random, deterministically by ``seed``.

    Population-level judgments (``POPULATION_USER``) count as seen persons.
    """
    rng = np.random.default_rng(seed)
    unit = unit or ("prompt" if _has_prompts(data) else "item")
    users = data.user_ids
    unseen_u = _shuffle_take(users, unseen_user_frac, rng)
    seen_u = [u for u in users if u not in unseen_u]
    if unit == "prompt":
        prompts = sorted({p for k in KINDS for p in getattr(data, k)["prompt"].unique()})
        unseen_p = _shuffle_take(prompts, unseen_item_frac, rng)
        seen_p = set(prompts) - unseen_p

        def by_items(d: PreferenceData, unseen: bool) -> PreferenceData:
            return d.filter_prompts(unseen_p if unseen else seen_p)
    else:
        items = sorted(data.items["item_id"].astype(str))
        unseen_i = _shuffle_take(items, unseen_item_frac, rng)
        seen_i = set(items) - unseen_i

        def by_items(d: PreferenceData, unseen: bool) -> PreferenceData:
            return d.filter_items(unseen_i if unseen else seen_i)

    seen_d = data.filter_users(seen_u, keep_population=True)
    unseen_d = data.filter_users(unseen_u, keep_population=False)
    return Split(
        train=by_items(seen_d, False),
        seen_users_unseen_items=by_items(seen_d, True),
        unseen_users_seen_items=by_items(unseen_d, False),
        unseen_users_unseen_items=by_items(unseen_d, True),
        seen_users=seen_u,
        unseen_users=sorted(unseen_u),
        unit=unit,
        seed=seed,
    )


def split_judgments(
    comparisons: pd.DataFrame, frac: float, seed: int = 0, by: str = "user_id"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a fraction of each person's comparisons (e.g. an early-stopping validation set)."""
    rng = np.random.default_rng(seed)
    u = rng.random(len(comparisons))
    # rank within person so every person keeps at least one training judgment
    df = comparisons.assign(_u=u)
    df["_r"] = df.groupby(by)["_u"].rank(method="first")
    df["_n"] = df.groupby(by)["_u"].transform("size")
    held = (df["_r"] > np.maximum(1, np.round(df["_n"] * (1 - frac)))).to_numpy()
    return comparisons[~held].reset_index(drop=True), comparisons[held].reset_index(drop=True)


def split_by_items(
    comps: pd.DataFrame, frac: float, seed: int = 0, both: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the comparisons that touch a random ``frac`` of the prompts (or, without prompts, of the items).

    Early stopping on such a split measures what matters for new items: a personal part that memorizes the
    training items stops improving it, while a random split of judgments keeps rewarding that memorization.

    ``both`` (items only): a held-out pair has *both* items held out and a pair of one held-out and one training
    item is dropped from both sides, as in the evaluation's test cells. A mixed pair leaks: the person's training
    judgments of its training item say where they put that item, so memorizing it looks useful there.
    """
    rng = np.random.default_rng(seed)
    if (comps["prompt"] != "").any():
        units = np.array(sorted(comps["prompt"].unique()))
        held = set(rng.choice(units, size=max(1, int(round(frac * len(units)))), replace=False))
        mask = comps["prompt"].isin(held).to_numpy()
        keep = np.ones(len(comps), dtype=bool)
    else:
        units = np.array(sorted(set(comps["chosen_id"]) | set(comps["rejected_id"])))
        # an item is held out with probability p so that about ``frac`` of the pairs are held out: 1-(1-p)^2 =
        # frac when one held-out item is enough, p^2 = frac when both must be (about 1-2p+p^2 of pairs kept)
        p = np.sqrt(frac) if both else 1.0 - np.sqrt(1.0 - frac)
        held = set(units[rng.random(len(units)) < p])
        a, b = comps["chosen_id"].isin(held).to_numpy(), comps["rejected_id"].isin(held).to_numpy()
        mask = (a & b) if both else (a | b)
        keep = mask | ~(a | b)  # with ``both``: mixed pairs go nowhere
    if mask.all() or not mask.any():
        return split_judgments(comps, frac, seed=seed)
    return comps[keep & ~mask].reset_index(drop=True), comps[mask].reset_index(drop=True)


def kshot(
    comparisons: pd.DataFrame, user_id: str, k: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``k`` comparisons of one person sampled as context (deterministic by seed), and the rest as queries."""
    own = comparisons[comparisons["user_id"] == str(user_id)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(own))
    k = min(k, len(own))
    return own.iloc[np.sort(order[:k])], own.iloc[np.sort(order[k:])]


def kshot_all(comparisons: pd.DataFrame, k: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`kshot` for every person at once: (context, queries), each a comparisons table."""
    rng = np.random.default_rng(seed)
    df = comparisons[comparisons["user_id"] != POPULATION_USER]
    r = pd.Series(rng.random(len(df)), index=df.index).groupby(df["user_id"]).rank(method="first")
    ctx = r <= k
    return df[ctx.to_numpy()], df[~ctx.to_numpy()]
