"""`personalign train` and `personalign score`: fit a reward model on a data file, score responses for a person."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from personalign.cli import app
from personalign.cli._common import build_featurizer, console, device_option, encoder_option, pair_mode_option
from personalign.errors import ConfigError


@app.command("train")
def train(
    data: Path = typer.Argument(..., help="A data file or folder (JSONL, CSV, Parquet, public formats)."),
    format: str | None = typer.Option(None, "--format", "-f", help="Input format (guessed when omitted)."),
    model: str = typer.Option("lowrank", "--model", "-m", help="bt, group, independent, lowrank or mixture."),
    rank: int = typer.Option(8, "--rank", "-k", help="Personal dimensions K (lowrank) or classes (mixture)."),
    encoder: str = encoder_option(),
    device: str = device_option(),
    pair_mode: str = pair_mode_option(),
    group_col: str = typer.Option(
        "group", "--group-col", help="Users column naming the group (group model)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (training is deterministic given it)."),
    max_iter: int = typer.Option(300, "--max-iter", help="Most L-BFGS iterations."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the model into."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Fit a reward model on DATA and save it (safetensors + config.json) into --out."""
    from personalign.data.io import read_data
    from personalign.models import make_model

    featurizer = build_featurizer(encoder, device, pair_mode)
    d = read_data(data, format)
    kw: dict = {
        "featurizer": featurizer,
        "random_state": seed,
        "max_iter": max_iter,
        "verbose": not as_json,
    }
    name = model.lower()
    if name == "lowrank":
        kw["rank"] = rank
    elif name == "mixture":
        kw["n_classes"] = rank
    elif name == "group":
        kw["group_col"] = group_col
    elif name not in ("bt", "aggregated", "independent"):
        raise ConfigError(f"--model {model!r}: expected bt, group, independent, lowrank or mixture")
    m = make_model(name, **kw).fit(d)
    m.save_pretrained(out)
    hist = getattr(m, "history_", {})
    summary = {
        "model": type(m).__name__,
        "out": str(out),
        "comparisons": int(getattr(m, "n_train_", 0)),
        "persons": len(getattr(m, "units_", [])),
        "K": int(getattr(m, "K_", 0)),
        "best_val_loss": hist.get("best_val_loss"),
        "stopped_early": hist.get("stopped_early"),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        console.print(
            f"[bold]{summary['model']}[/] trained on {summary['comparisons']} comparisons "
            f"({summary['persons']} units, K={summary['K']}); validation log loss "
            f"{summary['best_val_loss'] if summary['best_val_loss'] is None else round(summary['best_val_loss'], 4)}"
            f"; saved to {out}"
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
    r = m.score(user, prompt, list(response))
    known = user in getattr(m, "user_units_", {}) or user in getattr(m, "added_", {})
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
