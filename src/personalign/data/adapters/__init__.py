"""Adapters: public preference formats -> :class:`PreferenceData`, and a registry of format names.

``get_adapter(name)`` returns ``reader(path, **options) -> PreferenceData``; ``register_adapter(name)`` adds one;
``detect_format(path)`` guesses a format from file names, extensions and the first record or header.

Formats: ``jsonl``, ``json``, ``csv``, ``tsv``, ``parquet`` (generic tables or personalign's canonical files),
``trl`` (TRL prompt/chosen/rejected, person column by ``user_col``), ``hf`` (a ``save_to_disk`` folder),
``popquorn``, ``toxicity``, ``lewidi``, ``polis``, ``hh-rlhf``, ``summarize-feedback``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from personalign.data import io as _io
from personalign.data.core import PreferenceData
from personalign.errors import ConfigError, DataError

Reader = Callable[..., PreferenceData]
_REGISTRY: dict[str, Reader] = {}


def register_adapter(name: str) -> Callable[[Reader], Reader]:
    """Decorator: make ``reader`` available as ``--format name``."""

    def deco(fn: Reader) -> Reader:
        _REGISTRY[name] = fn
        return fn

    return deco


def available_formats() -> list[str]:
    return sorted(_REGISTRY)


def get_adapter(name: str) -> Reader:
    """The reader registered under ``name`` (``_`` and ``-`` are interchangeable)."""
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ConfigError(f"unknown format {name!r}; expected one of {', '.join(available_formats())}")
    return _REGISTRY[key]


for _name, _fn in (
    ("jsonl", _io.read_jsonl),
    ("json", _io.read_json),
    ("csv", _io.read_csv),
    ("parquet", _io.read_parquet),
    ("trl", _io.read_trl),
    ("hf", _io.read_hf_disk),
):
    register_adapter(_name)(_fn)
register_adapter("tsv")(lambda path, **kw: _io.read_csv(path, sep="\t", **kw))

# public formats register themselves on import
from personalign.data.adapters import (  # noqa: E402
    hh_rlhf,
    lewidi,
    polis,
    popquorn,
    summarize_feedback,
    toxicity,
)


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return next(csv.reader(fh), [])


def _first_record(path: Path) -> dict | None:
    try:
        with _io.open_text(path) as fh:
            for raw in fh:
                if raw.strip():
                    rec = json.loads(raw)
                    return rec if isinstance(rec, dict) else None
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    return None


def detect_format(path: str | Path) -> str:
    """Guess the format of a file or folder (raises DataError when nothing fits)."""
    path = Path(path)
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if "participants-votes.csv" in names or any(
            (p / "participants-votes.csv").exists() for p in path.iterdir() if p.is_dir()
        ):
            return "polis"
        if "pilot_annotations.csv" in names:
            return "toxicity"
        if any(n.endswith("_annotators_meta.json") for n in names) or any(
            p.is_dir() and any(p.glob("*_annotators_meta.json")) for p in path.iterdir()
        ):
            return "lewidi"  # a folder of LeWiDi datasets: the adapter asks which one
        if "dataset_info.json" in names or "dataset_dict.json" in names or "state.json" in names:
            return "hf"
        raise DataError(
            "cannot tell the format of this folder",
            file=str(path),
            expected="a Polis conversation, the toxicity study, a LeWiDi dataset or a saved "
            "datasets folder (or name one with --format)",
        )
    name = path.name.lower()
    if name == "participants-votes.csv":
        return "polis"
    if name == "pilot_annotations.csv":
        return "toxicity"
    fmt = _io._format_from_name(path)
    if fmt == "csv":
        header = set(_csv_header(path))
        if {"instance_id", "user_id", "text", "offensiveness"} <= header:
            return "popquorn"
        if {"workerId", "comment", "answer"} <= header:
            return "toxicity"
        return "csv"
    if fmt == "jsonl":
        rec = _first_record(path) or {}
        if "summaries" in rec and "choice" in rec:
            return "summarize-feedback"
        if {"chosen", "rejected"} <= set(rec) and "prompt" not in rec and "kind" not in rec:
            c = rec.get("chosen")
            if isinstance(c, str) and c.lstrip().startswith("Human:"):
                return "hh-rlhf"
            return "trl"
        return "jsonl"
    if fmt == "json":
        if (
            name.endswith("_annotators_meta.json")
            or (path.parent / f"{path.name.split('_')[0]}_annotators_meta.json").exists()
        ):
            return "lewidi"
        return "json"
    if fmt is not None:
        return fmt
    raise DataError(
        f"cannot tell the format of {path.name}",
        file=str(path),
        expected="a known extension (.jsonl, .csv, .parquet, ...) or --format",
    )


__all__ = [
    "available_formats",
    "detect_format",
    "get_adapter",
    "hh_rlhf",
    "lewidi",
    "polis",
    "popquorn",
    "register_adapter",
    "summarize_feedback",
    "toxicity",
]
