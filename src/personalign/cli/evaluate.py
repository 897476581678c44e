"""`personalign eval DATA ...`: the evaluation protocol, written as results.json, results.md, PNG plots and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from personalign.cli.app import app
from personalign.cli.common import (
    build_encoder,
    build_featurizer,
    check_result_out,
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
from personalign.errors import ConfigError

DEFAULT_HARMLESS = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "hh-rlhf-harmless-test" / "test.jsonl.gz"
)


def _ints(s: str, name: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError(f"--{name} {s!r}: expected comma-separated integers, e.g. 0,1,2,5") from exc


def load_eval_data(data: str, format: str | None, max_persons: int | None = None, **opts: Any):  # noqa: A002
    """Read DATA (a path, or a spec ``synthetic:alpha=0.1,persons=600,...``: see ``personalign.data.read_data``;
    ``opts``: its ``users``/``user_columns``)."""
    from personalign.data.io import read_data

    return read_data(data, format=format, **opts)


def harmless_for(d: Any, harmless: str, n_pairs: int) -> tuple[Any, str]:
    """The harmlessness pairs of ``--harmless`` (None: no tax) and a line saying why: ``PATH`` always, ``none``
    never, ``auto`` when the data is about harm (its name: ``personalign.evaluate.protocol.HARM_WORDS``) and the
    default hh-rlhf file exists."""
    from personalign.evaluate.protocol import harmless_pairs as read_harmless
    from personalign.evaluate.protocol import is_about_harm

    if harmless == "none" or n_pairs <= 0:
        return None, "harmlessness tax: off"
    if harmless != "auto":
        path = Path(harmless)
        if not path.is_file():
            raise FileNotFoundError(f"--harmless {harmless}: no such file")
        return read_harmless(path, n_pairs), f"harmlessness tax: {n_pairs} pairs of {path}"
    if not is_about_harm(d):
        return None, "harmlessness tax: off (the data is not about harm; --harmless PATH asks for it)"
    if not DEFAULT_HARMLESS.exists():
        return None, f"harmlessness tax: off (the data is about harm, but {DEFAULT_HARMLESS} is missing)"
    return read_harmless(
        DEFAULT_HARMLESS, n_pairs
    ), f"harmlessness tax: on (the data is about harm; {n_pairs} pairs)"


def eval_config(
    models: str,
    seeds: int,
    first_seed: int,
    k: str,
    unseen_user_frac: float,
    unseen_item_frac: float,
    collab_frac: float,
    max_train_pairs: int,
    max_test_pairs: int,
    max_persons: int | None,
    active_max_k: int,
    group_col: str | None,
    rank: int,
    harmless_pairs: int,
) -> Any:
    """The EvalConfig of ``eval``'s options, checked (a bad knob fails before any data is read or encoded)."""
    from personalign.evaluate.config import EvalConfig, default_models

    default = models.strip() == "default"
    cfg = EvalConfig(
        models=("default",) if default else tuple(m.strip() for m in models.split(",") if m.strip()),
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
    ).check()
    if default:  # resolved after the check: the default list imports the models (torch)
        cfg.models = default_models()
    return cfg


@app.command("eval")
def eval_command(
    data: str = typer.Argument(..., help="Data file/folder, or synthetic:alpha=0.1,persons=600 (generated)."),
    format: str = typer.Option(
        None, "--format", "-f", help="Input format (popquorn, toxicity, lewidi, polis, ...)."
    ),  # noqa: A002
    users: Path = users_option(),
    user_columns: str = user_columns_option(),
    models: str = typer.Option(
        "default",
        help="Comma-separated models, or 'default': majority, choix, crowd, svd (with scikit-surprise), bt, group, "
        "independent, lowrank, mixture and hybrid (where registered).",
    ),
    seeds: int = typer.Option(5, help="Number of seeds (splits), at least 1."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    test: str = typer.Option(
        None,
        "--test",
        help="Transfer test: fit on DATA, test on this data (its persons new, or known by user_id).",
    ),
    test_format: str = typer.Option(None, "--test-format", help="Input format of --test."),
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
    rank: int = typer.Option(
        8, help="Largest personal rank (tuned models also try 0 and 2 on an inner split)."
    ),
    active_max_k: int = typer.Option(20, help="Largest k of the active (suggest_query) curve; 0 = off."),
    harmless: str = typer.Option(
        "auto",
        help="Personalization tax on hh-rlhf harmless pairs: a file (always), 'none', or 'auto' "
        "(only for data about harm: toxicity, offensiveness, abuse, ...).",
    ),
    harmless_pairs: int = typer.Option(300, help="hh-rlhf pairs sampled for the tax."),
    first_seed: int = typer.Option(0),
    merge_prompt: bool = typer.Option(
        False, help="Fold each item's prompt into its text so any two items pair up."
    ),
    overwrite: bool = overwrite_option(),
    config: Path = config_option(),
) -> None:
    """Evaluate personalized against aggregated models: per person, per group, for seen and new people.
    Options may come from an experiment config file (--config FILE); the command line wins over it."""
    from personalign.data.files import atomic_dir
    from personalign.data.manifest import MANIFEST_FILE, current_command, data_summary, write_manifest
    from personalign.evaluate.protocol import evaluate, merge_prompts
    from personalign.evaluate.report import comparison_rows, write_report
    from personalign.render import comparison_table, progress_bar

    command = current_command()  # the command line as typed: the report prints it, the manifest keeps it
    cfg = eval_config(
        models,
        seeds,
        first_seed,
        k,
        unseen_user_frac,
        unseen_item_frac,
        collab_frac,
        max_train_pairs,
        max_test_pairs,
        max_persons,
        active_max_k,
        group_col,
        rank,
        harmless_pairs,
    )
    if pair_mode not in ("auto", "response", "sentences"):
        raise typer.BadParameter(f"--pair-mode must be auto, response or sentences, got {pair_mode!r}")
    check_result_out(out, "results.json", overwrite)  # before any work: refusing costs nothing
    enc = encoder if encoder == "attributes" else build_encoder(encoder, device)
    d = load_eval_data(data, format, **data_options(users, user_columns))
    t = load_eval_data(test, test_format) if test else None
    summary = {"data": data_summary(d), "test_data": data_summary(t) if t is not None else None}
    if merge_prompt:
        d = merge_prompts(d)
        t = merge_prompts(t) if t is not None else None
    hh, hh_note = harmless_for(d if t is None else t, harmless, harmless_pairs)
    console.print(f"evaluating [bold]{d!r}[/]" + (f" -> tested on [bold]{t!r}[/]" if t is not None else ""))
    console.print(hh_note)
    with progress_bar(console) as bar:
        res = evaluate(d, cfg, encoder=enc, harmless=hh, progress=bar, pair_mode=pair_mode, test_data=t)
    with atomic_dir(out) as tmp:  # a temporary sibling renamed into place: never a half-written folder
        files = write_report(res, tmp, command=command)
        write_manifest(
            tmp,
            kind="eval",
            seeds=range(cfg.first_seed, cfg.first_seed + cfg.seeds),
            data=summary["data"],
            extra={"test_data": summary["test_data"]},
        )
        files["manifest"] = out / MANIFEST_FILE
    if t is None:
        console.print(
            comparison_table(
                "Seen persons, unseen items (points, mean ± std over seeds)", comparison_rows(res)
            )
        )
    for name, why in res.get("skipped_models", {}).items():
        console.print(f"{name}: {why}")
    console.print(
        f"{res['timing']['total_s']:.0f} s; wrote "
        + ", ".join(str(p.name) for p in files.values())
        + f" to [bold]{out}[/]"
    )


@app.command("eval-pointwise")
def eval_pointwise(
    data: str = typer.Argument(..., help="Rating or label data (a path with --format)."),
    format: str = typer.Option(None, "--format", "-f", help="Input format (e.g. toxicity, popquorn)."),
    users: Path = users_option(),
    user_columns: str = user_columns_option(),
    seeds: int = typer.Option(5, help="Number of seeds."),
    rank: int = typer.Option(
        2, help="Low-rank personal directions (0: personal cut-points and sensitivity only)."
    ),
    encoder: str = encoder_option(),
    device: str = device_option(),
    out: Path = typer.Option(..., help="Output folder (results.json, results.md)."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Per-person label/rating prediction ("is this offensive to you?") against the collapsed control."""
    from personalign.data.files import atomic_dir
    from personalign.data.io import read_data
    from personalign.data.manifest import current_command, data_summary, write_manifest
    from personalign.evaluate.pointwise import (
        PointwiseConfig,
        evaluate_pointwise,
        pointwise_markdown,
        write_pointwise,
    )
    from personalign.render import progress_bar

    command = current_command() or ""
    check_result_out(out, "results.json", overwrite)
    d = read_data(data, format=format, **data_options(users, user_columns))
    pcfg = PointwiseConfig(seeds=seeds, rank=rank, encoder=encoder)
    feat = build_featurizer(encoder, device, pcfg.featurizer_mode)
    with progress_bar(console) as bar:
        res = evaluate_pointwise(d, pcfg, featurizer=feat, progress=bar)
    with atomic_dir(out) as tmp:
        write_pointwise(res, tmp, command=command)
        seed_list = range(pcfg.first_seed, pcfg.first_seed + pcfg.seeds)
        write_manifest(tmp, kind="eval-pointwise", seeds=seed_list, data=data_summary(d))
    console.print(pointwise_markdown(res))
    console.print(f"wrote results.json, results.md, manifest.json to [bold]{out}[/]")
