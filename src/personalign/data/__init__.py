"""Canonical preference data, readers and writers, adapters for public formats, splits, synthetic populations."""

from personalign.data.core import (
    COMPARISON_COLUMNS,
    KINDS,
    POPULATION_USER,
    PreferenceData,
    concat,
    item_id_for,
)
from personalign.data.splits import Split, kshot, kshot_all, split, split_judgments

__all__ = [
    "COMPARISON_COLUMNS",
    "KINDS",
    "POPULATION_USER",
    "PreferenceData",
    "Split",
    "concat",
    "item_id_for",
    "kshot",
    "kshot_all",
    "split",
    "split_judgments",
]
