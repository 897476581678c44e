"""`personalign data ...`: inspect, convert and synthesize preference data."""

from __future__ import annotations

import typer

from personalign.cli import app

data_app = typer.Typer(help="Inspect, convert and synthesize preference data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
