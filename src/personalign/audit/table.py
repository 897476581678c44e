"""One long table of pointwise judgments (person, unit, value) that every audit section reads.

The data's pointwise table (:meth:`personalign.data.PreferenceData.pointwise`): ratings are ordinal on
``rating_scale``; votes are -1 disagree / 0 pass / +1 agree, a pass the middle of each person's weak order. A person
who judged an item twice counts once (the mean of the judgments). Pairs come from the data layer's one rule
(:func:`personalign.data.pairs.pointwise_pairs`).

Comparison and ranking data (a ranking read as all its pairs) have no pointwise table over items; their unit is the
*item pair* (:func:`judgments_from_pairs`): a person's outcome on the unordered pair {a, b} is +1 when they sided
with the pair's majority, -1 against it, 0 for a tie (each pair oriented so that its majority is +1; the mean of
repeated judgments). Agreement, the contested share, the variance decomposition and the structure test then read
that table as they read ratings; social choice and the fit of one reward read the item-level pairs (:class:`Pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from personalign.data.core import POPULATION_USER, PreferenceData
from personalign.data.pairs import pair_outcomes, pairwise_judgments, pointwise_pairs
from personalign.errors import DataError


@dataclass
class Judgments:
    """Pointwise judgments as integer codes: ``u`` (person index), ``i`` (item index), ``y`` (value)."""

    users: list[str]
    items: list[str]
    prompts: list[str]  # prompt of each item (pairs are only formed within a prompt)
    u: np.ndarray
    i: np.ndarray
    y: np.ndarray
    kind: str  # "ratings" | "votes" | "pairs" (item pairs of comparison data; see the module docstring)
    scale: tuple[float, float]
    notes: list[str] = field(default_factory=list)
    neutral: float | None = None  # the answer that takes no side (None: the scale's midpoint)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def midpoint(self) -> float:
        return (self.scale[0] + self.scale[1]) / 2.0

    @property
    def levels(self) -> np.ndarray:
        """The answer categories that occur (sorted)."""
        return np.unique(self.y)

    def side(self) -> np.ndarray:
        """-1 / 0 / +1: below, at, above the neutral answer (the scale's midpoint unless the data names another;
        a vote's sign, a pass is 0)."""
        return np.sign(self.y - (self.midpoint if self.neutral is None else self.neutral)).astype(int)

    def matrix(self) -> np.ndarray:
        """Persons x items, NaN where a person did not judge the item."""
        m = np.full((len(self.users), len(self.items)), np.nan)
        m[self.u, self.i] = self.y
        return m

    def utility(self) -> np.ndarray:
        """The value mapped to [0, 1] on the scale (0 = bottom, 1 = top)."""
        lo, hi = self.scale
        return (self.y - lo) / (hi - lo) if hi > lo else np.zeros_like(self.y)

    def subset(self, mask: np.ndarray) -> Judgments:
        """Only the judgments where ``mask`` is True, persons and items re-indexed."""
        u, i, y = self.u[mask], self.i[mask], self.y[mask]
        uu, u_new = np.unique(u, return_inverse=True)
        ii, i_new = np.unique(i, return_inverse=True)
        return Judgments(
            users=[self.users[k] for k in uu],
            items=[self.items[k] for k in ii],
            prompts=[self.prompts[k] for k in ii],
            u=u_new,
            i=i_new,
            y=y,
            kind=self.kind,
            scale=self.scale,
            notes=list(self.notes),
            neutral=self.neutral,
        )


def judgments_from_data(data: PreferenceData) -> Judgments | None:
    """The pointwise table of ``data`` (ratings first, else votes); None for comparisons-only data."""
    kind = "ratings" if len(data.ratings) else "votes" if len(data.votes) else None
    if kind is None:
        return None
    scale = tuple(float(x) for x in data.value_scale(kind))
    t = data.pointwise(kind)
    t = t[t["user_id"] != POPULATION_USER][["user_id", "item_id", "prompt", "rating"]]
    if t["rating"].isna().any():
        row = int(np.flatnonzero(t["rating"].isna().to_numpy())[0])
        raise DataError(
            "got nan", field="vote" if kind == "votes" else "rating", row=row, expected="a number"
        )
    notes = []
    g = t.groupby(["user_id", "item_id"], sort=False)
    if g.ngroups < len(t):
        notes.append(f"{len(t) - g.ngroups} repeated (person, item) judgments averaged")
        t = g.agg(prompt=("prompt", "first"), rating=("rating", "mean")).reset_index()
    uc = pd.Categorical(t["user_id"])
    ic = pd.Categorical(t["item_id"])
    prompt_of = t.groupby("item_id", observed=True)["prompt"].first()
    items = [str(x) for x in ic.categories]
    return Judgments(
        users=[str(x) for x in uc.categories],
        items=items,
        prompts=[str(prompt_of.get(x, "")) for x in items],
        u=uc.codes.astype(np.int64),
        i=ic.codes.astype(np.int64),
        y=t["rating"].to_numpy(float),
        kind=kind,
        scale=(scale[0], scale[1]),
        notes=notes,
        neutral=data.neutral_value(kind) if kind == "ratings" else None,
    )


def restrict(j: Judgments, max_items: int | None, min_judgments: int = 1) -> Judgments:
    """The ``max_items`` most-judged items, then persons with at least ``min_judgments`` judgments of them."""
    keep = np.ones(j.n, bool)
    if max_items is not None and len(j.items) > max_items:
        counts = np.bincount(j.i, minlength=len(j.items))
        # stable order: most judged first, ties by item index
        top = np.argsort(-counts, kind="stable")[:max_items]
        keep &= np.isin(j.i, top)
    if min_judgments > 1:
        per = np.bincount(j.u[keep], minlength=len(j.users))
        keep &= per[j.u] >= min_judgments
    if keep.all():
        return j
    require_left(keep, max_items, min_judgments, "judgments")
    return j.subset(keep)


def require_left(keep: np.ndarray, max_items: int | None, min_judgments: int, what: str) -> None:
    """DataError when the audit's restriction (most-judged items, persons with enough judgments) keeps nothing."""
    if not keep.any():
        raise DataError(
            f"no {what} left after keeping the {max_items} most-judged items and persons with "
            f">= {min_judgments} {what}",
            field="max_items",
            expected="a looser restriction",
        )


@dataclass
class Pairs:
    """Per-person strict preferences: person ``u`` preferred item ``a`` over item ``b``."""

    u: np.ndarray
    a: np.ndarray
    b: np.ndarray
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return len(self.u)

    def counts(self, items: np.ndarray | None = None) -> np.ndarray:
        """Win-count matrix ``C[a, b]`` = number of (person, pair) preferring a over b."""
        c = np.zeros((self.n_items, self.n_items))
        np.add.at(c, (self.a, self.b), 1.0)
        return c


def pairs_from_judgments(j: Judgments, max_pairs_per_person: int | None = None, seed: int = 0) -> Pairs:
    """Two items of one prompt that one person judged differently make one pair (the higher-valued one wins);
    at most ``max_pairs_per_person`` per person (sampled by ``seed``). The data layer's rule, on the codes."""
    table = pd.DataFrame(
        {"user_id": j.u, "item_id": j.i, "prompt": np.asarray(j.prompts, object)[j.i], "rating": j.y}
    )
    p = pointwise_pairs(table, max_pairs_per_user=max_pairs_per_person, rng=np.random.default_rng(seed))
    codes = [
        p[c].to_numpy(np.int64) if len(p) else np.zeros(0, np.int64)
        for c in ("user_id", "chosen_id", "rejected_id")
    ]
    return Pairs(*codes, len(j.users), len(j.items))


def comparison_table(data: PreferenceData) -> pd.DataFrame:
    """Every per-person comparison of ``data``: the native comparisons and all pairs of every ranking (no
    population-level rows)."""
    c = pairwise_judgments(data.comparisons, data.rankings)
    return c[c["user_id"] != POPULATION_USER].reset_index(drop=True)


def restrict_comparisons(c: pd.DataFrame, max_items: int | None, min_judgments: int = 1) -> pd.DataFrame:
    """The comparisons among the ``max_items`` most-judged items (each item's count: the comparisons it is in),
    then those of persons with at least ``min_judgments`` of them: :func:`restrict` for comparison data."""
    keep = np.ones(len(c), bool)
    if max_items is not None:
        counts = pd.concat([c["chosen_id"], c["rejected_id"]]).astype(str).value_counts(sort=False)
        # stable order: most judged first, ties by item id
        top = set(counts.sort_index().sort_values(ascending=False, kind="stable").index[:max_items])
        keep &= (c["chosen_id"].astype(str).isin(top) & c["rejected_id"].astype(str).isin(top)).to_numpy()
    if min_judgments > 1:
        per = c.loc[keep, "user_id"].value_counts()
        keep &= c["user_id"].map(per).fillna(0).to_numpy() >= min_judgments
    require_left(keep, max_items, min_judgments, "comparisons")
    return c[keep].reset_index(drop=True)


def pairs_from_comparisons(c: pd.DataFrame) -> tuple[Pairs, list[str], list[str]]:
    """Strict per-person comparisons of a comparisons table (ties dropped), with the person and item id lists
    (every person of ``c`` is listed, also one whose comparisons are all ties)."""
    persons = sorted(c["user_id"].astype(str).unique())
    c = c[~c["tie"].astype(bool)]
    uc = pd.Categorical(c["user_id"].astype(str), categories=persons)
    ic = pd.Categorical(pd.concat([c["chosen_id"], c["rejected_id"]]).astype(str))
    cats = ic.categories
    a = pd.Categorical(c["chosen_id"].astype(str), categories=cats).codes.astype(np.int64)
    b = pd.Categorical(c["rejected_id"].astype(str), categories=cats).codes.astype(np.int64)
    pairs = Pairs(uc.codes.astype(np.int64), a, b, len(persons), len(cats))
    return pairs, persons, [str(x) for x in cats]


def judgments_from_pairs(
    c: pd.DataFrame, persons: list[str], item_text: dict[str, str] | None = None, width: int = 70
) -> tuple[Judgments, dict[str, str]]:
    """Comparisons as pointwise judgments of item pairs, each pair oriented to its majority (see the module
    docstring); ``persons`` fixes the person order (the one of :func:`pairs_from_comparisons`). Also returns each
    pair's text, "<the majority's choice> > <the other>" (item texts cut to ``width``)."""
    t = pair_outcomes(c)
    notes = []
    g = t.groupby(["user_id", "item_id"], sort=False)
    if g.ngroups < len(t):
        notes.append(f"{len(t) - g.ngroups} repeated (person, item pair) comparisons averaged")
        t = g.agg(
            prompt=("prompt", "first"),
            first=("first", "first"),
            second=("second", "first"),
            rating=("rating", "mean"),
        ).reset_index()
    # orientation: +1 = the side most of the pair's judges took (a pair without a majority keeps "first wins")
    flip = t.groupby("item_id")["rating"].sum() < 0
    t["rating"] = t["rating"] * np.where(t["item_id"].map(flip).to_numpy(bool), -1.0, 1.0)
    uc = pd.Categorical(t["user_id"], categories=persons)
    ic = pd.Categorical(t["item_id"])
    first = t.groupby("item_id", observed=True)[["prompt", "first", "second"]].first()
    units = [str(x) for x in ic.categories]
    text = item_text or {}
    labels = {}
    for key in units:
        a, b = first.at[key, "first"], first.at[key, "second"]
        win, lose = (b, a) if flip.get(key, False) else (a, b)
        labels[key] = f"{text.get(win, win)[:width]} > {text.get(lose, lose)[:width]}"
    j = Judgments(
        users=list(persons),
        items=units,
        prompts=[str(first.at[x, "prompt"]) for x in units],
        u=uc.codes.astype(np.int64),
        i=ic.codes.astype(np.int64),
        y=t["rating"].to_numpy(float),
        kind="pairs",
        scale=(-1.0, 1.0),
        notes=notes,
        neutral=0.0,
    )
    return j, labels
