"""One seed's split turned into pairs: the collaborative hold-out by item, test cells, k-shot pools, and why a
cell is empty.

The collaborative hold-out holds out *items*, never single pairs, for every kind of judgment. For each seen
person it picks items that at least two other persons also judged; the person's judgments of those items leave the
training data (a rating or vote of the item, every comparison that touches it, the item inside a ranking), and the
person's test pairs are the pairs of two held-out items. So no test pair shares an item with that person's training
judgments: a model that memorizes each person's training order (even through transitivity: a > b and b > c give
a > c) knows nothing of a test pair, while the other persons' judgments of the held-out items stay in training
(what a collaborative model may learn from).

An item is held out by at most ``ceil(frac * judges)`` persons, and never by so many that fewer than two
of its judges stay in training (:func:`holder_caps`); persons are visited in random order. Without the cap, an item
that few persons judged is held out by most of them at once (every person spends their share on the same few
eligible items), and the crowd of the training data is about half the crowd the oracle reads.

- Ratings and votes: a ``frac`` share of the person's distinct items (at least two), drawn among the eligible
  items; the test pairs are the data layer's pairs of the held-out judgments (:func:`held_only`).
- Comparisons and rankings: items are added two at a time, from the person's own eligible pairs in random order,
  until the share is reached, so that the held-out items form at least one test pair; a person who would keep no
  training pair holds out nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import personalign.evaluate.metrics as M
from personalign.data.core import COMPARISON_COLUMNS, POPULATION_USER, PreferenceData
from personalign.data.pairs import pair_outcomes, pairwise_judgments, pointwise_pairs
from personalign.data.pointwise import item_agreement
from personalign.data.schema import item_id_for
from personalign.errors import DataError

MIN_OTHER_JUDGES = 2  # a held-out item must have been judged by at least this many other persons


# ----------------------------------------------------------------------------------------------- pairs
def held_only(pt: pd.DataFrame, held: set[tuple[str, str]]) -> pd.DataFrame:
    """The rows of a pointwise table whose (user, item) is held out.

    A test pair needs both of its items held out: a pair of one held-out and one training item leaks its label,
    because a pair exists only when the two values differ; with the training value known (say the person's
    lowest), that alone decides the answer, and a model that memorizes training labels looks personal.
    """
    m = np.fromiter(((u, i) in held for u, i in zip(pt["user_id"], pt["item_id"])), bool, len(pt))
    return pt[m]


def cap_pairs(comps: pd.DataFrame, cap: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """Non-tie comparisons, at most ``cap`` per person (random)."""
    c = comps[~comps["tie"].astype(bool)] if len(comps) else comps
    if cap is None or not len(c):
        return c.reset_index(drop=True)
    r = pd.Series(rng.random(len(c)), index=c.index).groupby(c["user_id"]).rank(method="first")
    return c[(r <= cap).to_numpy()].reset_index(drop=True)


def pairwise_table(data: PreferenceData) -> pd.DataFrame:
    """The native comparisons and the pairs of every ranking of ``data`` (one comparisons table)."""
    return pairwise_judgments(data.comparisons, data.rankings)


def judgment_pairs(
    data: PreferenceData, cap: int | None, rng: np.random.Generator, held: set[tuple[str, str]] | None = None
) -> pd.DataFrame:
    """Every judgment of ``data`` as capped per-person pairs: ratings and votes (passes left out), native
    comparisons (ties left out) and rankings. With ``held`` only the pointwise judgments held out pair (see
    :func:`held_only`; held-out comparisons and rankings come from :func:`collaborative_holdout`), persons only."""
    frames = []
    pt = data.pointwise(passes=False)
    if held is not None:
        pt = held_only(pt, held)
    if len(pt):
        frames.append(pointwise_pairs(pt, max_pairs_per_user=cap, rng=rng))
    if held is None and len(data.comparisons):
        frames.append(cap_pairs(data.comparisons, cap, rng))
    if held is None and len(data.rankings):
        frames.append(cap_pairs(pairwise_judgments(data.comparisons.iloc[:0], data.rankings), cap, rng))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    return out[out["user_id"] != POPULATION_USER].reset_index(drop=True) if held is not None else out


# ------------------------------------------------------------------------------------ the hold-out
def item_judges(data: PreferenceData) -> pd.Series:
    """Per item: how many persons judged it, over every kind (a vote's pass is no judgment; no population)."""
    frames = []
    pt = data.pointwise(passes=False)
    if len(pt):
        frames.append(pt[["user_id", "item_id"]])
    pw = pairwise_table(data)
    for col in ("chosen_id", "rejected_id"):
        if len(pw):
            frames.append(pw[["user_id", col]].rename(columns={col: "item_id"}))
    if not frames:
        return pd.Series(dtype=int)
    t = pd.concat(frames, ignore_index=True).astype(str)
    t = t[t["user_id"] != POPULATION_USER].drop_duplicates()
    return t.groupby("item_id")["user_id"].size()


def holder_caps(judges: pd.Series, frac: float) -> dict[str, int]:
    """Per item judged by ``n`` persons: how many may hold it out, ``min(ceil(frac * n), n - 2)``, so that at
    least ``MIN_OTHER_JUDGES`` (2) of its judges keep it in training; items with no room are left out. (The
    ceiling, not the floor: the caps must add up to at least the ``frac`` share every person holds out.)"""
    n = judges.to_numpy()
    cap = np.minimum(np.ceil(frac * n), n - MIN_OTHER_JUDGES).astype(int)
    return {str(i): int(c) for i, c in zip(judges.index, cap) if c > 0}


def _take(room: dict[str, int], items: set[str]) -> None:
    for i in items:
        room[i] -= 1
        if room[i] <= 0:
            del room[i]


def _pointwise_held(g: pd.DataFrame, room: dict[str, int], frac: float, rng: np.random.Generator) -> set[str]:
    """One person's held-out items: ``frac`` of their distinct items (at least two) among those with room."""
    cand = sorted(set(g["item_id"].astype(str)) & room.keys())
    n = max(2, int(np.floor(frac * g["item_id"].nunique())))
    if len(g) < 4 or len(cand) < 2:
        return set()
    return {str(it) for it in rng.choice(cand, size=min(n, len(cand)), replace=False)}


def person_pair_holdout(
    a: np.ndarray, b: np.ndarray, ok: set[str], frac: float, rng: np.random.Generator
) -> set:
    """The items one person holds out of their pairs ``(a[k], b[k])``: grown two at a time from their own pairs
    whose items are both eligible, up to ``frac`` of their distinct items (at least two); empty when nothing would
    be left to train on."""
    budget = max(2, int(np.floor(frac * len(set(a) | set(b)))))
    cand = [k for k in range(len(a)) if a[k] != b[k] and a[k] in ok and b[k] in ok]
    held: set[str] = set()
    for k in rng.permutation(len(cand)):
        new = {a[cand[k]], b[cand[k]]} - held
        if len(held) + len(new) <= budget:
            held |= new
        if len(held) >= budget:
            break
    keeps = any(x not in held and y not in held for x, y in zip(a, b))
    return held if len(held) >= 2 and keeps else set()


def without_held(data: PreferenceData, held: set[tuple[str, str]]) -> PreferenceData:
    """``data`` without the held-out (person, item) judgments: their ratings and votes, every comparison touching
    a held-out item, and the held-out items inside rankings (a ranking left with fewer than two items goes)."""
    if not held:
        return data.copy()
    keys = {u + "\x1f" + i for u, i in held}

    def key(users: pd.Series, items: pd.Series) -> pd.Series:
        return users.astype(str) + "\x1f" + items.astype(str)

    tabs: dict[str, pd.DataFrame] = {}
    for k in ("ratings", "votes"):
        t = getattr(data, k)
        if len(t):
            tabs[k] = t[~key(t["user_id"], t["item_id"]).isin(keys).to_numpy()]
    c = data.comparisons
    if len(c):
        touch = key(c["user_id"], c["chosen_id"]).isin(keys) | key(c["user_id"], c["rejected_id"]).isin(keys)
        tabs["comparisons"] = c[~touch.to_numpy()]
    rk = data.rankings
    if len(rk):
        users = {u for u, _ in held}
        rk = rk.copy()
        rk["responses"] = [
            [t for t in resp if (str(u), item_id_for(p, t)) not in held] if str(u) in users else list(resp)
            for u, p, resp in zip(rk["user_id"], rk["prompt"], rk["responses"])
        ]
        tabs["rankings"] = rk[rk["responses"].map(len) >= 2]
    return data.copy(**tabs)


def collaborative_holdout(
    train: PreferenceData, frac: float, rng: np.random.Generator
) -> tuple[PreferenceData, set[tuple[str, str]], pd.DataFrame]:
    """Hold out, for each seen person, items that at least two other persons also judged (see the module).

    Returns (the data without the held-out judgments, the held-out (user, item) set, the held-out pairs of
    comparisons and rankings: the person's own pairs of two held-out items).
    """
    held: set[tuple[str, str]] = set()
    empty = pd.DataFrame(columns=COMPARISON_COLUMNS)
    if frac <= 0:
        return train.copy(), held, empty
    room = holder_caps(item_judges(train), frac)  # items the person plus at least two others judged
    pt = train.pointwise(passes=False)
    pt = pt[pt["user_id"] != POPULATION_USER]
    pw = pairwise_table(train)
    pw = pw[(pw["user_id"] != POPULATION_USER) & ~pw["tie"]].reset_index(drop=True)
    by_pt = dict(tuple(pt.groupby("user_id", sort=True))) if len(pt) else {}
    by_pw = dict(tuple(pw.groupby("user_id", sort=True))) if len(pw) else {}
    users = sorted(set(by_pt) | set(by_pw), key=str)
    # a random order: with the caps binding, the persons visited first would otherwise get their share first
    for uid in (users[k] for k in rng.permutation(len(users))):
        mine = _pointwise_held(by_pt[uid], room, frac, rng) if uid in by_pt else set()
        _take(room, mine)
        if uid in by_pw:
            g = by_pw[uid]
            a = g["chosen_id"].astype(str).to_numpy(object)
            b = g["rejected_id"].astype(str).to_numpy(object)
            more = person_pair_holdout(a, b, set(room), frac, rng) - mine
            _take(room, more)
            mine |= more
        held |= {(str(uid), i) for i in mine}
    held_pairs = empty
    if len(pw):
        both = np.fromiter(
            (
                (u, a) in held and (u, b) in held
                for u, a, b in zip(
                    pw["user_id"].astype(str), pw["chosen_id"].astype(str), pw["rejected_id"].astype(str)
                )
            ),
            bool,
            len(pw),
        )
        held_pairs = pw[both].reset_index(drop=True)
    return without_held(train, held), held, held_pairs


def collaborative_pairs(
    train: PreferenceData, frac: float, train_cap: int | None, test_cap: int | None, rng: np.random.Generator
) -> tuple[PreferenceData, set[tuple[str, str]], pd.DataFrame, pd.DataFrame]:
    """:func:`collaborative_holdout` of ``train`` as pairs: (the data without the held-out judgments, the held-out
    (user, item) set, its training pairs capped per person, the held-out pairs capped per person)."""
    fit_data, held, held_pairs = collaborative_holdout(train, frac, rng)
    train_pairs = judgment_pairs(fit_data, train_cap, rng)
    frames = [judgment_pairs(train, test_cap, rng, held=held)] if held else []
    if len(held_pairs):
        frames.append(cap_pairs(held_pairs, test_cap, rng))
    frames = [f for f in frames if len(f)]
    test = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COMPARISON_COLUMNS)
    return fit_data, held, train_pairs, test


def crowd_reach(crowd_data: PreferenceData, fit_data: PreferenceData, test: pd.DataFrame) -> dict[str, float]:
    """Mean number of *other* persons who judged a test pair's item: in the data the crowd oracle reads (the
    whole data set, test cells included) and in the training data the models fit on. The oracle's edge where the
    first is larger: it reads judgments no model is given."""
    if not len(test):
        return {}
    out = {}
    for name, d, own in (("crowd_oracle", crowd_data, 1), ("training", fit_data, 0)):
        judges = item_judges(d)
        n = [judges.get(str(i), 0) for col in ("chosen_id", "rejected_id") for i in test[col]]
        # the test person judged the item in the whole data, never in the training data (it is held out)
        out[name] = float(max(np.mean(n) - own, 0.0))
    return out


# ------------------------------------------------------------------------------------- contested pairs
def pair_contested_fn(data: PreferenceData) -> Callable[[pd.DataFrame], np.ndarray]:
    """Per test pair: 1 contested, 0 consensus, NaN unknown. Pointwise data: by its items (the data layer's rule,
    :meth:`PreferenceData.contested_items`); comparisons and rankings: by the item pair, the same rule on the pair
    outcomes of :func:`personalign.data.pairs.pair_outcomes` (the neutral answer is a tie)."""
    items = data.contested_items()
    if len(items):
        return lambda df: M.pair_contested(df["chosen_id"], df["rejected_id"], items)
    pw = pairwise_table(data)
    pw = pw[pw["user_id"] != POPULATION_USER]
    if not len(pw):
        return lambda df: np.full(len(df), np.nan)
    agree = item_agreement(pair_outcomes(pw), 0.0)
    agree = agree[agree["judges"] >= 3]
    flag = (agree["top_share"] < 0.8).astype(float).to_dict()

    def fn(df: pd.DataFrame) -> np.ndarray:
        keys = pair_outcomes(df)["item_id"]
        return np.array([flag.get(k, np.nan) for k in keys], dtype=float)

    return fn


# ------------------------------------------------------------------------------------- one seed's pairs
@dataclass
class SeedPairs:
    """One seed's split turned into pairs: the fitting data, the held-out set, the training pairs and the test
    cells (persons seen), with the k-shot pools and tests of the unseen persons; ``notes`` says why a cell (or
    the k-shot curve, key "kshot") has no test pairs."""

    fit_data: PreferenceData
    held: set[tuple[str, str]]
    train_pairs: pd.DataFrame
    cells: dict[str, pd.DataFrame]
    pools: dict[str, pd.DataFrame]
    tests: dict[str, pd.DataFrame]
    notes: dict[str, str] = field(default_factory=dict)


def collaborative_note(train: PreferenceData, frac: float, held: set, n_pairs: int) -> str | None:
    """Why the collaborative cell has no test pairs (None when it has some)."""
    if n_pairs:
        return None
    if frac <= 0:
        return "collab_frac is 0: no items held out"
    if not held:
        return (
            f"no held-out items: no seen person has two items judged by >= {MIN_OTHER_JUDGES} other persons "
            "(and enough judgments left to train on)"
        )
    if len(train.pointwise(passes=False)):
        return "held-out items gave no test pairs (a pair needs two held-out items of one prompt judged differently)"
    return "held-out items gave no test pairs (ties only)"


def split_notes(sp: Any, cells: dict[str, pd.DataFrame], tests: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Why the unseen-items cell and the k-shot curve have no test pairs, where they have none."""
    notes: dict[str, str] = {}
    if not len(cells["unseen_items"]):
        if not len(sp.seen_users_unseen_items):
            notes["unseen_items"] = (
                f"no unseen {sp.unit}s (unseen_item_frac is 0 or too few {sp.unit}s to hold out)"
            )
        else:
            notes["unseen_items"] = (
                f"seen persons' judgments of unseen {sp.unit}s gave no pairs (two items of one prompt, judged differently)"
            )
    if not tests:
        if not sp.unseen_users:
            notes["kshot"] = "no unseen persons (unseen_user_frac is 0 or too few persons)"
        else:
            notes["kshot"] = f"unseen persons have no test pairs on unseen {sp.unit}s"
    return notes


def seed_pairs(data: PreferenceData, sp: Any, cfg: Any, rng: np.random.Generator, seed: int) -> SeedPairs:
    """The pairs of one seed's split (``cfg``: an :class:`~personalign.evaluate.config.EvalConfig`), every sample
    drawn from ``rng`` in a fixed order."""
    fit_data, held, train_pairs, collab = collaborative_pairs(
        sp.train, cfg.collab_frac, cfg.max_train_pairs, cfg.max_test_pairs, rng
    )
    if len(train_pairs) == 0:
        raise DataError(
            f"{data.name}: no training pairs after the split (seed {seed})",
            field="judgments",
            expected="persons who judged at least two items differently",
        )
    unseen = judgment_pairs(sp.seen_users_unseen_items, cfg.max_test_pairs, rng)
    cells = {"collaborative": collab, "unseen_items": unseen[unseen["user_id"] != POPULATION_USER]}
    pool_all = judgment_pairs(sp.unseen_users_seen_items, max(cfg.ks) if cfg.ks else 0, rng)
    test_all = judgment_pairs(sp.unseen_users_unseen_items, cfg.max_test_pairs, rng)
    tests = {u: g.reset_index(drop=True) for u, g in test_all.groupby("user_id")}
    pools = {u: g.reset_index(drop=True) for u, g in pool_all.groupby("user_id")}
    notes = split_notes(sp, cells, tests)
    note = collaborative_note(sp.train, cfg.collab_frac, held, len(collab))
    if note:
        notes["collaborative"] = note
    return SeedPairs(fit_data, held, train_pairs, cells, pools, tests, notes)
