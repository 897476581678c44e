"""Validation of preference data: record-level checks that raise, and a report of dataset-level findings.

Two levels:

- :func:`check_frame` checks a raw table of one kind of judgment record by record (vectorized) and raises
  :class:`personalign.DataError` at the first malformed record, naming the file, the line (JSONL, CSV: 1-based)
  or row (0-based, other tables), the field and what was expected. Readers call it before building anything.
- :func:`validate` inspects a built :class:`PreferenceData` and lists what is legal but suspicious:
  self-comparisons, exact duplicates, repeated judgments of one item by one person (and those a reader merged,
  ``meta["repeat_judgments"]``, and rows a reader left out, ``meta["skipped_rows"]``), persons missing from a
  non-empty users table, users rows never used, and empty texts. It never raises on such findings;
  ``personalign data inspect`` prints them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import KINDS, POPULATION_USER, PreferenceData
from personalign.errors import DataError

# A locator turns a 0-based record index into the keyword arguments of DataError (``line=`` or ``row=``).
Locator = Callable[[int], dict[str, int]]

VOTE_WORDS = {"agree": 1, "disagree": -1, "pass": 0, "+1": 1, "1": 1, "-1": -1, "0": 0}
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n", ""}


def row_locator(offset: int = 0) -> Locator:
    """Records are table rows (0-based, shifted by ``offset``)."""
    return lambda i: {"row": i + offset}


def line_locator(lines: list[int] | np.ndarray) -> Locator:
    """Records came from known 1-based file lines (JSONL: one record a line)."""
    return lambda i: {"line": int(lines[i])}


def csv_line_locator(path: str | Path, *, header_lines: int = 1, **csv_kwargs: Any) -> Locator:
    """Records are CSV records; the 1-based line where record ``i`` starts is found by scanning the file.

    Quoted fields may span lines, so the line is counted by the csv module, and only when an error needs it.
    """

    def locate(i: int) -> dict[str, int]:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh, **csv_kwargs)
            start = 1
            for k, _ in enumerate(reader):
                if k == i + header_lines:
                    return {"line": start}
                start = reader.line_num + 1
        return {"row": i}

    return locate


def _fail(
    mask: np.ndarray | pd.Series,
    *,
    source: str | None,
    locate: Locator,
    field_name: str,
    expected: str,
    got: pd.Series | None = None,
    message: str | None = None,
) -> None:
    """Raise a DataError at the first True of ``mask`` (if any)."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return
    i = int(np.flatnonzero(m)[0])
    if message is None:
        if got is not None:
            v = got.iloc[i]
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            message = "missing value" if missing else f"got {show_value(v)}"
        else:
            message = "invalid value"
    n_bad = int(m.sum())
    if n_bad > 1:
        message += f" ({n_bad} records with this problem, first shown)"
    raise DataError(message, file=source, field=field_name, expected=expected, **locate(i))


def show_value(v: Any, n: int = 60) -> str:
    """A value as an error message shows it (numpy scalars as plain numbers, long texts cut)."""
    if isinstance(v, np.generic):
        v = v.item()
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _is_missing(s: pd.Series) -> np.ndarray:
    return s.isna().to_numpy() if len(s) else np.zeros(0, bool)


def _not_str(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        return s.isna().to_numpy()
    return ~s.map(lambda v: isinstance(v, str)).to_numpy(bool)


def to_numeric(s: pd.Series) -> pd.Series:
    """Numbers from numbers or numeric strings; anything else becomes NaN (booleans count as 0/1)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(float)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.astype(float)
    return pd.to_numeric(s.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce").astype(
        float
    )


def to_bool(s: pd.Series) -> pd.Series:
    """Booleans from booleans, 0/1 and true/false words; anything else becomes NA."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(object)

    def conv(v: Any) -> Any:
        if isinstance(v, bool | np.bool_):
            return bool(v)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, int | float | np.integer | np.floating):
            return bool(v) if v in (0, 1) else None
        if isinstance(v, str):
            w = v.strip().lower()
            return True if w in _TRUE else False if w in _FALSE else None
        return None

    return s.map(conv).astype(object)


def check_text_column(
    df: pd.DataFrame, col: str, *, source: str | None, locate: Locator, required: bool = True
) -> None:
    """``col`` holds a string in every record (an empty string is legal; :func:`validate` reports it)."""
    if col not in df.columns:
        if required:
            raise DataError(
                f"no column '{col}' (columns: {', '.join(map(str, df.columns))})",
                file=source,
                field=col,
                expected="a column of texts",
            )
        return
    s = df[col]
    if required:
        _fail(_not_str(s), source=source, locate=locate, field_name=col, expected="a string", got=s)
    else:
        _fail(
            ~_is_missing(s) & _not_str(s),
            source=source,
            locate=locate,
            field_name=col,
            expected="a string or nothing",
            got=s,
        )


def _check_person(df: pd.DataFrame, source: str | None, locate: Locator) -> None:
    """``user_id``: a non-empty id in every record, stored as text (ids read as 12.0 become "12")."""
    if "user_id" not in df.columns:
        raise DataError(
            "no person column",
            file=source,
            field="user_id",
            expected="a 'user_id' column (or name it with user_col=...)",
        )
    u = df["user_id"]
    bad = _is_missing(u) | u.map(
        lambda v: isinstance(v, str) and not v.strip() or isinstance(v, list | dict)
    ).to_numpy(bool)
    _fail(bad, source=source, locate=locate, field_name="user_id", expected="a non-empty person id", got=u)
    # ids read as floats (e.g. 12.0 from a CSV column with gaps) become "12", not "12.0"
    if pd.api.types.is_float_dtype(u.dtype) and (u % 1 == 0).all():
        df["user_id"] = u.astype("int64").astype(str)
    else:
        df["user_id"] = u.astype(str)


def _check_comparisons(df: pd.DataFrame, source: str | None, locate: Locator) -> None:
    for col in ("chosen", "rejected"):
        check_text_column(df, col, source=source, locate=locate)
    if "tie" in df.columns:
        t = to_bool(df["tie"])
        _fail(
            t.isna().to_numpy() & ~_is_missing(df["tie"]),
            source=source,
            locate=locate,
            field_name="tie",
            expected="a boolean (true/false, 1/0)",
            got=df["tie"],
        )
        df["tie"] = t.fillna(False).astype(bool)


def _check_pointwise(
    df: pd.DataFrame, kind: str, source: str | None, locate: Locator, rating_scale: tuple[float, float] | None
) -> None:
    """Ratings: a finite number (inside ``rating_scale`` when given); votes: -1, 0, 1 (or the words)."""
    check_text_column(df, "response", source=source, locate=locate)
    col = "rating" if kind == "ratings" else "vote"
    if col not in df.columns:
        raise DataError(
            f"no column '{col}'",
            file=source,
            field=col,
            expected="a number per record" if kind == "ratings" else "-1, 0 or 1 per record",
        )
    raw = df[col]
    if kind == "votes":
        v = raw.map(lambda x: VOTE_WORDS.get(x.strip().lower()) if isinstance(x, str) else x)
        num = to_numeric(v)
        _fail(
            ~num.isin([-1.0, 0.0, 1.0]).to_numpy(),
            source=source,
            locate=locate,
            field_name="vote",
            expected="a vote in {-1, 0, 1} (disagree, pass, agree)",
            got=raw,
        )
        df["vote"] = num.astype(int)
        return
    r = to_numeric(raw)
    _fail(
        ~np.isfinite(r.to_numpy(float)),
        source=source,
        locate=locate,
        field_name="rating",
        expected="a finite number",
        got=raw,
    )
    if rating_scale is not None:
        lo, hi = rating_scale
        _fail(
            (r < lo) | (r > hi),
            source=source,
            locate=locate,
            field_name="rating",
            expected=f"a rating within the scale [{lo:g}, {hi:g}]",
            got=raw,
        )
    df["rating"] = r


def _check_rankings(df: pd.DataFrame, source: str | None, locate: Locator) -> None:
    if "responses" not in df.columns:
        raise DataError(
            "no column 'responses'",
            file=source,
            field="responses",
            expected="a list of responses, best first",
        )
    resp = df["responses"].map(_as_list)
    ok = resp.map(lambda x: isinstance(x, list) and len(x) >= 2 and all(isinstance(t, str) for t in x))
    _fail(
        ~ok.to_numpy(bool),
        source=source,
        locate=locate,
        field_name="responses",
        expected="a list of at least two strings, best first",
        got=df["responses"],
    )
    df["responses"] = resp


def check_frame(
    df: pd.DataFrame,
    kind: str,
    *,
    source: str | None = None,
    locate: Locator | None = None,
    rating_scale: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Check a raw table of one judgment kind record by record and return it with clean dtypes.

    Raises DataError at the first malformed record. Expected per kind: ``user_id`` (a non-empty id) in every
    kind; comparisons ``chosen``/``rejected`` strings; ratings a numeric ``rating`` (inside ``rating_scale``
    when given) and a ``response`` string; votes ``vote`` in {-1, 0, 1} (or agree/disagree/pass) and a
    ``response``; rankings ``responses`` a list of at least two strings. Optional ``prompt`` is a string,
    ``weight`` a non-negative number, ``tie`` a boolean.
    """
    if kind not in KINDS:
        raise DataError(
            f"unknown judgment kind {kind!r}", file=source, field="kind", expected=" / ".join(KINDS)
        )
    locate = locate or row_locator()
    df = df.reset_index(drop=True).copy()
    _check_person(df, source, locate)
    check_text_column(df, "prompt", source=source, locate=locate, required=False)
    if "prompt" in df.columns:
        df["prompt"] = df["prompt"].where(~df["prompt"].isna(), "").astype(object)
    if kind == "comparisons":
        _check_comparisons(df, source, locate)
    elif kind in ("ratings", "votes"):
        _check_pointwise(df, kind, source, locate, rating_scale)
    elif kind == "rankings":
        _check_rankings(df, source, locate)
    if "weight" in df.columns:
        w = to_numeric(df["weight"].where(~df["weight"].isna(), 1.0))
        _fail(
            ~(np.isfinite(w.to_numpy(float)) & (w.to_numpy(float) >= 0)),
            source=source,
            locate=locate,
            field_name="weight",
            expected="a non-negative number",
            got=df["weight"],
        )
        df["weight"] = w
    return df


def _as_list(v: Any) -> Any:
    """A ranking cell as a Python list: lists, arrays and JSON-encoded lists (CSV) are accepted."""
    if isinstance(v, list):
        return v
    if isinstance(v, tuple | np.ndarray):
        return list(v)
    if isinstance(v, str) and v.strip().startswith("["):
        import json

        try:
            x = json.loads(v)
        except ValueError:
            return v
        return x if isinstance(x, list) else v
    return v


# ----------------------------------------------------------------------------------------------- report
def merged_repeats_note(m: dict[str, Any] | None) -> str | None:
    """The repeat judgments a reader merged (its ``meta["repeat_judgments"]``) in words; None if it merged none."""
    if not m or not m.get("dropped"):
        return None
    return (
        f"{m['dropped']} repeat judgments merged by the reader (the {m.get('kept', 'last')} of each of "
        f"{m.get('person_items', '?')} person-item pairs kept; {m.get('agreeing', '?')} of them agreed)"
    )


@dataclass
class ValidationReport:
    """Dataset-level findings (legal but suspicious). ``ok`` is True when there is nothing to report."""

    self_comparisons: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    unknown_persons: list[str] = field(default_factory=list)
    unused_users: list[str] = field(default_factory=list)
    empty_texts: dict[str, int] = field(default_factory=dict)
    repeated: dict[str, int] = field(default_factory=dict)
    merged_repeats: dict[str, Any] = field(default_factory=dict)
    skipped_rows: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings()

    def findings(self) -> list[str]:
        """One human-readable line per problem found."""
        out = []
        if self.self_comparisons:
            out.append(f"{self.self_comparisons} self-comparisons (chosen == rejected)")
        for k, n in self.duplicates.items():
            if n:
                out.append(f"{n} exact duplicate {k}")
        if self.unknown_persons:
            out.append(
                f"{len(self.unknown_persons)} persons judge but are absent from the users table "
                f"(e.g. {', '.join(self.unknown_persons[:3])})"
            )
        if self.unused_users:
            out.append(
                f"{len(self.unused_users)} users rows never judge anything (e.g. {', '.join(self.unused_users[:3])})"
            )
        for where, n in self.empty_texts.items():
            if n:
                out.append(f"{n} empty texts in {where}")
        for k, n in self.repeated.items():
            if n:
                out.append(f"{n} repeated {k} (a person judging an item again; each judgment counts)")
        note = merged_repeats_note(self.merged_repeats)
        if note:
            out.append(note)
        for why, n in self.skipped_rows.items():
            if n:
                out.append(f"{n} rows left out by the reader ({why})")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data, with its findings in words and ``ok``."""
        d = asdict(self)
        d["findings"] = self.findings()
        d["ok"] = self.ok
        return d


def _empty_text(s: pd.Series) -> int:
    return int(s.map(lambda v: not isinstance(v, str) or not v.strip()).sum()) if len(s) else 0


def validate(data: PreferenceData, max_examples: int = 5) -> ValidationReport:
    """Find self-comparisons, exact duplicates, repeated judgments (a person judging an item again, and those a
    reader merged), unknown persons, unused users rows and empty texts."""
    rep = ValidationReport()
    c = data.comparisons
    if len(c):
        selfc = c["chosen"] == c["rejected"]
        rep.self_comparisons = int(selfc.sum())
        if rep.self_comparisons:
            rep.examples["self_comparisons"] = [
                int(i) for i in np.flatnonzero(selfc.to_numpy())[:max_examples]
            ]
    for k in KINDS:
        t = getattr(data, k)
        if not len(t):
            continue
        key = t.drop(columns=[x for x in ("timestamp",) if x in t.columns])
        if "responses" in key.columns:
            key = key.assign(responses=key["responses"].map(lambda r: tuple(r) if r is not None else None))
        try:
            dup = key.duplicated(keep="first")
        except TypeError:  # unhashable cells (lists, dicts in extra columns): compare their text
            key = key.map(
                lambda v: v if isinstance(v, str | int | float | bool | tuple) or v is None else repr(v)
            )
            dup = key.duplicated(keep="first")
        rep.duplicates[k] = int(dup.sum())
        if dup.any():
            rep.examples[f"duplicate_{k}"] = [int(i) for i in np.flatnonzero(dup.to_numpy())[:max_examples]]
    judged = set(data.user_ids)
    if len(data.users):
        listed = set(data.users["user_id"])
        rep.unknown_persons = sorted(judged - listed)
        rep.unused_users = sorted(listed - judged - {POPULATION_USER})
    empties = {
        "comparisons.chosen": _empty_text(c["chosen"]) if len(c) else 0,
        "comparisons.rejected": _empty_text(c["rejected"]) if len(c) else 0,
        "ratings.response": _empty_text(data.ratings["response"]),
        "votes.response": _empty_text(data.votes["response"]),
        "rankings.responses": int(
            data.rankings["responses"].map(lambda r: any(not str(t).strip() for t in r)).sum()
        )
        if len(data.rankings)
        else 0,
        "items.text": _empty_text(data.items["text"]),
    }
    rep.empty_texts = {k: v for k, v in empties.items() if v}
    for k in ("ratings", "votes"):
        t = getattr(data, k)
        t = t[t["user_id"] != POPULATION_USER]
        if len(t):
            rep.repeated[k] = int(t.duplicated(["user_id", "item_id"]).sum())
    rep.repeated = {k: v for k, v in rep.repeated.items() if v}
    if isinstance(data.meta.get("repeat_judgments"), dict):
        rep.merged_repeats = dict(data.meta["repeat_judgments"])
    if isinstance(data.meta.get("skipped_rows"), dict):
        rep.skipped_rows = {str(k): int(v) for k, v in data.meta["skipped_rows"].items()}
    return rep
