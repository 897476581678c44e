"""`personalign train` and `personalign score`: fit a reward model on a data file, score responses for a person."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer

from personalign.cli.app import app
from personalign.cli.common import (
    build_featurizer,
    check_model_out,
    console,
    data_options,
    device_option,
    encoder_option,
    overwrite_option,
    pair_mode_option,
    user_columns_option,
    users_option,
)
from personalign.cli.config import config_option


def _list_models(value: bool) -> None:
    if value:
        from personalign.models import model_names

        for name, cls in sorted(model_names(aliases=False).items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            typer.echo(f"{name:12s} {cls.__name__}: {doc}")
        raise typer.Exit(0)


@app.command("train")
def train(
    data: Path = typer.Argument(..., help="A data file or folder (JSONL, CSV, Parquet, public formats)."),
    format: str | None = typer.Option(None, "--format", "-f", help="Input format (guessed when omitted)."),
    users: Path = users_option(),
    user_columns: str = user_columns_option(),
    model: str = typer.Option(
        "lowrank", "--model", "-m", help="Any registered model by short name (see --list-models)."
    ),
    rank: int = typer.Option(8, "--rank", "-k", help="Personal dimensions K (or the mixture's classes)."),
    encoder: str = encoder_option(),
    device: str = device_option(),
    pair_mode: str = pair_mode_option(),
    group_col: str = typer.Option(
        "group", "--group-col", help="Users column naming the group (group model)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (training is deterministic given it)."),
    max_iter: int = typer.Option(300, "--max-iter", help="Most L-BFGS iterations."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the model into."),
    overwrite: bool = overwrite_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    list_models: bool = typer.Option(
        False, "--list-models", callback=_list_models, is_eager=True, help="List the models and exit."
    ),
    config: Path = config_option(),
) -> None:
    """Fit a reward model on DATA and save it (safetensors + config.json, model card, manifest) into --out.
    Options may come from an experiment config file (--config FILE); the command line wins over it."""
    from personalign.data.io import read_data
    from personalign.models import make_model, registered

    check_model_out(out, overwrite)  # before the (possibly long) training
    cls = registered(model)
    kw: dict = {"group_col": group_col} if cls is not None and "group_col" in cls.constructor_params() else {}
    m = make_model(
        model,
        rank=rank,
        featurizer=build_featurizer(encoder, device, pair_mode),
        random_state=seed,
        max_iter=max_iter,
        verbose=not as_json,
        **kw,
    )
    m.fit(read_data(data, format, **data_options(users, user_columns)))
    m.save_pretrained(out)
    hist = getattr(m, "history_", {})
    summary = {
        "model": type(m).__name__,
        "out": str(out),
        "judgments": int(getattr(m, "n_train_", 0)),
        "persons": len(getattr(m, "units_", [])),
        "personal_dims": int(m.prior().dim),
        "best_val_loss": hist.get("best_val_loss"),
        "stopped_early": hist.get("stopped_early"),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        loss = summary["best_val_loss"]
        console.print(
            f"[bold]{summary['model']}[/] trained on {summary['judgments']} judgments "
            f"({summary['persons']} units, {summary['personal_dims']} personal dims); validation log loss "
            f"{loss if loss is None else round(loss, 4)}; saved to {out}"
        )


@app.command("score")
def score(
    model: Path = typer.Option(..., "--model", "-m", help="A saved model folder."),
    user: str = typer.Option(
        ..., "--user", "-u", help="Person id (unknown persons get the population prior)."
    ),
    prompt: str = typer.Option("", "--prompt", "-p", help="The prompt."),
    response: list[str] = typer.Option(..., "--response", "-r", help="A response (repeat for several)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Rewards of one or more responses for one person."""
    from rich.table import Table

    from personalign.models import load_model

    m = load_model(model)
    known = user in getattr(m, "user_units_", {}) or user in getattr(m, "added_", {})
    with warnings.catch_warnings():  # the output says it itself when the person is unknown
        warnings.simplefilter("ignore", UserWarning)
        r = m.score(user, prompt, list(response))
    rows = [{"response": t, "reward": float(v)} for t, v in zip(response, r, strict=False)]
    if as_json:
        print(json.dumps({"user": user, "known_person": known, "prompt": prompt, "scores": rows}, indent=2))
        return
    table = Table(title=f"rewards for {user}" + ("" if known else " (unknown: population prior)"))
    table.add_column("#", justify="right")
    table.add_column("response")
    table.add_column("reward", justify="right")
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["reward"])
    for rank_, i in enumerate(order, 1):
        table.add_row(str(rank_), rows[i]["response"], f"{rows[i]['reward']:.4f}")
    console.print(table)
