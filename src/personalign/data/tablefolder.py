"""A folder of one file per table, and one judgment table as a dense file (TRL-ready comparisons).

``write_table_folder(data, folder)`` writes each non-empty table of a :class:`PreferenceData` as its own file
(``comparisons.jsonl``, ``ratings.jsonl``, ``rankings.jsonl``, ``votes.jsonl``, ``users.jsonl``,
``items.jsonl``; or ``.parquet`` with ``file_format="parquet"``) plus ``tables.json``, the manifest: the format
version, ``name``, ``rating_scale``, ``meta`` and, per table, its file, row count, columns in order and the
columns a Parquet file stores as JSON text. Every file is dense: all records have the same fields, so
``datasets.load_dataset("json", data_files="folder/comparisons.jsonl")`` reads each one as a table.
``read_table_folder`` reads it back to the same tables (a hand-made folder of such files without a manifest is
read as well). The format name is ``tables``.

``write_judgments(data, path, kind)`` writes one kind of judgment alone: for comparisons TRL's columns
``prompt, chosen, rejected`` (texts) plus ``user_id`` and the ``tie``/``weight``/``timestamp`` fields the data
uses; ``read_data`` reads such a file back as that kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.data.files import atomic_dir, atomic_write, write_json_atomic
from personalign.data.schema import COMPARISON_COLUMNS, KINDS, RANKING_COLUMNS, RATING_COLUMNS, VOTE_COLUMNS
from personalign.data.tables import TABLES, arrow_columns, format_from_name, read_jsonl_records, split_meta
from personalign.data.validate import check_frame, line_locator, row_locator
from personalign.errors import ConfigError, DataError

FOLDER_FORMAT = "personalign.preference-tables.v1"
MANIFEST = "tables.json"
FILE_FORMATS = {"jsonl": ".jsonl", "parquet": ".parquet"}
# the defaults a judgment table fills in when a field is absent: a dense export leaves such columns out
_DEFAULTS = {"tie": False, "weight": 1.0}
_CANONICAL = {
    "comparisons": COMPARISON_COLUMNS,
    "ratings": RATING_COLUMNS,
    "rankings": RANKING_COLUMNS,
    "votes": VOTE_COLUMNS,
}


def _table_files(folder: Path) -> dict[str, Path]:
    """The table files of a folder by table name (``comparisons.jsonl``, ``items.parquet``, ...)."""
    found: dict[str, Path] = {}
    for t in TABLES:
        for ext in (".jsonl", ".jsonl.gz", ".parquet"):
            if (folder / f"{t}{ext}").is_file():
                found[t] = folder / f"{t}{ext}"
                break
    return found


def is_table_folder(path: str | Path) -> bool:
    """True for a folder :func:`write_table_folder` wrote (its manifest) or a hand-made folder of judgment
    files named by their kind (``comparisons.jsonl``, ``ratings.parquet``, ...)."""
    p = Path(path)
    if not p.is_dir():
        return False
    if (p / MANIFEST).is_file():
        return True
    return any(t in KINDS for t in _table_files(p))


def _jsonl_text(df: pd.DataFrame) -> str:
    if "responses" in df.columns:
        df = df.assign(responses=df["responses"].map(lambda r: list(r) if r is not None else None))
    if not len(df):
        return ""
    text = df.to_json(orient="records", lines=True, force_ascii=False, date_format="iso", default_handler=str)
    return text if text.endswith("\n") else text + "\n"


def _write_frame(df: pd.DataFrame, path: Path) -> list[str]:
    """One table as a dense JSONL or Parquet file (by extension); the columns stored as JSON text."""
    if format_from_name(path) == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays, json_cols = arrow_columns(df)
        with atomic_write(path) as tmp:
            pq.write_table(pa.table(arrays), tmp)
        return json_cols
    if format_from_name(path) != "jsonl":
        raise ConfigError(f"cannot write {path.name}: expected a .jsonl, .jsonl.gz or .parquet path")
    import gzip

    with atomic_write(path) as tmp:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(tmp, "wt", encoding="utf-8") as fh:
            fh.write(_jsonl_text(df))
    return []


def write_table_folder(data: PreferenceData, folder: str | Path, *, file_format: str = "jsonl") -> Path:
    """Each non-empty table of ``data`` as one file in ``folder`` plus the manifest (see the module docstring).

    ``data.meta`` goes into the manifest except the entries JSON cannot hold (see :func:`split_meta`).

    The folder is written beside ``folder`` and renamed into place when complete; whether an existing
    ``folder`` may be replaced is the caller's decision (:func:`personalign.data.files.check_replaceable`).
    """
    if file_format not in FILE_FORMATS:
        raise ConfigError(
            f"unknown table file format {file_format!r}; expected one of {', '.join(FILE_FORMATS)}"
        )
    folder = Path(folder)
    meta, dropped = split_meta(data.meta)
    manifest: dict[str, Any] = {
        "format": FOLDER_FORMAT,
        "name": data.name,
        "rating_scale": list(data.rating_scale) if data.rating_scale else None,
        "meta": meta,
        "meta_not_written": dropped,
        "tables": {},
    }
    with atomic_dir(folder) as tmp:
        for t in TABLES:
            df = getattr(data, t)
            if not len(df):
                continue
            name = f"{t}{FILE_FORMATS[file_format]}"
            json_cols = _write_frame(df, tmp / name)
            manifest["tables"][t] = {
                "file": name,
                "rows": len(df),
                "columns": [str(c) for c in df.columns],
                "json": json_cols,
            }
        write_json_atomic(tmp / MANIFEST, manifest)
    return folder


def _read_frame(path: Path, spec: dict[str, Any]) -> tuple[pd.DataFrame, Any]:
    """One table file as a DataFrame (columns in the manifest's order) and a locator for its errors."""
    if format_from_name(path) == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(
                f"cannot read Parquet ({exc})", file=str(path), expected="a Parquet file"
            ) from None
        df = table.to_pandas()
        for c, f in zip(table.column_names, table.schema, strict=True):
            if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
                df[c] = df[c].map(lambda v: list(v) if v is not None else None)
        for c in spec.get("json", []):
            df[c] = df[c].map(lambda v: json.loads(v) if isinstance(v, str) else v)
        locate = row_locator()
    else:
        records, lines = read_jsonl_records(path)
        df = pd.DataFrame.from_records(records)
        locate = line_locator(lines)
    order = [c for c in spec.get("columns", []) if c in df.columns]
    df = df[order + [c for c in df.columns if c not in order]]
    if "rows" in spec and len(df) != spec["rows"]:
        raise DataError(
            f"{len(df)} records, the manifest says {spec['rows']}",
            file=str(path),
            expected="an intact folder written by personalign",
        )
    return df, locate


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():  # a hand-made folder: the tables by their file names
        return {"tables": {t: {"file": p.name} for t, p in _table_files(folder).items()}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", file=str(path), expected="the folder's manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FOLDER_FORMAT:
        raise DataError(
            f"unknown manifest format {manifest.get('format') if isinstance(manifest, dict) else manifest!r}",
            file=str(path),
            field="format",
            expected=FOLDER_FORMAT,
        )
    return manifest


def read_table_folder(path: str | Path, *, name: str | None = None) -> PreferenceData:
    """A folder of one file per table (see the module docstring) as PreferenceData."""
    folder = Path(path)
    manifest = _manifest(folder)
    rs = manifest.get("rating_scale")
    rating_scale = tuple(rs) if rs else None
    tabs: dict[str, pd.DataFrame] = {}
    for t, spec in manifest.get("tables", {}).items():
        if t not in TABLES:
            raise DataError(f"unknown table {t!r}", file=str(folder / MANIFEST), expected=", ".join(TABLES))
        file = folder / spec["file"]
        if not file.is_file():
            raise DataError(
                "missing table file", file=str(file), expected=f"the {t} table the manifest names"
            )
        df, locate = _read_frame(file, spec)
        if t in KINDS:
            if "timestamp" in df.columns and df["timestamp"].isna().all():  # JSON's nulls: the missing float
                df["timestamp"] = df["timestamp"].astype(float)
            df = check_frame(df, t, source=str(file), locate=locate, rating_scale=rating_scale)
        else:
            for c in ("user_id", "item_id"):
                if c in df.columns:
                    df[c] = df[c].astype(str)
        tabs[t] = df
    if not any(t in KINDS for t in tabs):
        raise DataError(
            "no judgment table", file=str(folder), expected="comparisons, ratings, rankings or votes"
        )
    return PreferenceData(
        **tabs,
        rating_scale=rating_scale,
        name=name or manifest.get("name") or folder.name,
        meta=dict(manifest.get("meta") or {}),
    )


def _dense_columns(df: pd.DataFrame, kind: str) -> list[str]:
    """The columns a one-table export keeps: the canonical ones the data uses (never comparisons' item ids,
    which readers derive from the texts), then any extra column with a value."""
    keep = []
    for c in _CANONICAL[kind]:
        if kind == "comparisons" and c in ("chosen_id", "rejected_id"):
            continue
        col = df[c]
        if (c in _DEFAULTS and (col == _DEFAULTS[c]).all()) or col.isna().all():
            continue
        keep.append(c)
    extra = [c for c in df.columns if c not in _CANONICAL[kind] and not df[c].isna().all()]
    return keep + extra


def write_judgments(data: PreferenceData, path: str | Path, kind: str = "comparisons") -> Path:
    """One kind of judgment as a dense JSONL (``.jsonl``, ``.jsonl.gz``), Parquet or CSV file.

    Comparisons come out TRL-ready: ``prompt, chosen, rejected`` as texts, the person in ``user_id``, and
    ``tie``, ``weight``, ``timestamp`` only where the data uses them (see the module docstring).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    df = getattr(data, kind)
    if not len(df):
        raise ConfigError(f"the data holds no {kind}")
    cols = _dense_columns(df, kind)
    if kind == "comparisons":  # TRL's order: what the trainers read first, the person after
        cols = [
            "prompt",
            "chosen",
            "rejected",
            "user_id",
            *(c for c in cols if c not in ("prompt", "chosen", "rejected", "user_id")),
        ]
    df = df[cols]
    path = Path(path)
    if format_from_name(path) == "csv":
        with atomic_write(path) as tmp:
            df.assign(
                **{
                    c: df[c].map(
                        lambda v: json.dumps(list(v)) if isinstance(v, list | tuple | np.ndarray) else v
                    )
                    for c in df.columns
                    if df[c].dtype == object
                }
            ).to_csv(tmp, index=False)
        return path
    _write_frame(df, path)
    return path
