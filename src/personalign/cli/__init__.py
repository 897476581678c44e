"""The command line: a thin layer over the library. ``personalign --help`` lists the commands."""

from __future__ import annotations

import sys
from importlib import import_module

from personalign.cli.app import app
from personalign.cli.common import run_guarded

# Each capability owns its own command module; importing one registers its commands on `app`.
COMMAND_MODULES = (
    "data",
    "demo",
    "models",
    "explain",
    "evaluate",
    "audit",
    "bounds",
    "serve",
    "integrations",
    "report",
)

for _name in COMMAND_MODULES:
    import_module(f"personalign.cli.{_name}")

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: runs the app, turning personalign's errors into a message and exit code 2."""
    sys.exit(run_guarded(app))
