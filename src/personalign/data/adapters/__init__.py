"""Adapters: public preference formats -> :class:`PreferenceData`, and the one table of format names.

``FORMATS`` maps every name ``read_data`` and ``--format`` accept to its ``reader(path, **options) ->
PreferenceData``: the generic tables of :mod:`personalign.data.tables` (``jsonl``, ``json``, ``csv``, ``tsv``,
``parquet``: generic tables or personalign's canonical files; ``tables``: a folder of one file per table,
:mod:`personalign.data.tablefolder`; ``trl``: TRL prompt/chosen/rejected, person column by
``user_col``; ``hf``: a ``save_to_disk`` folder) and the public formats, one module each (``popquorn``,
``toxicity``, ``lewidi``, ``polis``, ``hh-rlhf``, ``summarize-feedback``, ``convabuse``, ``synthetic``).
``get_adapter(name)`` looks a name up; ``register_adapter(name)`` adds a reader; ``detect_format(path)`` guesses a
format from file names, extensions and the first record or header.

The adapter modules import only the primitives below them (:mod:`personalign.data.tables`, core, validate), never
this package, so the table is built here in one place and nothing imports in a circle.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from personalign.data.adapters import (
    convabuse,
    hh_rlhf,
    lewidi,
    polis,
    popquorn,
    summarize_feedback,
    synthetic,
    toxicity,
)
from personalign.data.core import PreferenceData
from personalign.data.tablefolder import is_table_folder, read_table_folder
from personalign.data.tables import GENERIC_READERS, format_from_name, open_text, read_hf_disk, read_trl
from personalign.errors import ConfigError, DataError

Reader = Callable[..., PreferenceData]

FORMATS: dict[str, Reader] = {
    **GENERIC_READERS,
    "tables": read_table_folder,
    "trl": read_trl,
    "hf": read_hf_disk,
    "popquorn": popquorn.read_popquorn,
    "toxicity": toxicity.read_toxicity,
    "lewidi": lewidi.read_lewidi,
    "polis": polis.read_polis,
    "hh-rlhf": hh_rlhf.read_hh_rlhf,
    "summarize-feedback": summarize_feedback.read_summarize_feedback,
    "convabuse": convabuse.read_convabuse,
    "synthetic": synthetic.read_synthetic,
}


def register_adapter(name: str) -> Callable[[Reader], Reader]:
    """Decorator: make ``reader`` available as ``--format name``."""

    def deco(fn: Reader) -> Reader:
        FORMATS[name.strip().lower().replace("_", "-")] = fn
        return fn

    return deco


def available_formats() -> list[str]:
    """Every format name ``read_data`` and ``--format`` accept, sorted."""
    return sorted(FORMATS)


def get_adapter(name: str) -> Reader:
    """The reader registered under ``name`` (``_`` and ``-`` are interchangeable)."""
    key = name.strip().lower().replace("_", "-")
    if key not in FORMATS:
        raise ConfigError(f"unknown format {name!r}; expected one of {', '.join(available_formats())}")
    return FORMATS[key]


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return next(csv.reader(fh), [])


def _first_record(path: Path) -> dict | None:
    try:
        with open_text(path) as fh:
            for raw in fh:
                if raw.strip():
                    rec = json.loads(raw)
                    return rec if isinstance(rec, dict) else None
    except (ValueError, OSError, UnicodeDecodeError, RecursionError):  # the reader reports it with the line
        return None
    return None


def _detect_folder(path: Path) -> str:
    names = {p.name for p in path.iterdir()}
    if "participants-votes.csv" in names or any(
        (p / "participants-votes.csv").exists() for p in path.iterdir() if p.is_dir()
    ):
        return "polis"
    if "pilot_annotations.csv" in names:
        return "toxicity"
    if convabuse.FULL_FILE in names:
        return "convabuse"
    if synthetic.is_population_folder(path):
        return "synthetic"
    if is_table_folder(path):
        return "tables"
    if any(n.endswith("_annotators_meta.json") for n in names) or any(
        p.is_dir() and any(p.glob("*_annotators_meta.json")) for p in path.iterdir()
    ):
        return "lewidi"  # a folder of LeWiDi datasets: the adapter asks which one
    if "dataset_info.json" in names or "dataset_dict.json" in names or "state.json" in names:
        return "hf"
    raise DataError(
        "cannot tell the format of this folder",
        file=str(path),
        expected="a Polis conversation, the toxicity study, ConvAbuse, a LeWiDi dataset, a synthetic population "
        "(personalign data synth), a folder of tables (personalign data convert --out DIR) or a saved datasets "
        "folder (or name one with --format)",
    )


def _detect_csv(path: Path) -> str:
    header = set(_csv_header(path))
    if {"instance_id", "user_id", "text", "offensiveness"} <= header:
        return "popquorn"
    if {"workerId", "comment", "answer"} <= header:
        return "toxicity"
    if convabuse.is_convabuse_header(header):
        return "convabuse"
    return "csv"


def _detect_jsonl(path: Path) -> str:
    rec = _first_record(path) or {}
    if "summaries" in rec and "choice" in rec:
        return "summarize-feedback"
    if {"chosen", "rejected"} <= set(rec) and "prompt" not in rec and "kind" not in rec:
        c = rec.get("chosen")
        if isinstance(c, str) and c.lstrip().startswith("Human:"):
            return "hh-rlhf"
        return "trl"
    return "jsonl"


def detect_format(path: str | Path) -> str:
    """Guess the format of a file or folder (raises DataError when nothing fits)."""
    path = Path(path)
    if path.is_dir():
        return _detect_folder(path)
    name = path.name.lower()
    if name == "participants-votes.csv":
        return "polis"
    if name == "pilot_annotations.csv":
        return "toxicity"
    fmt = format_from_name(path)
    if fmt == "csv":
        return _detect_csv(path)
    if fmt == "jsonl":
        return _detect_jsonl(path)
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
    "FORMATS",
    "available_formats",
    "convabuse",
    "detect_format",
    "get_adapter",
    "hh_rlhf",
    "lewidi",
    "polis",
    "popquorn",
    "register_adapter",
    "summarize_feedback",
    "synthetic",
    "toxicity",
]
