"""`personalign report PATH ...`: redraw the reports of results folders from their JSON, without rerunning."""

from __future__ import annotations

from pathlib import Path

import typer

from personalign.cli.app import app
from personalign.cli.common import console
from personalign.errors import DataError


def rerender_one(path: Path) -> dict[str, Path]:
    """Redraw one folder: an evaluation (results.json) or a bounds check (report.json); the JSON is only read."""
    from personalign.bounds.check import rerender_check
    from personalign.evaluate.report import rerender

    p = Path(path)
    if p.is_dir():
        if (p / "results.json").is_file():
            return rerender(p)
        if (p / "report.json").is_file():
            return rerender_check(p)
        raise DataError(
            "no results.json or report.json here",
            file=str(p),
            expected="a folder written by personalign eval or personalign bounds check",
        )
    if p.name == "report.json":
        return rerender_check(p)
    return rerender(p)


@app.command("report")
def report(
    paths: list[Path] = typer.Argument(..., help="Results folders (or their results.json / report.json)."),
) -> None:
    """Redraw results.md, index.html and the plots of `eval` folders (report.md and report.html of
    `bounds check` folders) from the JSON they hold: the numbers stay as they are, the look is the current one."""
    for p in paths:
        files = rerender_one(p)
        console.print(f"{p}: wrote " + ", ".join(sorted(f.name for f in files.values())))
