"""Reproducibility manifests: ``manifest.json`` in every model and result folder.

A manifest says what made a folder: the package versions, the git commit of the code (and of the working
directory, when either sits in a git checkout), a sha256 of each input data file, a content hash and the size of
the data a model was trained on, the seed(s), the command line that reproduces it (``personalign ...`` with the
real arguments) and the content of the experiment config file it was run with.

The command line and the inputs belong to one invocation: the CLI opens it (:func:`invocation`) with the real
argv, the data readers record every file they read into it (:func:`record_input`), a ``--config`` file is
recorded with :func:`record_config`, and every writer of a folder calls :func:`write_manifest`. Library use
without the CLI has no command (``null``) and records what it knows.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import os
import platform
import shlex
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.data.files import dumps_json, write_text_atomic
from personalign.data.schema import KINDS

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
# the packages whose versions change results (the first four are the ones a model card names)
PACKAGES = ("personalign", "torch", "numpy", "pandas", "scipy", "scikit-learn", "sentence-transformers")
_CHUNK = 1 << 20


@dataclasses.dataclass
class Invocation:
    """One run of the command line: its argv (without the program name), the files it read, its config file."""

    argv: list[str]
    inputs: list[str] = dataclasses.field(default_factory=list)
    config: dict[str, Any] | None = None

    @property
    def command(self) -> str:
        return "personalign " + shlex.join(self.argv) if self.argv else "personalign"


_CURRENT: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "personalign_invocation", default=None
)


@contextlib.contextmanager
def invocation(argv: Sequence[str]) -> Iterator[Invocation]:
    """Make ``argv`` (the arguments after ``personalign``) the current invocation while the block runs."""
    inv = Invocation([str(a) for a in argv])
    token = _CURRENT.set(inv)
    try:
        yield inv
    finally:
        _CURRENT.reset(token)


def current() -> Invocation | None:
    """The invocation in progress (None outside the CLI)."""
    return _CURRENT.get()


def current_command() -> str | None:
    """The command line of the invocation in progress (None outside the CLI)."""
    inv = _CURRENT.get()
    return inv.command if inv is not None else None


def record_input(path: str | os.PathLike) -> None:
    """Note a data file (or folder) the current invocation read; a no-op outside the CLI."""
    inv = _CURRENT.get()
    p = str(Path(path))
    if inv is not None and p not in inv.inputs:
        inv.inputs.append(p)


def record_config(path: str | os.PathLike, values: Mapping[str, Any]) -> None:
    """Note the experiment config file (its path, sha256 and the values it set) of the current invocation."""
    inv = _CURRENT.get()
    if inv is not None:
        inv.config = {"file": str(path), "sha256": file_sha256(path), "values": dict(values)}


# ------------------------------------------------------------------------------------------ facts
def package_versions(packages: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``packages`` (None for one that is not installed) and of Python."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``path``; None outside one or without git (never
    raises: a manifest must not fail for want of git)."""
    where = Path(path)
    where = where if where.is_dir() else where.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return {"commit": commit.stdout.strip(), "dirty": dirty}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file; of a folder, of its files' relative paths and contents in sorted order."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if p.is_dir():
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _table_hash(df: pd.DataFrame) -> bytes:
    """A stable digest of a table's columns and values (list cells, e.g. rankings, hashed as their items)."""
    h = hashlib.sha256(repr(list(df.columns)).encode())
    if len(df):
        flat = df.apply(lambda s: s.map(repr) if s.dtype == object else s)
        h.update(pd.util.hash_pandas_object(flat, index=False).to_numpy(np.uint64).tobytes())
    return h.digest()


def data_summary(data: Any) -> dict[str, Any]:
    """The size and a content hash of a PreferenceData (or of one judgments table): persons, items, judgments
    by kind and ``sha256`` over every table, so two folders trained on the same data say so."""
    if not isinstance(data, PreferenceData):
        df = pd.DataFrame(data)
        users = df["user_id"].nunique() if "user_id" in df.columns else None
        return {
            "name": None,
            "sha256": hashlib.sha256(_table_hash(df)).hexdigest(),
            "persons": users,
            "items": df["item_id"].nunique() if "item_id" in df.columns else None,
            "judgments": len(df),
            "by_kind": {},
        }
    h = hashlib.sha256()
    for name in (*KINDS, "users", "items"):
        h.update(name.encode() + _table_hash(getattr(data, name)))
    counts = {k: int(v) for k, v in data.counts().items() if v}
    return {
        "name": data.name,
        "sha256": h.hexdigest(),
        "persons": int(data.n_users),
        "items": len(data.items),
        "judgments": int(sum(counts.values())),
        "by_kind": counts,
    }


# ------------------------------------------------------------------------------------------ the manifest
def build_manifest(
    *,
    kind: str,
    command: str | None = None,
    seeds: Sequence[int] | int | None = None,
    inputs: Iterable[str | os.PathLike] | None = None,
    data: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a folder of ``kind`` ("model", "eval", "audit", ...). ``command`` and ``inputs`` default
    to the current invocation's; ``data`` is a :func:`data_summary` (e.g. a model's training data)."""
    inv = _CURRENT.get()
    files = [str(p) for p in (inputs if inputs is not None else (inv.inputs if inv else []))]
    hashed = []
    for f in files:
        p = Path(f)
        entry: dict[str, Any] = {"path": f}
        entry["sha256"] = file_sha256(p) if p.exists() else None  # a synthetic: spec is no file
        hashed.append(entry)
    seed_list = [seeds] if isinstance(seeds, int) else (list(seeds) if seeds is not None else [])
    package_dir = Path(__file__).resolve().parents[1]
    return {
        "manifest_version": MANIFEST_VERSION,
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else (inv.command if inv else None),
        "cwd": os.getcwd(),
        "versions": package_versions(),
        "git": {"personalign": git_state(package_dir), "cwd": git_state(os.getcwd())},
        "inputs": hashed,
        "data": dict(data) if data is not None else None,
        "seeds": [int(s) for s in seed_list],
        "config": inv.config if inv is not None else None,
        "platform": {"system": platform.system(), "machine": platform.machine()},
        **(dict(extra) if extra else {}),
    }


def write_manifest(folder: str | os.PathLike, **kw: Any) -> Path:
    """Write ``manifest.json`` (:func:`build_manifest` of ``kw``) into ``folder``, atomically."""
    return write_text_atomic(Path(folder) / MANIFEST_FILE, dumps_json(build_manifest(**kw)) + "\n")


def manifest_path(out: str | os.PathLike) -> Path:
    """Where the manifest of an output goes: ``manifest.json`` inside a folder, ``NAME.manifest.json`` beside a
    single file."""
    out = Path(out)
    return out / MANIFEST_FILE if out.is_dir() else out.with_name(out.name + "." + MANIFEST_FILE)


def write_output_manifest(out: str | os.PathLike, **kw: Any) -> Path:
    """Write the manifest (:func:`build_manifest` of ``kw``) of what a command wrote at ``out`` (a folder or a
    file), atomically, at :func:`manifest_path`."""
    return write_text_atomic(manifest_path(out), dumps_json(build_manifest(**kw)) + "\n")
