"""Running the CLI in-process through the real entry point's error handling (for the CLI tests)."""

from __future__ import annotations

import sys
from typing import Any

from personalign.cli import app
from personalign.cli.common import run_guarded


def run_cli(monkeypatch: Any, capsys: Any, *args: Any) -> tuple[int, str, str]:
    """``personalign ARGS`` as the console script runs it: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["personalign", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    code = run_guarded(app)
    out = capsys.readouterr()
    return code, out.out, out.err
