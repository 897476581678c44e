"""A persons table from its own file, joined onto preference data (the CLI's ``--users FILE``).

Public datasets often keep who the raters are (demographics, side information) apart from what they judged. A
users file is CSV, TSV, JSON lines or Parquet with a ``user_id`` column (or the column named by ``user_col``) and
one row per person; its other columns become columns of ``PreferenceData.users``. A person listed twice with
different values, or a column that the data already has with different values for the same person, is an error
rather than a silent choice; persons of the file who judged nothing are kept out, and the number of judging
persons the file does not describe is reported in ``meta["users_file"]``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from personalign.data.core import PreferenceData
from personalign.data.tables import read_csv_frame, read_jsonl_records, require_columns
from personalign.errors import DataError

USER_FILE_TYPES = ".csv, .tsv, .jsonl (JSON lines, also as .json) or .parquet, optionally gzipped"


def read_users(path: str | Path, user_col: str | None = None) -> pd.DataFrame:
    """The persons table of ``path``: ``user_id`` (as text) plus side-information columns, one row per person."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=str(path), expected="a users file (CSV, TSV, JSONL or Parquet)")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise DataError(
                f"not a Parquet file ({exc})", file=str(path), expected="a Parquet table"
            ) from None
    elif name.endswith((".jsonl", ".json")):
        records, _ = read_jsonl_records(path)
        df = pd.DataFrame.from_records(records)
    elif name.endswith((".csv", ".tsv")):
        df = read_csv_frame(path, sep="\t" if name.endswith(".tsv") else ",")
    else:
        raise DataError(
            f"cannot tell the format of {path.name!r}",
            file=str(path),
            expected=f"a name ending {USER_FILE_TYPES}",
        )
    col = user_col or "user_id"
    require_columns(df, [col], source=str(path))
    df = df.rename(columns={col: "user_id"}) if col != "user_id" else df
    if df["user_id"].isna().any():
        row = int(df.index[df["user_id"].isna()][0])
        raise DataError("empty person id", file=str(path), row=row, field="user_id", expected="a person id")
    df["user_id"] = df["user_id"].astype(str)
    return _one_row_per_person(df, str(path))


def _one_row_per_person(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Drop exact repeats; a person listed with two different rows is a DataError naming both (file) rows."""
    df = df.drop_duplicates()  # keeps the file's row numbers for the message
    dup = df["user_id"].duplicated(keep=False)
    if dup.any():
        rows = df.index[dup]
        first = df.loc[rows[0], "user_id"]
        again = [int(r) for r in rows if df.loc[r, "user_id"] == first]
        raise DataError(
            f"person {first!r} is listed in rows {again[0]} and {again[1]} with different values",
            file=source,
            row=again[1],
            field="user_id",
            expected="one row per person",
        )
    return df.reset_index(drop=True)


def attach_users(data: PreferenceData, users: pd.DataFrame, source: str | None = None) -> PreferenceData:
    """``data`` with the columns of ``users`` joined onto its persons (by ``user_id``)."""
    judging = pd.Index(data.user_ids)
    users = users[users["user_id"].isin(judging)]
    old = data.users.set_index("user_id")
    new = users.set_index("user_id")
    for col in new.columns.intersection(old.columns):
        both = old[[col]].join(new[[col]], how="inner", lsuffix="_data", rsuffix="_file").dropna()
        differ = both[both[f"{col}_data"].astype(str) != both[f"{col}_file"].astype(str)]
        if len(differ):
            who = differ.index[0]
            raise DataError(
                f"person {who!r} has {col}={differ.iloc[0, 0]!r} in the data and {differ.iloc[0, 1]!r} in the "
                "users file",
                file=source,
                field=col,
                expected="the same value in both, or the column in one of them only",
            )
    ids = old.index.union(new.index)
    merged = old.reindex(ids).combine_first(new.reindex(ids))  # where both have a value, they agree
    merged.index.name = "user_id"
    out = data.copy(users=merged.reset_index())
    out.meta["users_file"] = {
        "file": source,
        "columns": [str(c) for c in new.columns],
        "persons_described": int(len(new)),
        "persons_not_described": int(len(judging.difference(new.index))),
    }
    return out
