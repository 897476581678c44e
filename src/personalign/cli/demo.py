"""`personalign demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from personalign.cli.app import app


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), help="Where the demo writes its data, models and reports."),
    quick: bool = typer.Option(False, help="Smaller population and fewer seeds (for tests)."),
    seed: int = typer.Option(0, help="Random seed."),
    only: list[str] = typer.Option(None, help="Run only steps whose title contains this (repeatable)."),
) -> None:
    """Run the whole pipeline on a synthetic pluralistic population and print what each step shows."""
    from personalign.data.manifest import write_manifest
    from personalign.demo import run_demo

    run_demo(out, quick=quick, seed=seed, only=only or None)
    # the folder's own manifest (the command, versions, commit, seed); each step's result folder has its own
    write_manifest(out, kind="demo", seeds=seed, extra={"quick": quick, "only": list(only or [])})
