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

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from personalign.errors import DataError

POPULATION_USER = "__population__"

COMPARISON_COLUMNS = [
    "user_id",
    "prompt",
    "chosen",
    "rejected",
    "tie",
    "weight",
    "timestamp",
    "chosen_id",
    "rejected_id",
]
RATING_COLUMNS = ["user_id", "prompt", "response", "item_id", "rating", "weight", "timestamp"]
RANKING_COLUMNS = ["user_id", "prompt", "responses", "weight", "timestamp"]
VOTE_COLUMNS = ["user_id", "prompt", "response", "item_id", "vote", "weight", "timestamp"]
ITEM_COLUMNS = ["item_id", "prompt", "text"]
KINDS = ("comparisons", "ratings", "rankings", "votes")


def item_id_for(prompt: str, text: str) -> str:
    """A stable item id from the item's prompt and text (first 16 hex digits of SHA-1)."""
    h = hashlib.sha1()
    h.update((prompt or "").encode("utf-8"))
    h.update(b"\x00")
    h.update((text or "").encode("utf-8"))
    return h.hexdigest()[:16]


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _normalize(df: pd.DataFrame | None, columns: list[str], kind: str) -> pd.DataFrame:
    """Give a judgment table its canonical columns and dtypes (extra columns are kept at the end)."""
    if df is None or len(df) == 0 and len(df.columns) == 0:
        df = _empty(columns)
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

    comparisons: pd.DataFrame = field(default_factory=lambda: _empty(COMPARISON_COLUMNS))
    ratings: pd.DataFrame = field(default_factory=lambda: _empty(RATING_COLUMNS))
    rankings: pd.DataFrame = field(default_factory=lambda: _empty(RANKING_COLUMNS))
    votes: pd.DataFrame = field(default_factory=lambda: _empty(VOTE_COLUMNS))
    users: pd.DataFrame = field(default_factory=lambda: _empty(["user_id"]))
    items: pd.DataFrame = field(default_factory=lambda: _empty(ITEM_COLUMNS))
    rating_scale: tuple[float, float] | None = None
    name: str = "data"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.comparisons = _normalize(self.comparisons, COMPARISON_COLUMNS, "comparisons")
        self.ratings = _normalize(self.ratings, RATING_COLUMNS, "ratings")
        self.rankings = _normalize(self.rankings, RANKING_COLUMNS, "rankings")
        self.votes = _normalize(self.votes, VOTE_COLUMNS, "votes")
        if self.users is None or "user_id" not in self.users.columns:
            self.users = _empty(["user_id"])
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
        items = self.items if self.items is not None else _empty(ITEM_COLUMNS)
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
    def to_comparisons(
        self,
        *,
        include_ties: bool = False,
        max_pairs_per_user: int | None = None,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Every judgment as per-person comparisons (TRL columns plus ``user_id`` and item ids).

        Ratings and votes: two items of the same prompt that the same person rated differently make one pair,
        the higher-rated one chosen (equal ratings are ties, kept only with ``include_ties``). Rankings: every
        pair (i < j) of the list, the earlier chosen. Existing comparisons are kept as they are.
        ``max_pairs_per_user`` samples that many derived pairs per person (deterministic by ``seed``).
        """
        rng = np.random.default_rng(seed)
        frames = [self.comparisons[COMPARISON_COLUMNS].copy()] if len(self.comparisons) else []
        for tab, col in ((self.ratings, "rating"), (self.votes, "vote")):
            if len(tab):
                frames.append(_pairs_from_scores(tab, col, include_ties, max_pairs_per_user, rng))
        if len(self.rankings):
            rows = []
            for r in self.rankings.itertuples(index=False):
                resp = list(r.responses)
                for i in range(len(resp)):
                    for j in range(i + 1, len(resp)):
                        rows.append(
                            (
                                r.user_id,
                                r.prompt,
                                resp[i],
                                resp[j],
                                False,
                                r.weight,
                                r.timestamp,
                                item_id_for(r.prompt, resp[i]),
                                item_id_for(r.prompt, resp[j]),
                            )
                        )
            frames.append(pd.DataFrame(rows, columns=COMPARISON_COLUMNS))
        if not frames:
            return _empty(COMPARISON_COLUMNS)
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
        counts = pd.concat(
            [getattr(self, k)["user_id"] for k in KINDS if len(getattr(self, k))], ignore_index=True
        )
        counts = counts[counts != POPULATION_USER]
        return counts.value_counts()

    def contested_items(self, threshold: float = 0.8, min_judges: int = 3) -> pd.Series:
        """Per item with at least ``min_judges`` judges: True when the largest share of one answer is below
        ``threshold`` (people disagree), False when it is a consensus item. Ratings are binarized at the scale's
        midpoint; votes ignore passes."""
        tabs = []
        if len(self.ratings):
            lo, hi = self.rating_scale or (self.ratings["rating"].min(), self.ratings["rating"].max())
            mid = (lo + hi) / 2.0
            r = self.ratings
            # the midpoint itself is its own answer, so it counts as neither side
            ans = np.sign(r["rating"].to_numpy(float) - mid)
            tabs.append(pd.DataFrame({"item_id": r["item_id"], "ans": ans}))
        if len(self.votes):
            v = self.votes[self.votes["vote"] != 0]
            tabs.append(pd.DataFrame({"item_id": v["item_id"], "ans": v["vote"].astype(float)}))
        if not tabs:
            return pd.Series(dtype=bool)
        t = pd.concat(tabs, ignore_index=True)
        g = t.groupby("item_id")["ans"]
        n = g.size()
        top = g.agg(lambda s: s.value_counts(normalize=True).max())
        top = top[n >= min_judges]
        return top < threshold

    def summary(self) -> dict[str, Any]:
        """Counts a person reads first: persons, items, judgments per kind and per person, demographics."""
        per = self.judgments_per_user()
        contested = self.contested_items()
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
        }


def _pairs_from_scores(
    tab: pd.DataFrame, col: str, include_ties: bool, max_pairs: int | None, rng: np.random.Generator
) -> pd.DataFrame:
    """Per-person pairs from pointwise scores within (user, prompt) groups."""
    out_rows: list[tuple] = []
    t = tab[["user_id", "prompt", "response", "item_id", col, "weight", "timestamp"]]
    for (uid, prompt), g in t.groupby(["user_id", "prompt"], sort=False):
        if len(g) < 2:
            continue
        s = g[col].to_numpy(float)
        resp = g["response"].to_numpy(object)
        ids = g["item_id"].to_numpy(object)
        w = g["weight"].to_numpy(float)
        ts = g["timestamp"].to_numpy(object)
        i, j = np.triu_indices(len(g), k=1)
        diff = s[i] - s[j]
        mask = diff != 0 if not include_ties else np.ones(len(i), bool)
        i, j, diff = i[mask], j[mask], diff[mask]
        if max_pairs is not None and len(i) > max_pairs:
            sel = np.sort(rng.choice(len(i), size=max_pairs, replace=False))
            i, j, diff = i[sel], j[sel], diff[sel]
        hi = np.where(diff >= 0, i, j)
        lo = np.where(diff >= 0, j, i)
        for a, b, d in zip(hi, lo, diff):
            out_rows.append(
                (uid, prompt, resp[a], resp[b], bool(d == 0), float(min(w[a], w[b])), ts[a], ids[a], ids[b])
            )
    return pd.DataFrame(out_rows, columns=COMPARISON_COLUMNS)


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
