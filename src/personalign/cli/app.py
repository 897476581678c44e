"""The one typer application every command module registers on (kept apart from the registration in ``__init__``)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="personalign",
    help="Learn each person's preferences instead of one averaged reward, inside bounds nobody can cross.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
