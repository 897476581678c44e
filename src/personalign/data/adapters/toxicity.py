"""The toxicity perspective-taking study (Duan et al., NAACL 2025): 120 comments, each labelled by ~109 people.

Files (one folder): ``pilot_annotations.csv`` (``workerId, comment, answer, race, age, gender, politic``; answer 1
toxic / -1 non-toxic) and ``comments.csv`` (``id, comment_id, text, pos_f, pos_m``).

A label is a judgment of the text, not agreement with a statement, so it becomes a ``rating`` on the binary
scale (0, 1) with 1 = toxic (votes would imply a "pass" option that the study did not offer). Item id
``toxicity:<comment>``; items keep ``comment_id`` (the Measuring Hate Speech corpus id) and ``pos_f``/``pos_m``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.data.tables import read_csv_frame, require_columns
from personalign.data.validate import csv_line_locator, show_value, to_numeric
from personalign.errors import DataError

DEMOGRAPHICS = ["race", "age", "gender", "politic"]
SCALE = (0.0, 1.0)


def read_toxicity(path: str | Path, *, name: str | None = None) -> PreferenceData:
    """Read the study from its folder or from ``pilot_annotations.csv`` (``comments.csv`` beside it)."""
    path = Path(path)
    ann_path = path / "pilot_annotations.csv" if path.is_dir() else path
    com_path = ann_path.parent / "comments.csv"
    if not ann_path.exists():
        raise FileNotFoundError(f"no such file: {ann_path}")
    if not com_path.exists():
        raise DataError(
            "the comment texts are missing",
            file=str(com_path),
            expected="comments.csv (id, comment_id, text) beside the annotations",
        )
    src = str(ann_path)
    ann = read_csv_frame(ann_path, text_columns=("workerId", "race", "gender", "politic"))
    require_columns(ann, ["workerId", "comment", "answer", *DEMOGRAPHICS], source=src)
    com = read_csv_frame(com_path)
    require_columns(com, ["id", "text"], source=str(com_path))
    locate = csv_line_locator(ann_path)

    def fail(mask: np.ndarray, field: str, expected: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise DataError(
                f"got {show_value(ann[field].iloc[i])}", file=src, field=field, expected=expected, **locate(i)
            )

    fail(ann["workerId"].isna().to_numpy(), "workerId", "a worker id")
    ans = to_numeric(ann["answer"])
    fail(~ans.isin([1.0, -1.0]).to_numpy(), "answer", "1 (toxic) or -1 (non-toxic)")
    cid = to_numeric(ann["comment"])
    com_ids = to_numeric(com["id"])
    if com_ids.isna().any():
        raise DataError(
            f"got {show_value(com['id'].iloc[int(np.flatnonzero(com_ids.isna())[0])])}",
            file=str(com_path),
            field="id",
            expected="an integer comment id",
            **csv_line_locator(com_path)(int(np.flatnonzero(com_ids.isna())[0])),
        )
    fail(~cid.isin(set(com_ids)).to_numpy(), "comment", "a comment id listed in comments.csv")

    key = cid.astype("int64").astype(str)
    iid = "toxicity:" + key
    texts = pd.Series(
        com["text"].fillna("").astype(str).to_numpy(), index=com_ids.astype("int64").astype(str)
    )
    ratings = pd.DataFrame(
        {
            "user_id": ann["workerId"].astype(str),
            "prompt": "",
            "response": key.map(texts).to_numpy(),
            "item_id": iid,
            "rating": (ans == 1.0).astype(float),
            "weight": 1.0,
            "timestamp": np.nan,
        }
    )
    users = (
        ann[["workerId", *DEMOGRAPHICS]]
        .rename(columns={"workerId": "user_id"})
        .assign(user_id=lambda d: d["user_id"].astype(str))
        .drop_duplicates("user_id")
        .reset_index(drop=True)
    )
    items = pd.DataFrame(
        {
            "item_id": "toxicity:" + com_ids.astype("int64").astype(str),
            "prompt": "",
            "text": com["text"].fillna("").astype(str),
        }
    )
    for extra in ("comment_id", "pos_f", "pos_m"):
        if extra in com.columns:
            items[extra] = com[extra].to_numpy()
    return PreferenceData(
        ratings=ratings,
        users=users,
        items=items,
        rating_scale=SCALE,
        name=name or "toxicity-pilot",
        meta={"source": src, "label": "1 = toxic, 0 = non-toxic (answer -1)"},
    )
