"""Step 7: the evaluation protocol on the population of step 1, ending with the comparison table.

The report records the ``personalign eval`` command that reproduces it: the population as a ``synthetic:`` spec
and every setting of this step as an option.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any

from personalign.data.manifest import data_summary, write_manifest
from personalign.data.synthetic import SyntheticConfig, generate_population
from personalign.demo.context import DemoContext
from personalign.evaluate.protocol import EvalConfig, evaluate
from personalign.evaluate.report import comparison_rows, write_report
from personalign.render import comparison_table, progress_bar

TITLE = "Personalized against aggregated (seen persons, unseen prompts; points, mean ± std over seeds)"


def synthetic_spec(config: dict[str, Any]) -> str:
    """The ``synthetic:key=value,...`` spec that regenerates a population of this config (its non-default
    fields; ``heldout_prompt_frac`` always, since a spec's own default is 0)."""
    defaults = asdict(SyntheticConfig())
    keep = {
        k: v for k, v in config.items() if k in defaults and (v != defaults[k] or k == "heldout_prompt_frac")
    }
    return "synthetic:" + ",".join(f"{k}={v}" for k, v in keep.items())


def eval_command(data_spec: str, cfg: EvalConfig, encoder: str, out: Path) -> str:
    """The ``personalign eval`` command line that runs ``cfg`` on ``data_spec`` (each setting of this step)."""
    args = [
        "personalign",
        "eval",
        data_spec,
        "--models",
        ",".join(cfg.models),
        "--seeds",
        str(cfg.seeds),
        "--first-seed",
        str(cfg.first_seed),
        "--k",
        ",".join(map(str, cfg.ks)),
        "--max-train-pairs",
        str(cfg.max_train_pairs),
        "--max-test-pairs",
        str(cfg.max_test_pairs),
        "--harmless",
        "none",
        "--harmless-pairs",
        str(cfg.harmless_pairs),
        "--encoder",
        encoder,
    ]
    if cfg.max_persons is not None:
        args += ["--max-persons", str(cfg.max_persons)]
    return " ".join(shlex.quote(a) for a in [*args, "--out", str(out)])


def step_config(data: Any, quick: bool, seed: int) -> EvalConfig:
    """The settings of this step (300 persons of the population with ``quick``)."""
    return EvalConfig(
        models=("majority", "bt", "group", "lowrank"),
        seeds=2 if quick else 3,
        first_seed=seed,
        ks=(0, 2, 5, 10) if quick else (0, 1, 2, 5, 10, 20),
        max_train_pairs=40,
        max_test_pairs=30,
        # the protocol's own (deterministic) person sample, so that `eval --max-persons` reproduces it
        max_persons=300 if quick and data.n_users > 300 else None,
        harmless_pairs=0,
    )


def evaluate_step(ctx: DemoContext) -> None:
    """Evaluate the synthetic population of step 1 (300 of its persons with --quick) and print the comparison."""
    data = ctx.state.get("population")
    if data is None:
        data = generate_population(
            persons=300 if ctx.quick else 1000, comparisons_per_person=30, alpha=0.1, seed=ctx.seed
        )
    cfg = step_config(data, ctx.quick, ctx.seed)
    encoder = "hashing" if ctx.quick else "minilm"
    out = Path(ctx.out) / "evaluation"
    command = eval_command(synthetic_spec(data.meta["config"]), cfg, encoder, out)
    with progress_bar(ctx.console) as bar:
        res = evaluate(data, cfg, encoder=encoder, progress=bar)
    write_report(res, out, command=command)
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    write_manifest(out, kind="eval", command=command, seeds=seeds, inputs=[], data=data_summary(data))
    ctx.state["evaluation"] = res
    ctx.console.print(comparison_table(TITLE, comparison_rows(res)))
    ctx.console.print(f"written to [bold]{out}[/] (results.json, results.md, index.html, PNG plots)")
