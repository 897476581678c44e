"""POPQUORN (Pei & Jurgens 2023): Reddit comments rated for offensiveness 1-5 by raters with demographics.

File ``offensiveness/raw_data.csv``: ``instance_id, user_id, text, offensiveness, gender, race, age, occupation,
education``. One rating per row -> ``ratings`` on the scale (1, 5); item id ``popquorn:<instance_id>``; the five
demographic columns -> the users table (one row per rater).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.data.tables import read_csv_frame, require_columns
from personalign.data.validate import csv_line_locator, show_value, to_numeric
from personalign.errors import DataError

DEMOGRAPHICS = ["gender", "race", "age", "occupation", "education"]
SCALE = (1.0, 5.0)


def read_popquorn(
    path: str | Path, *, rating_col: str = "offensiveness", name: str | None = None
) -> PreferenceData:
    """Read a POPQUORN rating file (``rating_col`` for its other tasks that rate on 1-5)."""
    path = Path(path)
    if path.is_dir():
        path = path / "raw_data.csv"
    src = str(path)
    df = read_csv_frame(path, text_columns=("text", "instance_id") + tuple(DEMOGRAPHICS))
    require_columns(df, ["instance_id", "user_id", "text", rating_col, *DEMOGRAPHICS], source=src)
    locate = csv_line_locator(path)

    def fail(mask: np.ndarray, field: str, expected: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise DataError(
                f"got {show_value(df[field].iloc[i])}", file=src, field=field, expected=expected, **locate(i)
            )

    fail(df["user_id"].isna().to_numpy(), "user_id", "a rater id")
    fail(df["instance_id"].isna().to_numpy(), "instance_id", "an item id")
    r = to_numeric(df[rating_col])
    fail(~r.between(*SCALE).to_numpy(), rating_col, "a rating from 1 to 5")
    uid = df["user_id"].astype(str)
    iid = "popquorn:" + df["instance_id"].astype(str)
    text = df["text"].fillna("").astype(str)
    ratings = pd.DataFrame(
        {
            "user_id": uid,
            "prompt": "",
            "response": text,
            "item_id": iid,
            "rating": r,
            "weight": 1.0,
            "timestamp": np.nan,
        }
    )
    users = (
        df[["user_id", *DEMOGRAPHICS]].assign(user_id=uid).drop_duplicates("user_id").reset_index(drop=True)
    )
    items = pd.DataFrame(
        {"item_id": iid, "prompt": "", "text": text, "source_id": df["instance_id"].astype(str)}
    )
    items = items.drop_duplicates("item_id").reset_index(drop=True)
    n_conflict = int(
        df.assign(user_id=uid).groupby("user_id")[DEMOGRAPHICS].nunique(dropna=False).gt(1).any(axis=1).sum()
    )
    return PreferenceData(
        ratings=ratings,
        users=users,
        items=items,
        rating_scale=SCALE,
        name=name or f"popquorn-{path.parent.name}",
        meta={"source": src, "rating_column": rating_col, "raters_with_conflicting_demographics": n_conflict},
    )
