"""The command line: a thin layer over the library. ``personalign --help`` lists the commands."""

from __future__ import annotations

import sys

import typer

from personalign.cli._common import run_guarded

app = typer.Typer(
    name="personalign",
    help="Learn each person's preferences instead of one averaged reward, inside bounds nobody can cross.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Each capability owns its own command module; importing registers its commands on `app`.
    from personalign.cli import data as _data  # noqa: F401
    from personalign.cli import demo as _demo  # noqa: F401

    for name in ("models", "evaluate", "audit", "bounds", "serve", "integrations", "report"):
        try:
            __import__(f"personalign.cli.{name}")
        except ModuleNotFoundError as exc:  # a capability not built yet
            if exc.name != f"personalign.cli.{name}":
                raise


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"personalign {version('personalign')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Learn each person's preferences instead of one averaged reward, inside bounds nobody can cross."""


_register()


def main() -> None:
    """Entry point: runs the app, turning personalign's errors into a message and exit code 2."""
    sys.exit(run_guarded(app))
