"""Canonical preference data, readers and writers, adapters for public formats, splits, synthetic populations."""

from personalign.data.adapters import available_formats
from personalign.data.core import (
    COMPARISON_COLUMNS,
    KINDS,
    POPULATION_USER,
    PreferenceData,
    concat,
    item_id_for,
)
from personalign.data.io import from_hf_dataset, read_data, to_hf_dataset, write_data
from personalign.data.splits import Split, kshot, kshot_all, split, split_judgments
from personalign.data.validate import ValidationReport, validate

__all__ = [
    "COMPARISON_COLUMNS",
    "KINDS",
    "POPULATION_USER",
    "PreferenceData",
    "Split",
    "ValidationReport",
    "available_formats",
    "concat",
    "from_hf_dataset",
    "item_id_for",
    "kshot",
    "kshot_all",
    "read_data",
    "split",
    "split_judgments",
    "to_hf_dataset",
    "validate",
    "write_data",
]
