"""`personalign audit`: what one aggregated reward would hide in a dataset (audit.json, report.html, plots)."""

from __future__ import annotations

from pathlib import Path

import typer

from personalign.cli.app import app
from personalign.cli.common import (
    check_result_out,
    console,
    data_options,
    overwrite_option,
    user_columns_option,
    users_option,
)


@app.command("audit")
def audit(
    data: Path = typer.Argument(..., help="data file or folder"),
    format: str = typer.Option(None, "--format", "-f", help="data format (popquorn, toxicity, polis, ...)"),
    users: Path = users_option(),
    user_columns: str = user_columns_option(),
    group_by: list[str] = typer.Option(
        None, "--group-by", help="demographic column(s); default: every usable one"
    ),
    model: Path = typer.Option(
        None, "--model", help="a saved personalign model whose per-person fit is set beside the aggregate's"
    ),
    max_items: int = typer.Option(None, "--max-items", help="keep only the N most-judged items"),
    min_judgments: int = typer.Option(
        1, "--min-judgments", help="keep persons with at least this many judgments"
    ),
    sc_items: int = typer.Option(40, "--sc-items", help="items in the social-choice profile"),
    polarity: str = typer.Option("higher", "--polarity", help="'higher' or 'lower' values preferred"),
    permutations: int = typer.Option(
        99, "--permutations", help="permutations of the structure test (0: skip the test)"
    ),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    overwrite: bool = overwrite_option(),
) -> None:
    """Audit what one aggregated reward hides: disagreement, social choice, groups, who loses, personal structure."""
    from personalign.audit.options import check_options

    check_options(polarity, permutations, sc_items, max_items, min_judgments)  # before reading anything
    check_result_out(out, "audit.json", overwrite)
    from personalign.audit.pipeline import run_audit
    from personalign.audit.report import write_audit
    from personalign.data.files import atomic_dir
    from personalign.data.io import read_data
    from personalign.data.manifest import current_command, data_summary, record_input, write_manifest
    from personalign.render import audit_table

    d = read_data(data, format=format, **data_options(users, user_columns))
    if model is not None:
        record_input(model)  # the model folder is an input of the audit too (hashed in the manifest)
    with console.status("auditing ...") as status:
        res = run_audit(
            d,
            group_by=group_by or None,
            model_dir=model,
            max_items=max_items,
            min_judgments=min_judgments,
            sc_items=sc_items,
            polarity=polarity,
            n_permutations=permutations,
            seed=seed,
            progress=lambda m: status.update(f"auditing: {m} ..."),
        )
    # the command line as typed: printed in report.html so the folder can be reproduced
    with atomic_dir(out) as tmp:  # a temporary sibling renamed into place
        write_audit(res, tmp, command=current_command())
        write_manifest(tmp, kind="audit", seeds=seed, data=data_summary(d))
    console.print(audit_table(res))
    console.print(f"written to [bold]{out}[/] (audit.json, report.html, PNG plots, manifest.json)")
