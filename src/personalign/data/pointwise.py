"""The pointwise view of judgments: one table of ratings and votes, and how much the judges of an item agree.

:func:`pointwise_table` puts ratings and votes in one table ``user_id, prompt, response, item_id, rating, weight,
timestamp, kind``: a rating keeps its value on the data's ``rating_scale``, a vote is a rating on the 3-point scale
-1 disagree / 0 pass / +1 agree (``VOTE_SCALE``).

Agreement, computed one way for ``data inspect``, the audit and the evaluation (:func:`item_agreement`): each person
counts once per item (the mean of their judgments of it); an answer takes a side by its sign against the neutral
answer of its kind (a vote's pass; for ratings the scale's midpoint unless the reader names another neutral
rating), and neutral answers take no side. An item with at least ``min_judges`` judges on a side is *contested*
when the larger side holds less than ``threshold`` of them, a consensus item otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from personalign.data.schema import POINTWISE_COLUMNS, POPULATION_USER, empty_table


def pointwise_table(
    ratings: pd.DataFrame, votes: pd.DataFrame, *, kind: str | None = None, passes: bool = True
) -> pd.DataFrame:
    """Ratings, then votes, as one table (see the module docstring); ``kind`` keeps one of the two.

    ``passes=False`` leaves out votes of 0: a pass read as an abstention (no judgment) rather than the middle of
    the 3-point scale.
    """
    if kind not in (None, "ratings", "votes"):
        raise ValueError(f"kind must be 'ratings', 'votes' or None, got {kind!r}")
    frames = []
    if kind in (None, "ratings") and len(ratings):
        frames.append(ratings.assign(kind="ratings"))
    if kind in (None, "votes") and len(votes):
        v = votes if passes else votes[votes["vote"] != 0]
        frames.append(v.rename(columns={"vote": "rating"}).assign(kind="votes"))
    frames = [f[POINTWISE_COLUMNS] for f in frames if len(f)]
    if not frames:
        return empty_table(POINTWISE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["rating"] = out["rating"].astype(float)
    return out


def item_agreement(table: pd.DataFrame, neutral: float | Mapping[str, float]) -> pd.DataFrame:
    """Per item: ``judges`` (persons on a side), ``agree``/``disagree`` (above / below the neutral answer) and
    ``top_share`` (the larger side's share; 0 without judges). ``neutral``: one value, or one per ``kind``.

    Population-level rows (``POPULATION_USER``) are nobody's answers and are left out.
    """
    cols = ["item_id", "user_id", *(["kind"] if "kind" in table.columns else [])]
    t = table[table["user_id"] != POPULATION_USER]
    t = t.groupby(cols, sort=False, observed=True)["rating"].mean().reset_index()
    if isinstance(neutral, Mapping):
        mid = t["kind"].map(neutral).to_numpy(float)
    else:
        mid = np.full(len(t), float(neutral))
    side = np.sign(t["rating"].to_numpy(float) - mid)
    by = t["item_id"].to_numpy()
    agree = pd.Series(side > 0).groupby(by, sort=True).sum()
    disagree = pd.Series(side < 0).groupby(by, sort=True).sum()
    judges = agree + disagree
    top = np.maximum(agree, disagree) / np.maximum(judges, 1)
    return pd.DataFrame(
        {
            "judges": judges.astype(int),
            "agree": agree.astype(int),
            "disagree": disagree.astype(int),
            "top_share": top,
        }
    )


def contested_items(
    table: pd.DataFrame, neutral: float | Mapping[str, float], threshold: float = 0.8, min_judges: int = 3
) -> pd.Series:
    """Per item with at least ``min_judges`` judges on a side: True when the larger side holds under ``threshold``
    of them (people disagree), False for a consensus item (index: item_id)."""
    a = item_agreement(table, neutral)
    a = a[a["judges"] >= min_judges]
    return (a["top_share"] < threshold).rename("contested")
