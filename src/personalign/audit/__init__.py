"""personalign.audit: what one aggregated reward hides (heterogeneity, social choice, groups, who loses).

The names below load on first use, so that a command line checks its options before the heavy imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOME = {"run_audit": "personalign.audit.pipeline", "write_audit": "personalign.audit.report"}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'personalign.audit' has no attribute {name!r}")
