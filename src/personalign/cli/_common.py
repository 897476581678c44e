"""Shared CLI plumbing: clean error messages and exit codes, rich console."""

from __future__ import annotations

import typer
from rich.console import Console

from personalign.errors import PersonalignError

console = Console()
err_console = Console(stderr=True)


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """The ClickException classes in play: typer >= 0.22 raises those of its bundled copy of click
    (``typer._click``), older typer those of click itself; both are caught."""
    types: list[type[BaseException]] = []
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(__import__(mod, fromlist=["ClickException"]).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def _usage_line(exc: BaseException) -> str:
    """One line for a usage error: the message and where to look for help."""
    msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", None) or "personalign"
    return f"{msg} (see '{where} --help')"


def run_guarded(app: typer.Typer, args: list[str] | None = None) -> int:
    """Run a typer app. A personalign error or a usage error prints one ``error:`` line to stderr and returns 2
    (no traceback); ``--help`` and normal exits return their own code."""
    try:
        app(args=args, standalone_mode=False)
    except (PersonalignError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("Aborted.")
        return 1
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except _click_exception_types() as exc:
        if (
            type(exc).__name__ == "NoArgsIsHelpError"
        ):  # the help was printed already; a usage error all the same
            return 2
        if type(exc).__name__ == "Abort":
            err_console.print("Aborted.")
            return 1
        err_console.print(f"[bold red]error:[/] {_usage_line(exc)}", highlight=False, soft_wrap=True)
        code = getattr(exc, "exit_code", 2)
        return 2 if code in (None, 1) else code
    return 0
