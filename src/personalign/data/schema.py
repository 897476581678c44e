"""The canonical column names of every judgment table, the population user and stable item ids.

The bottom of the data package: :mod:`personalign.data.core`, the conversions (:mod:`personalign.data.pairs`,
:mod:`personalign.data.pointwise`) and the readers all name their columns from here.
"""

from __future__ import annotations

import hashlib

import pandas as pd

POPULATION_USER = "__population__"
"""The user id of judgments that belong to nobody in particular (population-level data such as HH-RLHF)."""

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
"""The four kinds of judgment, one table each."""
# one row per rating or vote; ``kind`` says which, ``rating`` holds the value (a vote as -1 / 0 / +1)
POINTWISE_COLUMNS = [*RATING_COLUMNS, "kind"]
VOTE_SCALE = (-1.0, 1.0)  # disagree, pass, agree: votes are ratings on this 3-point scale


def item_id_for(prompt: str, text: str) -> str:
    """A stable item id from the item's prompt and text (first 16 hex digits of SHA-1)."""
    h = hashlib.sha1()
    h.update((prompt or "").encode("utf-8"))
    h.update(b"\x00")
    h.update((text or "").encode("utf-8"))
    return h.hexdigest()[:16]


def empty_table(columns: list[str]) -> pd.DataFrame:
    """A table with these columns and no rows (object dtype)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
