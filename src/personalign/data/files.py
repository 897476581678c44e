"""File primitives every layer writes through: atomic files and folders, and one JSON-safe serializer.

Nothing here knows about preference data; it sits at the bottom of the package so that every layer (data,
models, evaluate, serve, ...) can write artifacts that are never half-written and JSON that is always valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.errors import ConfigError

FILE_MODE = 0o666  # outputs are ordinary files, as open() makes them: 0644 and 0755 under the usual umask 022
DIR_MODE = 0o777  # (mkstemp and mkdtemp would leave 0600 and 0700, unreadable to teammates)


def umask() -> int:
    """The process's umask (read from /proc where it can be, so that no other thread sees it changed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_modes() -> tuple[int, int]:
    """The (file, folder) modes of written outputs: what ``open`` and ``mkdir`` would give under the umask."""
    mask = umask()
    return FILE_MODE & ~mask, DIR_MODE & ~mask


def to_jsonable(x: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays, pandas objects, Paths, sets and dataclasses converted;
    non-finite floats become ``None`` (JSON has no NaN), dictionary keys become strings."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in (sorted(x, key=str) if isinstance(x, (set, frozenset)) else x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, pd.Series):
        return to_jsonable(x.to_dict())
    if isinstance(x, pd.DataFrame):
        return to_jsonable(x.to_dict(orient="records"))
    if isinstance(x, Path):
        return str(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return to_jsonable(dataclasses.asdict(x))
    if x is pd.NA or x is pd.NaT:
        return None
    return x


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """``json.dumps`` of :func:`to_jsonable` (strict: NaN is never written)."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the content is written, naming the temporary file
        raise IsADirectoryError(f"{path}: is a folder; expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, output_modes()[0])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file through a temporary file renamed into place (never half-written)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write a binary file through a temporary file renamed into place."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (see :func:`to_jsonable`) through a temporary file."""
    return write_text_atomic(path, dumps_json(obj, indent=indent) + "\n")


def _make_readable(root: Path) -> None:
    file_mode, dir_mode = output_modes()
    os.chmod(root, dir_mode)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), dir_mode)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), file_mode)


def check_replaceable(
    path: str | Path, ours: Callable[[Path], bool], what: str, *, overwrite: bool = False
) -> None:
    """ConfigError unless a new folder may take the place of ``path``: it is missing, an empty folder, one of
    ours (``ours(path)``: e.g. an earlier model folder), or ``overwrite`` is set. Anything else holds the
    user's own files, which :func:`atomic_dir` would delete."""
    p = Path(path)
    if overwrite or not (p.exists() or p.is_symlink()):
        return
    if p.is_dir():
        if not any(p.iterdir()) or ours(p):
            return
        raise ConfigError(
            f"{p}: exists and is not {what}; writing there would delete its files (pass --overwrite to replace it)"
        )
    raise ConfigError(f"{p}: exists and is a file, not {what} (pass --overwrite to replace it)")


def is_result_folder(path: str | Path, main: str) -> bool:
    """Whether ``path`` is a result folder an earlier run of ours wrote: its ``main`` document (e.g.
    ``results.json``) is there and is a JSON object."""
    doc = Path(path) / main
    try:
        return doc.is_file() and isinstance(json.loads(doc.read_text(encoding="utf-8")), dict)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it takes the place of ``path``.

    An existing ``path`` is moved aside first and removed only once the new folder is in place, so a failure at
    any point leaves either the old folder or the new one, never a mixture. Whether ``path`` may be replaced at
    all is the caller's decision (see e.g. the models' artifact check), not this function's.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _make_readable(tmp)
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
