"""personalign.evaluate: the evaluation protocol, metrics, baselines and reports (personalized against aggregated).

The names below load on first use, so that a command line checks its options before the heavy imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOME = {
    "EvalConfig": "personalign.evaluate.config",
    "evaluate": "personalign.evaluate.protocol",
    "run_seed": "personalign.evaluate.protocol",
    "interval": "personalign.evaluate.metrics",
    "pair_metrics": "personalign.evaluate.metrics",
    "paired_difference": "personalign.evaluate.metrics",
    "per_person_accuracy": "personalign.evaluate.metrics",
    "write_report": "personalign.evaluate.report",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'personalign.evaluate' has no attribute {name!r}")
