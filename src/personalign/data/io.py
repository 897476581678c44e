"""Reading and writing preference data: ``read_data`` for every format, ``write_data`` for the canonical files.

``read_data(path, format=None)`` reads any format of :func:`personalign.data.adapters.available_formats` (one table
of formats: the generic ones of :mod:`personalign.data.tables` and the public ones of the adapters);
``format=None`` detects it from the file or folder. A spec such as ``synthetic:persons=500,alpha=0.1,seed=0``
generates a synthetic population in memory (:func:`personalign.data.adapters.synthetic.population_from_spec`).
``write_data(data, path)`` writes by extension: one canonical file (``.parquet`` lossless; ``.jsonl``, ``.csv`` a
long table with a ``kind`` column), or, for a path without an extension, a folder of one file per table
(:mod:`personalign.data.tablefolder`, format ``tables``). The readers and writers of generic tables are importable from
here as well (see :mod:`personalign.data.tables`).

Layering: files, schema <- core <- tables <- adapters <- io (no module of the package imports one to its right).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pandas as pd

from personalign.data.adapters import detect_format, get_adapter
from personalign.data.adapters.synthetic import is_synthetic_spec, population_from_spec
from personalign.data.core import PreferenceData
from personalign.data.files import atomic_write, write_text_atomic  # noqa: F401  (importable from here as before)
from personalign.data.manifest import record_input
from personalign.data.tablefolder import (  # noqa: F401  (importable from here)
    is_table_folder,
    read_table_folder,
    write_judgments,
    write_table_folder,
)
from personalign.data.tables import (  # noqa: F401  (importable from here as before)
    frame_to_data,
    from_hf_dataset,
    infer_kind,
    open_text,
    read_csv,
    read_csv_frame,
    read_hf_disk,
    read_json,
    read_jsonl,
    read_jsonl_records,
    read_parquet,
    read_trl,
    require_columns,
    to_hf_dataset,
    write_csv,
    write_jsonl,
    write_parquet,
)
from personalign.data.tables import write_data as write_file
from personalign.data.users import attach_users, read_users
from personalign.errors import ConfigError


def read_data(
    path: str | Path,
    format: str | None = None,
    *,
    user_col: str | None = None,
    column_map: dict[str, str] | None = None,
    users: str | Path | pd.DataFrame | None = None,
    **opts: Any,
) -> PreferenceData:
    """Read preference data from ``path`` in ``format`` (see ``personalign.data.adapters.available_formats``).

    ``format=None`` guesses from the extension and the content (public formats are recognized by their
    columns or file names; a folder written by ``personalign data synth`` is ``synthetic``). ``user_col`` names
    the person column, ``column_map`` renames columns ({old: new}); other options go to the format's reader (e.g.
    ``rating_scale``, ``kind``, ``user_columns``). ``path`` may also be a synthetic spec
    (``synthetic:persons=500,alpha=0.1``). ``users``: a persons table (a file, see
    :func:`personalign.data.users.read_users`, or a DataFrame) joined onto the persons.
    """
    data = _read(path, format, user_col=user_col, column_map=column_map, **opts)
    if users is None:
        return data
    if isinstance(users, pd.DataFrame):
        return attach_users(data, users.assign(user_id=users["user_id"].astype(str)), None)
    record_input(users)
    return attach_users(data, read_users(users, user_col), str(users))


def _read(path: str | Path, format: str | None, **opts: Any) -> PreferenceData:
    kwargs = {k: v for k, v in opts.items() if v is not None}
    record_input(path)  # for the manifest of what the current command writes (a no-op outside the CLI)
    if is_synthetic_spec(path) and format in (None, "synthetic"):
        if kwargs:
            raise ConfigError(f"a synthetic spec takes no reader options (got {', '.join(sorted(kwargs))})")
        return population_from_spec(str(path))
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    fmt = format or detect_format(path)
    reader = get_adapter(fmt)
    params = inspect.signature(reader).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ConfigError(f"format {fmt!r} does not take the option(s) {', '.join(unknown)}")
    return reader(path, **kwargs)


def write_data(data: PreferenceData, path: str | Path, format: str | None = None) -> Path:
    """Write ``data`` by ``format`` or by extension: ``tables`` (a path without an extension, or an existing
    folder) is a folder of one file per table (JSONL; ``tables-parquet`` for Parquet files); ``parquet``, ``jsonl``
    and ``csv`` one canonical file (see :mod:`personalign.data.tables`)."""
    p = Path(path)
    if format in ("tables", "tables-parquet") or (format is None and (p.is_dir() or not p.suffix)):
        return write_table_folder(data, p, file_format="parquet" if format == "tables-parquet" else "jsonl")
    return write_file(data, p, format)
