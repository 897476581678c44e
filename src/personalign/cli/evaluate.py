"""`personalign eval DATA ...`: the evaluation protocol, written as results.json, results.md, PNG plots and HTML."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from personalign.cli import app
from personalign.cli._common import (
    build_encoder,
    build_featurizer,
    console,
    device_option,
    encoder_option,
    pair_mode_option,
)
from personalign.errors import ConfigError

DEFAULT_HARMLESS = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hh-rlhf-harmless-test" / "test.jsonl.gz"
)


def _ints(s: str, name: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError(f"--{name} {s!r}: expected comma-separated integers, e.g. 0,1,2,5") from exc


def load_eval_data(data: str, format: str | None, max_persons: int | None = None):  # noqa: A002
    """Read DATA (a path, or a spec ``synthetic:alpha=0.1,persons=600,...``: see ``personalign.data.read_data``)."""
    from personalign.data.io import read_data

    return read_data(data, format=format)


@app.command("eval")
def eval_command(
    data: str = typer.Argument(..., help="Data file/folder, or synthetic:alpha=0.1,persons=600 (generated)."),
    format: str = typer.Option(
        None, "--format", "-f", help="Input format (popquorn, toxicity, lewidi, polis, ...)."
    ),  # noqa: A002
    models: str = typer.Option(
        "majority,choix,crowd,bt,group,independent,lowrank,mixture", help="Comma-separated models."
    ),
    seeds: int = typer.Option(5, help="Number of seeds (splits)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    k: str = typer.Option("0,1,2,5,10,20,50", "--k", help="k-shot sizes for unseen persons."),
    encoder: str = encoder_option(
        extra="'attributes' (synthetic data only) uses the items' true attributes."
    ),
    device: str = device_option(),
    pair_mode: str = pair_mode_option(),
    max_persons: int = typer.Option(None, help="Sample this many persons (deterministic)."),
    max_train_pairs: int = typer.Option(200, help="Training pairs per person (sampled)."),
    max_test_pairs: int = typer.Option(100, help="Test pairs per person and cell (sampled)."),
    unseen_user_frac: float = typer.Option(0.2),
    unseen_item_frac: float = typer.Option(0.2),
    collab_frac: float = typer.Option(
        0.2, help="Share of each seen person's items held out (collaborative cell)."
    ),
    group_col: str = typer.Option(None, help="Demographic column for GroupBT (default: the first usable)."),
    rank: int = typer.Option(8, help="Rank of the low-rank model."),
    active_max_k: int = typer.Option(20, help="Largest k of the active (suggest_query) curve; 0 = off."),
    harmless: str = typer.Option("auto", help="hh-rlhf harmless test file for the tax, 'auto' or 'none'."),
    harmless_pairs: int = typer.Option(300, help="hh-rlhf pairs sampled for the tax."),
    first_seed: int = typer.Option(0),
    merge_prompt: bool = typer.Option(
        False, help="Fold each item's prompt into its text so any two items pair up."
    ),
) -> None:
    """Evaluate personalized against aggregated models: per person, per group, for seen and new people."""
    from personalign.evaluate.protocol import EvalConfig, evaluate
    from personalign.evaluate.protocol import harmless_pairs as read_harmless
    from personalign.evaluate.report import comparison_rows, write_report
    from personalign.render import comparison_table, progress_bar

    command = (
        "personalign eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    )
    d = load_eval_data(data, format)
    if merge_prompt:
        from personalign.evaluate.protocol import merge_prompts

        d = merge_prompts(d)
    cfg = EvalConfig(
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        seeds=seeds,
        first_seed=first_seed,
        ks=tuple(_ints(k, "k")),
        unseen_user_frac=unseen_user_frac,
        unseen_item_frac=unseen_item_frac,
        collab_frac=collab_frac,
        max_train_pairs=max_train_pairs,
        max_test_pairs=max_test_pairs,
        max_persons=max_persons,
        active=active_max_k > 0,
        active_max_k=active_max_k,
        group_col=group_col,
        rank=rank,
        harmless_pairs=harmless_pairs,
    )
    hh = None
    if harmless != "none" and harmless_pairs > 0:
        path = DEFAULT_HARMLESS if harmless == "auto" else Path(harmless)
        if path.exists():
            hh = read_harmless(path, harmless_pairs)
        elif harmless != "auto":
            raise FileNotFoundError(f"no such file: {path}")
    console.print(f"evaluating [bold]{d!r}[/]")
    if pair_mode not in ("auto", "response", "sentences"):
        raise typer.BadParameter(f"--pair-mode must be auto, response or sentences, got {pair_mode!r}")
    enc = encoder if encoder == "attributes" else build_encoder(encoder, device)
    with progress_bar(console) as bar:
        res = evaluate(d, cfg, encoder=enc, harmless=hh, progress=bar, pair_mode=pair_mode)
    files = write_report(res, out, command=command)
    console.print(
        comparison_table("Seen persons, unseen items (points, mean ± std over seeds)", comparison_rows(res))
    )
    console.print(
        f"{res['timing']['total_s']:.0f} s; wrote "
        + ", ".join(str(p.name) for p in files.values())
        + f" to [bold]{out}[/]"
    )


@app.command("eval-pointwise")
def eval_pointwise(
    data: str = typer.Argument(..., help="Rating or label data (a path with --format)."),
    format: str = typer.Option(None, "--format", "-f", help="Input format (e.g. toxicity, popquorn)."),
    seeds: int = typer.Option(5, help="Number of seeds."),
    rank: int = typer.Option(
        2, help="Low-rank personal directions (0: personal cut-points and sensitivity only)."
    ),
    encoder: str = encoder_option(),
    device: str = device_option(),
    out: Path = typer.Option(..., help="Output folder (results.json, results.md)."),
) -> None:
    """Per-person label/rating prediction ("is this offensive to you?") against the collapsed control."""
    import shlex
    import sys

    from personalign.data.io import read_data
    from personalign.evaluate.pointwise import (
        PointwiseConfig,
        evaluate_pointwise,
        pointwise_markdown,
        write_pointwise,
    )
    from personalign.render import progress_bar

    command = "personalign " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    d = read_data(data, format=format)
    pcfg = PointwiseConfig(seeds=seeds, rank=rank, encoder=encoder)
    feat = build_featurizer(encoder, device, pcfg.featurizer_mode)
    with progress_bar(console) as bar:
        res = evaluate_pointwise(d, pcfg, featurizer=feat, progress=bar)
    write_pointwise(res, out, command=command)
    console.print(pointwise_markdown(res))
    console.print(f"wrote results.json, results.md to [bold]{out}[/]")
