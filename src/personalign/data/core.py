"""Canonical preference data: who judged what, in four kinds of judgment, plus persons and items.

Tables (pandas DataFrames), one per kind; every judgment names its person in ``user_id`` (a string):

- ``comparisons``: ``user_id, prompt, chosen, rejected, tie, weight, timestamp`` (TRL's column names) plus
  ``chosen_id, rejected_id`` (item ids, filled from the texts when absent).
- ``ratings``: ``user_id, prompt, response, item_id, rating, weight, timestamp``; the scale is ``rating_scale``.
- ``rankings``: ``user_id, prompt, responses`` (a list of texts, best first), ``weight, timestamp``.
- ``votes``: like ratings with ``vote`` in {-1 disagree, 0 pass, +1 agree} (a 3-point rating scale).
- ``users``: ``user_id`` plus any demographic or side-information columns.
- ``items``: ``item_id, prompt, text`` plus any metadata (e.g. ``domain``, attribute scores).

Population-level data (no person ids, e.g. HH-RLHF) uses the user id ``POPULATION_USER``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from personalign.data.pairs import pointwise_pairs, ranking_pairs
from personalign.data.pointwise import contested_items as contested_in_table
from personalign.data.pointwise import pointwise_table
from personalign.data.schema import (  # noqa: F401  (the canonical names, importable from here as before)
    COMPARISON_COLUMNS,
    ITEM_COLUMNS,
    KINDS,
    POINTWISE_COLUMNS,
    POPULATION_USER,
    RANKING_COLUMNS,
    RATING_COLUMNS,
    VOTE_COLUMNS,
    VOTE_SCALE,
    empty_table,
    item_id_for,
)
from personalign.errors import DataError


def _normalize(df: pd.DataFrame | None, columns: list[str], kind: str) -> pd.DataFrame:
    """Give a judgment table its canonical columns and dtypes (extra columns are kept at the end)."""
    if df is None or len(df) == 0 and len(df.columns) == 0:
        df = empty_table(columns)
    df = df.reset_index(drop=True).copy()
    if "user_id" not in df.columns:
        raise DataError(
            f"{kind} table has no 'user_id' column", field="user_id", expected="a person id column"
        )
    df["user_id"] = df["user_id"].astype(str)
    for text_col in ("prompt",):
        if text_col in columns:
            if text_col not in df.columns:
                df[text_col] = ""
            df[text_col] = df[text_col].fillna("").astype(str)
    if "weight" in columns:
        df["weight"] = df["weight"].astype(float) if "weight" in df.columns else 1.0
    if "timestamp" in columns and "timestamp" not in df.columns:
        df["timestamp"] = np.nan
    if "tie" in columns:
        df["tie"] = df["tie"].fillna(False).astype(bool) if "tie" in df.columns else False
    extra = [c for c in df.columns if c not in columns]
    missing = [c for c in columns if c not in df.columns]
    for c in missing:
        df[c] = pd.Series([None] * len(df), dtype=object)
    return df[columns + extra]


@dataclass
class PreferenceData:
    """Judgments of four kinds, the persons who made them, and the items they judged.

    Build one with the readers in :mod:`personalign.data.io` or the adapters, or directly from DataFrames.
    """

    comparisons: pd.DataFrame = field(default_factory=lambda: empty_table(COMPARISON_COLUMNS))
    ratings: pd.DataFrame = field(default_factory=lambda: empty_table(RATING_COLUMNS))
    rankings: pd.DataFrame = field(default_factory=lambda: empty_table(RANKING_COLUMNS))
    votes: pd.DataFrame = field(default_factory=lambda: empty_table(VOTE_COLUMNS))
    users: pd.DataFrame = field(default_factory=lambda: empty_table(["user_id"]))
    items: pd.DataFrame = field(default_factory=lambda: empty_table(ITEM_COLUMNS))
    rating_scale: tuple[float, float] | None = None
    name: str = "data"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.comparisons = _normalize(self.comparisons, COMPARISON_COLUMNS, "comparisons")
        self.ratings = _normalize(self.ratings, RATING_COLUMNS, "ratings")
        self.rankings = _normalize(self.rankings, RANKING_COLUMNS, "rankings")
        self.votes = _normalize(self.votes, VOTE_COLUMNS, "votes")
        if self.users is None or "user_id" not in self.users.columns:
            self.users = empty_table(["user_id"])
        self.users = self.users.reset_index(drop=True).copy()
        self.users["user_id"] = self.users["user_id"].astype(str)
        self._fill_item_ids()
        if len(self.ratings) and self.rating_scale is None:
            r = self.ratings["rating"].astype(float)
            self.rating_scale = (float(r.min()), float(r.max()))
        if len(self.ratings):
            self.ratings["rating"] = self.ratings["rating"].astype(float)
        if len(self.votes):
            self.votes["vote"] = self.votes["vote"].astype(int)

    # ------------------------------------------------------------------ items
    def _fill_item_ids(self) -> None:
        """Give every judged text an item id and make sure the items table holds it."""
        items = self.items if self.items is not None else empty_table(ITEM_COLUMNS)
        items = items.reset_index(drop=True).copy()
        for col in ITEM_COLUMNS:
            if col not in items.columns:
                items[col] = ""
        items["item_id"] = items["item_id"].astype(str)
        known = set(items["item_id"])
        new_rows: dict[str, tuple[str, str]] = {}

        def collect(ids: pd.Series, prompts: pd.Series, texts: pd.Series) -> None:
            # only rows whose id the items table lacks cost a Python-level look (large data ships its items)
            missing = ~ids.isin(known)
            if missing.any():
                for i, p, t in zip(ids[missing], prompts[missing], texts[missing]):
                    new_rows.setdefault(i, (p, t))

        c = self.comparisons
        if len(c):
            for col, idcol in (("chosen", "chosen_id"), ("rejected", "rejected_id")):
                need = c[idcol].isna()
                if need.any():
                    c.loc[need, idcol] = [
                        item_id_for(p, t) for p, t in zip(c.loc[need, "prompt"], c.loc[need, col])
                    ]
                c[idcol] = c[idcol].astype(str)
                collect(c[idcol], c["prompt"], c[col])
        for tab in (self.ratings, self.votes):
            if len(tab):
                need = tab["item_id"].isna()
                if need.any():
                    tab.loc[need, "item_id"] = [
                        item_id_for(p, t) for p, t in zip(tab.loc[need, "prompt"], tab.loc[need, "response"])
                    ]
                tab["item_id"] = tab["item_id"].astype(str)
                collect(tab["item_id"], tab["prompt"], tab["response"])
        if len(self.rankings):
            for p, resp in zip(self.rankings["prompt"], self.rankings["responses"]):
                for t in resp:
                    i = item_id_for(p, t)
                    if i not in known:
                        new_rows.setdefault(i, (p, t))
        if new_rows:
            add = pd.DataFrame([(i, p, t) for i, (p, t) in new_rows.items()], columns=ITEM_COLUMNS)
            items = pd.concat([items, add], ignore_index=True) if len(items) else add
        items["prompt"] = items["prompt"].fillna("").astype(str)
        items["text"] = items["text"].fillna("").astype(str)
        self.items = items

    # ------------------------------------------------------------- properties
    @property
    def user_ids(self) -> list[str]:
        """Every person who made a judgment (sorted), the population user excluded."""
        ids: set[str] = set()
        for k in KINDS:
            ids.update(getattr(self, k)["user_id"].unique().tolist())
        ids.discard(POPULATION_USER)
        return sorted(ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def demographic_columns(self) -> list[str]:
        """Side-information columns of ``users``; columns named in ``meta["truth_columns"]`` (e.g. the planted
        profile of a synthetic person) are ground truth for evaluation and never count as side information."""
        hidden = set(self.meta.get("truth_columns", []))
        return [c for c in self.users.columns if c != "user_id" and c not in hidden]

    def counts(self) -> dict[str, int]:
        """The number of rows of each judgment table, by kind."""
        return {k: len(getattr(self, k)) for k in KINDS}

    def __len__(self) -> int:
        return sum(self.counts().values())

    def __repr__(self) -> str:
        c = self.counts()
        parts = ", ".join(f"{k}={v}" for k, v in c.items() if v)
        return f"PreferenceData(name={self.name!r}, persons={self.n_users}, items={len(self.items)}, {parts or 'empty'})"

    def copy(self, **changes: Any) -> PreferenceData:
        """A copy with some tables replaced (the others copied)."""
        base = {
            "comparisons": self.comparisons.copy(),
            "ratings": self.ratings.copy(),
            "rankings": self.rankings.copy(),
            "votes": self.votes.copy(),
            "users": self.users.copy(),
            "items": self.items.copy(),
        }
        base.update(changes)
        return replace(self, **base, meta=dict(self.meta))

    # ------------------------------------------------------------ subsetting
    def filter_users(
        self, user_ids: list[str] | set[str] | np.ndarray, keep_population: bool = True
    ) -> PreferenceData:
        """Only the judgments (and users rows) of these persons."""
        keep = {str(u) for u in user_ids}
        if keep_population:
            keep.add(POPULATION_USER)
        tabs = {k: getattr(self, k)[getattr(self, k)["user_id"].isin(keep)] for k in KINDS}
        return self.copy(**tabs, users=self.users[self.users["user_id"].isin(keep)])

    def filter_items(self, item_ids: list[str] | set[str] | np.ndarray) -> PreferenceData:
        """Only judgments whose items are all in ``item_ids`` (a comparison needs both of its items)."""
        keep = {str(i) for i in item_ids}
        c = self.comparisons
        comps = c[c["chosen_id"].isin(keep) & c["rejected_id"].isin(keep)]
        ratings = self.ratings[self.ratings["item_id"].isin(keep)]
        votes = self.votes[self.votes["item_id"].isin(keep)]
        if len(self.rankings):
            rk = self.rankings.copy()
            rk["responses"] = [
                [t for t in resp if item_id_for(p, t) in keep]
                for p, resp in zip(rk["prompt"], rk["responses"])
            ]
            rk = rk[rk["responses"].map(len) >= 2]
        else:
            rk = self.rankings
        return self.copy(comparisons=comps, ratings=ratings, votes=votes, rankings=rk)

    def filter_prompts(self, prompts: list[str] | set[str]) -> PreferenceData:
        """Only judgments on these prompts."""
        keep = set(prompts)
        tabs = {k: getattr(self, k)[getattr(self, k)["prompt"].isin(keep)] for k in KINDS}
        return self.copy(**tabs)

    # ------------------------------------------------------------ conversion
    def value_scale(self, kind: str = "ratings") -> tuple[float, float] | None:
        """The scale of a pointwise kind: ``rating_scale`` for ratings, (-1, 1) for votes."""
        return VOTE_SCALE if kind == "votes" else self.rating_scale

    def neutral_value(self, kind: str = "ratings") -> float | None:
        """The answer of a pointwise kind that takes no side: a vote's pass (0); for ratings the neutral rating the
        reader names (``meta["neutral_rating"]``, e.g. ConvAbuse's "ambiguous"), else the scale's midpoint."""
        if kind == "votes":
            return 0.0
        if self.meta.get("neutral_rating") is not None:
            return float(self.meta["neutral_rating"])
        return (self.rating_scale[0] + self.rating_scale[1]) / 2.0 if self.rating_scale else None

    def pointwise(self, kind: str | None = None, *, passes: bool = True) -> pd.DataFrame:
        """Ratings and votes as one table ``user_id, prompt, response, item_id, rating, weight, timestamp, kind``.

        A rating keeps its value (on :meth:`value_scale` ``("ratings")``); a vote is a rating on the 3-point scale
        -1 disagree / 0 pass / +1 agree. ``kind`` keeps one of the two; ``passes=False`` leaves passes out (a pass
        read as an abstention). See :mod:`personalign.data.pointwise`.
        """
        return pointwise_table(self.ratings, self.votes, kind=kind, passes=passes)

    def to_comparisons(
        self,
        *,
        include_ties: bool = False,
        max_pairs_per_user: int | None = None,
        seed: int = 0,
        passes: bool = True,
    ) -> pd.DataFrame:
        """Every judgment as per-person comparisons (TRL columns plus ``user_id`` and item ids).

        Ratings and votes: two items of the same prompt that the same person judged differently make one pair,
        the higher-valued one chosen (equal values are ties, kept only with ``include_ties``; a vote's pass is the
        middle of the 3-point scale, or left out with ``passes=False``); see :mod:`personalign.data.pairs`.
        Rankings: every pair (i < j) of the list, the earlier chosen. Existing comparisons are kept as they are.
        ``max_pairs_per_user`` samples that many of each person's derived pairs (deterministic by ``seed``).
        """
        rng = np.random.default_rng(seed)
        frames = [self.comparisons[COMPARISON_COLUMNS].copy()] if len(self.comparisons) else []
        for kind in ("ratings", "votes"):
            pt = self.pointwise(kind, passes=passes)
            if len(pt):
                frames.append(
                    pointwise_pairs(
                        pt, max_pairs_per_user=max_pairs_per_user, rng=rng, include_ties=include_ties
                    )
                )
        if len(self.rankings):
            frames.append(ranking_pairs(self.rankings))
        frames = [f for f in frames if len(f)]
        if not frames:
            return empty_table(COMPARISON_COLUMNS)
        out = pd.concat(frames, ignore_index=True)
        out["tie"] = out["tie"].astype(bool)
        out["weight"] = out["weight"].astype(float)
        return out

    def as_comparison_data(self, **kwargs: Any) -> PreferenceData:
        """This data with every judgment converted to comparisons (see :meth:`to_comparisons`)."""
        return PreferenceData(
            comparisons=self.to_comparisons(**kwargs),
            users=self.users,
            items=self.items,
            name=self.name,
            meta=dict(self.meta),
        )

    # --------------------------------------------------------------- summary
    def judgments_per_user(self) -> pd.Series:
        """How many judgments each person made (all kinds together, population rows left out), most first."""
        counts = pd.concat(
            [getattr(self, k)["user_id"] for k in KINDS if len(getattr(self, k))], ignore_index=True
        )
        counts = counts[counts != POPULATION_USER]
        return counts.value_counts()

    def contested_items(self, threshold: float = 0.8, min_judges: int = 3) -> pd.Series:
        """Per item with at least ``min_judges`` judges on a side: True when the larger side holds under
        ``threshold`` of them (people disagree), False for a consensus item. One answer per person and item;
        neutral answers (a pass, the neutral rating: :meth:`neutral_value`) take no side. The rule of
        :mod:`personalign.data.pointwise`, the one the audit reports."""
        pt = self.pointwise()
        if not len(pt):
            return pd.Series(dtype=bool)
        neutral = {"ratings": self.neutral_value("ratings"), "votes": 0.0}
        return contested_in_table(pt, neutral, threshold=threshold, min_judges=min_judges)

    def summary(self) -> dict[str, Any]:
        """Counts a person reads first: persons, items, judgments per kind and per person, demographics (and the
        repeat judgments a reader merged, ``meta["repeat_judgments"]``, where it did)."""
        per = self.judgments_per_user()
        contested = self.contested_items()
        merged = self.meta.get("repeat_judgments")
        return {
            "name": self.name,
            "persons": self.n_users,
            "items": int(len(self.items)),
            "judgments": self.counts(),
            "judgments_per_person": {
                "min": int(per.min()) if len(per) else 0,
                "median": float(per.median()) if len(per) else 0.0,
                "max": int(per.max()) if len(per) else 0,
            },
            "rating_scale": list(self.rating_scale) if self.rating_scale else None,
            "demographic_columns": self.demographic_columns,
            "population_pairs": int((self.comparisons["user_id"] == POPULATION_USER).sum()),
            "contested_share": float(contested.mean()) if len(contested) else None,
            "items_with_3plus_judges": int(len(contested)),
        } | ({"repeat_judgments_merged": dict(merged)} if merged else {})


def concat(datas: list[PreferenceData], name: str | None = None) -> PreferenceData:
    """Join several datasets (persons and items united; duplicate ``users`` rows dropped)."""
    tabs = {k: pd.concat([getattr(d, k) for d in datas], ignore_index=True) for k in KINDS}
    users = pd.concat([d.users for d in datas], ignore_index=True).drop_duplicates("user_id")
    items = pd.concat([d.items for d in datas], ignore_index=True).drop_duplicates("item_id")
    return PreferenceData(
        **tabs,
        users=users,
        items=items,
        name=name or "+".join(d.name for d in datas),
        rating_scale=datas[0].rating_scale if datas else None,
    )


Kind = Literal["comparisons", "ratings", "rankings", "votes"]
