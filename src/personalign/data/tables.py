"""Generic tables of judgments and personalign's canonical files: JSONL, CSV, Parquet, JSON, Hugging Face datasets.

The file-level primitives every reader uses (``open_text``, ``read_jsonl_records``, ``read_csv_frame``,
``require_columns``, ``frame_to_data``), the generic readers and writers, and ``GENERIC_READERS``, the generic
formats by name (:mod:`personalign.data.adapters` adds the public formats to it; ``read_data`` in
:mod:`personalign.data.io` dispatches over the whole table).

Generic tables (one record per judgment) carry their kind in their columns: ``chosen``/``rejected`` are
comparisons, ``response`` + ``rating`` ratings, ``response`` + ``vote`` votes, ``responses`` rankings, and TRL's
unpaired ``completion`` + ``label`` ratings on the scale (0, 1). ``user_col`` names the person column when it is
not ``user_id``; ``column_map`` renames any other columns ({old: new}) first; ``user_columns`` moves per-person
columns (demographics) into the users table.

The canonical files that ``personalign data convert`` writes hold a whole :class:`PreferenceData`:

- Parquet (lossless): one long table, a ``kind`` column telling which table a row belongs to (comparisons,
  ratings, rankings, votes, users, items). A column keeps its name; when two tables use one name with different
  types it is stored as ``<table>.<column>``. The schema metadata key ``personalign`` holds JSON with the format
  version, ``name``, ``rating_scale``, ``meta`` and, per table, its columns in order (logical -> stored name),
  its columns stored as JSON text (cells Arrow cannot type) and its row count. Dtypes, lists and nulls round-trip.
- JSONL: one record a line, each with a ``kind`` field; the first line is ``{"kind": "meta", "_meta": {...}}``.
- CSV: the same long table as text (lists as JSON); dtypes are re-inferred on reading.

Every write goes to a temporary file in the target folder, renamed into place when complete.
"""

from __future__ import annotations

import gzip
import io as _io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.data.files import atomic_write
from personalign.data.schema import (
    COMPARISON_COLUMNS,
    ITEM_COLUMNS,
    KINDS,
    POPULATION_USER,
    RANKING_COLUMNS,
    RATING_COLUMNS,
    VOTE_COLUMNS,
)
from personalign.data.validate import (
    Locator,
    check_frame,
    csv_line_locator,
    line_locator,
    row_locator,
    show_value,
)
from personalign.errors import ConfigError, DataError

PARQUET_META_KEY = b"personalign"
PARQUET_FORMAT = "personalign.preference-data.v1"
TABLES = (*KINDS, "users", "items")
TEXT_COLUMNS = ("prompt", "chosen", "rejected", "response", "text", "completion")
ID_COLUMNS = ("user_id", "item_id", "chosen_id", "rejected_id")
_KIND_ALIASES = {
    "comparison": "comparisons",
    "comparisons": "comparisons",
    "rating": "ratings",
    "ratings": "ratings",
    "ranking": "rankings",
    "rankings": "rankings",
    "vote": "votes",
    "votes": "votes",
    "user": "users",
    "users": "users",
    "item": "items",
    "items": "items",
    "meta": "meta",
}


# ------------------------------------------------------------------------------------------- plumbing
def open_text(path: str | Path) -> _io.TextIOBase:
    """Open a text file for reading, gunzipping ``.gz`` files."""
    path = Path(path)
    if path.suffix == ".gz":
        return _io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_jsonl_records(path: str | Path) -> tuple[list[dict[str, Any]], list[int]]:
    """All JSON objects of a JSON-lines file and their 1-based line numbers (blank lines skipped).

    A line that is not a JSON object raises DataError naming ``file:line``.
    """
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    with open_text(path) as fh:
        try:
            for n, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.strip())
                except RecursionError:
                    raise DataError(
                        "JSON nested too deeply", file=str(path), line=n, expected="one JSON object per line"
                    ) from None
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"not valid JSON ({exc.msg} at column {exc.colno})",
                        file=str(path),
                        line=n,
                        expected="one JSON object per line",
                    ) from None
                if not isinstance(rec, dict):
                    raise DataError(
                        f"got a JSON {type(rec).__name__}",
                        file=str(path),
                        line=n,
                        expected="one JSON object per line",
                    )
                records.append(rec)
                lines.append(n)
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
            raise DataError(
                f"cannot decode the file ({exc})", file=str(path), expected="UTF-8 JSON lines"
            ) from None
    return records, lines


def read_csv_frame(path: str | Path, *, text_columns: tuple[str, ...] = (), **kwargs: Any) -> pd.DataFrame:
    """A CSV file as a DataFrame; only empty cells are missing ("NA", "None" stay text); id and text columns
    stay strings. Parser errors become DataError with the file and line."""
    dtype = {c: str for c in (*ID_COLUMNS, *TEXT_COLUMNS, *text_columns)}
    try:
        return pd.read_csv(
            path, dtype=dtype, keep_default_na=False, na_values=[""], low_memory=False, **kwargs
        )
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise DataError(
            f"malformed CSV ({exc})".strip(),
            file=str(path),
            line=int(m.group(1)) if m else None,
            expected="the same number of fields in every line",
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError("empty file", file=str(path), expected="a header line and records") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot decode the file ({exc})", file=str(path), expected="UTF-8 text") from None


def require_columns(df: pd.DataFrame, columns: list[str] | tuple[str, ...], *, source: str | None) -> None:
    """Raise DataError naming the first missing column."""
    for c in columns:
        if c not in df.columns:
            raise DataError(
                f"no column '{c}' (found: {', '.join(map(str, df.columns))})",
                file=source,
                field=c,
                expected=f"columns {', '.join(columns)}",
            )


# ------------------------------------------------------------------------------------ generic tables
def infer_kind(columns: list[str] | pd.Index) -> str | None:
    """The judgment kind a table's columns describe, or None."""
    cols = set(columns)
    if {"chosen", "rejected"} <= cols:
        return "comparisons"
    if "responses" in cols:
        return "rankings"
    if "vote" in cols and ("response" in cols or "item_id" in cols):
        return "votes"
    if "rating" in cols and ("response" in cols or "item_id" in cols):
        return "ratings"
    if {"completion", "label"} <= cols:
        return "ratings"
    return None


def _rename(
    df: pd.DataFrame, *, user_col: str | None, column_map: dict[str, str] | None, source: str | None
) -> pd.DataFrame:
    if column_map:
        df = df.rename(columns=dict(column_map))
    if user_col and user_col != "user_id":
        if user_col not in df.columns:
            raise DataError(
                f"person column '{user_col}' not found (columns: {', '.join(map(str, df.columns))})",
                file=source,
                field=user_col,
                expected="the column named by user_col",
            )
        if "user_id" in df.columns:
            df = df.drop(columns=["user_id"])
        df = df.rename(columns={user_col: "user_id"})
    return df


def _flatten_messages(v: Any) -> Any:
    """TRL's conversational cells (lists of {role, content}) as plain text; other values unchanged."""
    if isinstance(v, np.ndarray):
        v = list(v)
    if isinstance(v, list) and v and all(isinstance(m, dict) and "content" in m for m in v):
        if len(v) == 1:
            return str(v[0]["content"])
        return "\n\n".join(f"{m.get('role', 'message')}: {m['content']}" for m in v)
    return v


def _conversational_to_text(df: pd.DataFrame) -> pd.DataFrame:
    """Flatten TRL conversational columns; with no ``prompt`` column, the messages chosen and rejected share
    at their start become the prompt (TRL's implicit prompt)."""
    for col in ("prompt", "chosen", "rejected", "completion"):
        if col not in df.columns or not len(df):
            continue
        first = df[col].iloc[0]
        if not isinstance(first, list | np.ndarray):
            continue
        if col == "chosen" and "prompt" not in df.columns and "rejected" in df.columns:
            prompts, chosen, rejected = [], [], []
            for c, r in zip(df["chosen"], df["rejected"], strict=True):
                c, r = list(c), list(r)
                k = 0
                while k < min(len(c), len(r)) - 1 and c[k] == r[k]:
                    k += 1
                prompts.append(_flatten_messages(c[:k]) if k else "")
                chosen.append(_flatten_messages(c[k:]))
                rejected.append(_flatten_messages(r[k:]))
            df = df.assign(prompt=prompts, chosen=chosen, rejected=rejected)
            continue
        df[col] = df[col].map(_flatten_messages)
    return df


def frame_to_data(
    df: pd.DataFrame,
    *,
    source: str | None = None,
    locate: Locator | None = None,
    user_col: str | None = None,
    column_map: dict[str, str] | None = None,
    kind: str | None = None,
    rating_scale: tuple[float, float] | None = None,
    user_columns: list[str] | None = None,
    default_user: str | None = None,
    name: str | None = None,
    fill_text: bool = False,
) -> PreferenceData:
    """A table of judgments of one kind (or a long table with a ``kind`` column) as PreferenceData.

    ``default_user`` fills the person when the table has no person column (TRL data: ``POPULATION_USER``);
    without it a missing person column is an error. ``fill_text``: missing texts are empty texts (CSV cells).
    """
    df = _rename(df, user_col=user_col, column_map=column_map, source=source)
    locate = locate or row_locator()
    if "kind" in df.columns and kind is None:
        return _from_long(
            df, source=source, locate=locate, rating_scale=rating_scale, name=name, fill_text=fill_text
        )
    df = _conversational_to_text(df)
    kind = kind or infer_kind(df.columns)
    if kind is None:
        raise DataError(
            f"cannot tell the kind of judgment from the columns {', '.join(map(str, df.columns))}",
            file=source,
            expected="chosen+rejected (comparisons), response+rating (ratings), response+vote (votes), "
            "responses (rankings) or completion+label; rename columns with column_map / --map",
        )
    kind = _KIND_ALIASES.get(kind, kind)
    if "user_id" not in df.columns:
        if default_user is None:
            raise DataError(
                "no person column",
                file=source,
                field="user_id",
                expected="a 'user_id' column (name another one with user_col / --user-col)",
            )
        df = df.assign(user_id=default_user)
    if kind == "ratings" and "rating" not in df.columns and {"completion", "label"} <= set(df.columns):
        # TRL's unpaired preference format: a completion is desirable (1) or not (0)
        df = df.rename(columns={"completion": "response", "label": "rating"})
        from personalign.data.validate import to_bool

        lab = to_bool(df["rating"])
        bad = lab.isna().to_numpy()
        if bad.any():
            raise DataError(
                f"got {show_value(df['rating'].iloc[int(np.flatnonzero(bad)[0])])}",
                file=source,
                field="label",
                expected="a boolean label",
                **locate(int(np.flatnonzero(bad)[0])),
            )
        df["rating"] = lab.astype(float)
        rating_scale = rating_scale or (0.0, 1.0)
    df = check_frame(df, kind, source=source, locate=locate, rating_scale=rating_scale)
    users = None
    if user_columns:
        require_columns(df, user_columns, source=source)
        users = df[["user_id", *user_columns]].drop_duplicates("user_id").reset_index(drop=True)
        df = df.drop(columns=list(user_columns))
    return PreferenceData(
        **{kind: df},
        users=users,
        rating_scale=rating_scale,
        name=name or (Path(source).stem if source else "data"),
    )


def _drop_empty_extras(df: pd.DataFrame, keep: set[str]) -> pd.DataFrame:
    """Columns that belong to other tables of a long file are all missing in this table's rows."""
    drop = [c for c in df.columns if c not in keep and df[c].isna().all()]
    return df.drop(columns=drop)


def _from_long(
    df: pd.DataFrame,
    *,
    source: str | None,
    locate: Locator,
    rating_scale: tuple[float, float] | None,
    name: str | None,
    fill_text: bool = False,
) -> PreferenceData:
    """A long table whose ``kind`` column names each row's table (canonical JSONL/CSV, or hand-made)."""
    kinds = df["kind"].map(
        lambda k: _KIND_ALIASES.get(str(k).strip().lower()) if isinstance(k, str) else None
    )
    bad = kinds.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"got {show_value(df['kind'].iloc[i])}",
            file=source,
            field="kind",
            expected="one of " + ", ".join((*TABLES, "meta")),
            **locate(i),
        )
    meta: dict[str, Any] = {}
    if (kinds == "meta").any() and "_meta" in df.columns:
        m = df.loc[kinds == "meta", "_meta"].iloc[0]
        meta = json.loads(m) if isinstance(m, str) else dict(m)
    rating_scale = rating_scale or (tuple(meta["rating_scale"]) if meta.get("rating_scale") else None)

    canon = {
        "comparisons": COMPARISON_COLUMNS,
        "ratings": RATING_COLUMNS,
        "rankings": RANKING_COLUMNS,
        "votes": VOTE_COLUMNS,
        "users": ["user_id"],
        "items": ITEM_COLUMNS,
    }
    tabs: dict[str, pd.DataFrame] = {}
    positions = np.arange(len(df))
    for k in TABLES:
        sel = (kinds == k).to_numpy()
        if not sel.any():
            continue
        sub = df[sel].drop(columns=[c for c in ("kind", "_meta") if c in df.columns])
        sub = _drop_empty_extras(sub, set(canon[k]))
        if fill_text:
            for c in TEXT_COLUMNS:
                if c in canon[k] and c in sub.columns:
                    sub[c] = sub[c].fillna("")
        if k in KINDS:
            pos = positions[sel]
            tabs[k] = check_frame(
                sub,
                k,
                source=source,
                locate=lambda i, pos=pos: locate(int(pos[i])),
                rating_scale=rating_scale,
            )
        else:
            # a long file's columns come in first-appearance order over all tables: put the key columns first
            first = [c for c in canon[k] if c in sub.columns]
            sub = sub[first + [c for c in sub.columns if c not in first]].reset_index(drop=True)
            if "user_id" in sub.columns:
                sub["user_id"] = sub["user_id"].astype(str)
            if "item_id" in sub.columns:
                sub["item_id"] = sub["item_id"].astype(str)
            tabs[k] = sub
    return PreferenceData(
        **tabs,
        rating_scale=rating_scale,
        name=name or meta.get("name") or (Path(source).stem if source else "data"),
        meta=dict(meta.get("meta") or {}),
    )


# --------------------------------------------------------------------------------------------- readers
def read_jsonl(path: str | Path, **options: Any) -> PreferenceData:
    """A JSON-lines file (``.jsonl``, ``.jsonl.gz``): canonical long records or one judgment per line
    (``options``: as in :func:`read_csv`)."""
    records, lines = read_jsonl_records(path)
    if not records:
        raise DataError("no records", file=str(path), expected="at least one JSON object")
    df = pd.DataFrame.from_records(records)
    return frame_to_data(
        df,
        source=str(path),
        locate=line_locator(lines),
        **options,
    )


def read_json(path: str | Path, **kwargs: Any) -> PreferenceData:
    """A JSON file holding a list of records (or ``{"data": [...]}``); rows are 0-based list positions."""
    try:
        with open_text(path) as fh:
            obj = json.load(fh)
    except RecursionError:
        raise DataError("JSON nested too deeply", file=str(path), expected="a JSON list of records") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot decode the file ({exc})", file=str(path), expected="UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"not valid JSON ({exc.msg})", file=str(path), line=exc.lineno, expected="a JSON list of records"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError("not a list of JSON objects", file=str(path), expected="a JSON list of records")
    return frame_to_data(pd.DataFrame.from_records(obj), source=str(path), locate=row_locator(), **kwargs)


def read_csv(path: str | Path, *, sep: str = ",", **options: Any) -> PreferenceData:
    """A CSV file (one judgment per record, or the canonical long table); errors name the 1-based line.

    ``options`` are :func:`frame_to_data`'s table options (``user_col``, ``column_map``, ``kind``, ``rating_scale``,
    ``user_columns``, ``default_user``, ``name``)."""
    extra = tuple(
        k for k, v in (options.get("column_map") or {}).items() if v in (*ID_COLUMNS, *TEXT_COLUMNS)
    )
    if options.get("user_col"):
        extra += (options["user_col"],)
    df = read_csv_frame(path, text_columns=extra, sep=sep)
    if df.empty:
        raise DataError(
            "no records (only a header line)", file=str(path), expected="a header line and records"
        )
    if "kind" not in df.columns:
        for c in TEXT_COLUMNS:
            if (
                c in df.columns
            ):  # an empty CSV cell is an empty text (validate reports it), not a missing field
                df[c] = df[c].fillna("")
    return frame_to_data(
        df,
        source=str(path),
        locate=csv_line_locator(path, delimiter=sep),
        fill_text=True,
        **options,
    )


def read_parquet(path: str | Path, **options: Any) -> PreferenceData:
    """A Parquet file: the canonical whole-dataset file, or any table of one judgment kind (``options``: as in
    :func:`read_csv`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read Parquet ({exc})", file=str(path), expected="a Parquet file") from None
    md = (table.schema.metadata or {}).get(PARQUET_META_KEY)
    if md is not None and not any(options.get(k) for k in ("user_col", "column_map", "kind")):
        return _from_canonical_parquet(table, json.loads(md), str(path))
    return frame_to_data(
        table.to_pandas(),
        source=str(path),
        locate=row_locator(),
        **options,
    )


def read_trl(
    path: str | Path,
    *,
    user_col: str | None = None,
    column_map: dict[str, str] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> PreferenceData:
    """A TRL-format file (prompt/chosen/rejected, conversational or plain; or completion/label) in JSONL,
    JSON, CSV, Parquet or a ``datasets`` folder. The person column is ``user_col`` (default ``user_id``);
    without one every pair belongs to ``POPULATION_USER``."""
    path = Path(path)
    kw = dict(user_col=user_col, column_map=column_map, default_user=POPULATION_USER, name=name, **kwargs)
    if path.is_dir():
        return read_hf_disk(path, **kw)
    return generic_reader(path)(path, **kw)


def read_hf_disk(path: str | Path, **kwargs: Any) -> PreferenceData:
    """A dataset saved with ``datasets.Dataset.save_to_disk`` (a Dataset or a DatasetDict)."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(
            f"not a saved Hugging Face dataset ({exc})",
            file=str(path),
            expected="a folder written by save_to_disk",
        ) from None
    kwargs.setdefault("default_user", POPULATION_USER)
    return from_hf_dataset(ds, source=str(path), **kwargs)


def from_hf_dataset(
    ds: Any, *, default_user: str | None = POPULATION_USER, source: str | None = None, **options: Any
) -> PreferenceData:
    """A Hugging Face ``datasets.Dataset`` (or ``DatasetDict``, its splits joined with a ``split`` column).

    TRL-style datasets without a person column belong to ``POPULATION_USER`` (``default_user=None`` makes a
    missing person column an error). Rows in errors are 0-based dataset rows. ``options``: as in :func:`read_csv`.
    """
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        df = pd.concat([d.to_pandas().assign(split=s) for s, d in ds.items()], ignore_index=True)
    elif isinstance(ds, datasets.Dataset):
        df = ds.to_pandas()
    else:
        raise ConfigError(f"expected a datasets.Dataset or DatasetDict, got {type(ds).__name__}")
    return frame_to_data(
        df,
        source=source or "<datasets.Dataset>",
        locate=row_locator(),
        default_user=default_user,
        **{**options, "name": options.get("name") or "hf-dataset"},
    )


def to_hf_dataset(data: PreferenceData, kind: str | None = None) -> Any:
    """One judgment table as a ``datasets.Dataset`` (TRL column names plus ``user_id``).

    ``kind=None`` takes the only non-empty kind; with several, name one (or convert with
    ``data.as_comparison_data()`` first: TRL's reward and DPO trainers want comparisons).
    """
    import datasets

    present = [k for k in KINDS if len(getattr(data, k))]
    if kind is None:
        if len(present) != 1:
            raise ConfigError(f"data holds {', '.join(present) or 'no judgments'}; name one with kind=")
        kind = present[0]
    kind = _KIND_ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    df = getattr(data, kind).copy()
    if kind == "rankings":
        df["responses"] = df["responses"].map(list)
    for c in df.columns:  # Arrow needs one type per column: object columns of mixed scalars become text
        if df[c].dtype == object and c != "responses":
            types = {type(v) for v in df[c] if v is not None and not (isinstance(v, float) and np.isnan(v))}
            if len(types) > 1:
                df[c] = df[c].map(lambda v: None if v is None else str(v))
    return datasets.Dataset.from_pandas(df, preserve_index=False)


# --------------------------------------------------------------------------------- canonical parquet
def arrow_columns(df: pd.DataFrame) -> tuple[dict[str, Any], list[str]]:
    """Each column as an Arrow array; a column Arrow cannot type (mixed objects) is stored as JSON text."""
    import pyarrow as pa

    arrays: dict[str, Any] = {}
    json_cols: list[str] = []
    for c in df.columns:
        s = df[c]
        if c == "responses":
            s = s.map(lambda r: list(r) if r is not None else None)
        try:
            arrays[str(c)] = pa.array(s, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
            arrays[str(c)] = pa.array(
                [
                    None
                    if v is None or (isinstance(v, float) and np.isnan(v))
                    else json.dumps(v, default=str)
                    for v in s
                ],
                type=pa.string(),
            )
            json_cols.append(str(c))
    return arrays, json_cols


def write_parquet(data: PreferenceData, path: str | Path) -> Path:
    """The whole PreferenceData as one canonical Parquet file (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    per: dict[str, tuple[dict[str, Any], list[str], int]] = {}
    types: dict[str, set[str]] = {}
    for t in TABLES:
        df = getattr(data, t)
        arrays, json_cols = arrow_columns(df)
        per[t] = (arrays, json_cols, len(df))
        for c, a in arrays.items():
            if not pa.types.is_null(a.type):
                types.setdefault(c, set()).add(str(a.type))
    clash = {c for c, ts in types.items() if len(ts) > 1} | {"kind"}
    tables = []
    md_tables: dict[str, Any] = {}
    for t, (arrays, json_cols, n) in per.items():
        phys = {c: (f"{t}.{c}" if c in clash else c) for c in arrays}
        cols = {"kind": pa.array([t] * n, type=pa.string())}
        cols.update({phys[c]: a for c, a in arrays.items()})
        tables.append(pa.table(cols))
        md_tables[t] = {"columns": [[c, phys[c]] for c in arrays], "json": json_cols, "rows": n}
    table = pa.concat_tables(tables, promote_options="permissive")
    md = {
        "format": PARQUET_FORMAT,
        "name": data.name,
        "rating_scale": list(data.rating_scale) if data.rating_scale else None,
        "meta": split_meta(data.meta)[0],
        "tables": md_tables,
    }
    table = table.replace_schema_metadata({PARQUET_META_KEY: json.dumps(md, default=str).encode()})
    path = Path(path)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _from_canonical_parquet(table: Any, md: dict[str, Any], source: str) -> PreferenceData:
    import pyarrow as pa
    import pyarrow.compute as pc

    if md.get("format") != PARQUET_FORMAT:
        raise DataError(
            f"unknown personalign Parquet format {md.get('format')!r}", file=source, expected=PARQUET_FORMAT
        )
    tabs: dict[str, pd.DataFrame] = {}
    for t, spec in md["tables"].items():
        names = [c for c, _ in spec["columns"]]
        phys = [p for _, p in spec["columns"]]
        sub = table.filter(pc.equal(table["kind"], t)).select(phys).rename_columns(names)
        if sub.num_rows != spec["rows"]:
            raise DataError(
                f"table {t} has {sub.num_rows} rows, the metadata says {spec['rows']}",
                file=source,
                field="kind",
                expected="an intact file written by personalign",
            )
        df = sub.to_pandas()
        for c, f in zip(names, sub.schema, strict=True):
            if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
                df[c] = df[c].map(lambda v: list(v) if v is not None else None)
        for c in spec.get("json", []):
            df[c] = df[c].map(lambda v: json.loads(v) if isinstance(v, str) else v)
        tabs[t] = df
    rs = md.get("rating_scale")
    return PreferenceData(
        **tabs,
        rating_scale=tuple(rs) if rs else None,
        name=md.get("name") or "data",
        meta=dict(md.get("meta") or {}),
    )


# --------------------------------------------------------------------------------- jsonl / csv writers
def _long_frames(data: PreferenceData) -> list[pd.DataFrame]:
    out = []
    for t in ("users", "items", *KINDS):
        df = getattr(data, t)
        if len(df):
            out.append(df.assign(kind=t)[["kind", *df.columns]])
    return out


def _is_plain(x: Any) -> bool:
    """JSON's own types (numpy scalars included): what a file's metadata can hold and give back as it was."""
    if isinstance(x, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in x.items())
    if isinstance(x, list | tuple):
        return all(_is_plain(v) for v in x)
    return x is None or isinstance(x, str | bool | int | float | np.integer | np.floating | np.bool_)


def split_meta(meta: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The entries of ``meta`` a file can hold, and the keys of those it cannot (Python objects such as a
    synthetic population's ``truth``: written as their ``str`` they would come back as a string that claims
    to be the object)."""
    kept = {k: v for k, v in meta.items() if _is_plain(v)}
    return kept, sorted(set(meta) - set(kept))


def _meta_record(data: PreferenceData) -> dict[str, Any]:
    return {
        "name": data.name,
        "rating_scale": list(data.rating_scale) if data.rating_scale else None,
        "meta": split_meta(data.meta)[0],
    }


def write_jsonl(data: PreferenceData, path: str | Path) -> Path:
    """One record a line with a ``kind`` field; the first line holds the name, scale and meta."""
    path = Path(path)
    with atomic_write(path) as tmp:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(tmp, "wt", encoding="utf-8") as fh:
            fh.write(
                json.dumps({"kind": "meta", "_meta": _meta_record(data)}, default=str, ensure_ascii=False)
            )
            fh.write("\n")
            for df in _long_frames(data):
                if "responses" in df.columns:
                    df = df.assign(responses=df["responses"].map(list))
                text = df.to_json(
                    orient="records", lines=True, force_ascii=False, date_format="iso", default_handler=str
                )
                fh.write(text if text.endswith("\n") else text + "\n")
    return path


def write_csv(data: PreferenceData, path: str | Path) -> Path:
    """The long table as CSV text (lists and dicts as JSON); a ``meta`` row first."""
    path = Path(path)
    frames = [pd.DataFrame({"kind": ["meta"], "_meta": [json.dumps(_meta_record(data), default=str)]})]
    for df in _long_frames(data):
        df = df.copy()
        for c in df.columns:
            if df[c].dtype == object:
                df[c] = df[c].map(
                    lambda v: (
                        json.dumps(list(v) if isinstance(v, tuple | np.ndarray) else v)
                        if isinstance(v, list | dict | tuple | np.ndarray)
                        else v
                    )
                )
        frames.append(df)
    long = pd.concat(frames, ignore_index=True)
    with atomic_write(path) as tmp:
        long.to_csv(tmp, index=False)
    return path


def write_data(data: PreferenceData, path: str | Path, format: str | None = None) -> Path:
    """Write ``data`` by extension (``.parquet``, ``.jsonl``, ``.jsonl.gz``, ``.csv``) or ``format``."""
    path = Path(path)
    fmt = format or format_from_name(path)
    writers = {"parquet": write_parquet, "jsonl": write_jsonl, "csv": write_csv}
    if fmt not in writers:
        raise ConfigError(f"cannot write {path.name}: expected a .parquet, .jsonl, .jsonl.gz or .csv path")
    return writers[fmt](data, path)


# ------------------------------------------------------------------------------------- generic formats
def read_tsv(path: str | Path, **kwargs: Any) -> PreferenceData:
    """A tab-separated file (see :func:`read_csv`)."""
    return read_csv(path, sep="\t", **kwargs)


GENERIC_READERS = {
    "jsonl": read_jsonl,
    "json": read_json,
    "csv": read_csv,
    "tsv": read_tsv,
    "parquet": read_parquet,
}
EXTENSIONS = (
    (".jsonl.gz", "jsonl"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".json.gz", "json"),
    (".json", "json"),
    (".csv", "csv"),
    (".tsv", "tsv"),
    (".parquet", "parquet"),
    (".pq", "parquet"),
)


def format_from_name(path: str | Path) -> str | None:
    """The generic format a file name's extension names (``jsonl``, ``json``, ``csv``, ``tsv``, ``parquet``)."""
    name = Path(path).name.lower()
    return next((fmt for ext, fmt in EXTENSIONS if name.endswith(ext)), None)


def generic_reader(path: Path) -> Any:
    """The generic reader of a file by its extension (DataError for an unknown one)."""
    fmt = format_from_name(path)
    if fmt is None:
        raise DataError(
            f"cannot tell the file type of {path.name}",
            file=str(path),
            expected="a .jsonl, .jsonl.gz, .json, .csv, .tsv or .parquet file",
        )
    return GENERIC_READERS[fmt]
