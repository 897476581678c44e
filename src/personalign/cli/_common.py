"""Shared CLI plumbing: clean error messages and exit codes, rich console."""

from __future__ import annotations

import typer
from rich.console import Console

from personalign.errors import PersonalignError

console = Console()
err_console = Console(stderr=True)


def run_guarded(app: typer.Typer) -> int:
    """Run a typer app; a personalign error prints one line to stderr and exits 2 (no traceback)."""
    try:
        app(standalone_mode=False)
    except PersonalignError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except FileNotFoundError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("Aborted.")
        return 1
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0
