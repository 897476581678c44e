"""Step 7: the evaluation protocol on the population of step 1, ending with the comparison table."""

from __future__ import annotations

from pathlib import Path

from personalign.data.synthetic import generate_population
from personalign.demo.context import DemoContext
from personalign.evaluate.protocol import EvalConfig, evaluate
from personalign.evaluate.report import comparison_rows, write_report
from personalign.render import comparison_table, progress_bar

TITLE = "Personalized against aggregated (seen persons, unseen prompts; points, mean ± std over seeds)"


def evaluate_step(ctx: DemoContext) -> None:
    """Evaluate the synthetic population of step 1 (a subsample with --quick) and print the comparison."""
    data = ctx.state.get("population")
    if data is None:
        data = generate_population(
            persons=300 if ctx.quick else 1000, comparisons_per_person=30, alpha=0.1, seed=ctx.seed
        )
    if ctx.quick and data.n_users > 300:
        keep = sorted(data.user_ids)[:300]
        data = data.filter_users(keep)
    cfg = EvalConfig(
        models=("majority", "bt", "group", "lowrank"),
        seeds=2 if ctx.quick else 3,
        first_seed=ctx.seed,
        ks=(0, 2, 5, 10) if ctx.quick else (0, 1, 2, 5, 10, 20),
        max_train_pairs=40,
        max_test_pairs=30,
        harmless_pairs=0,
    )
    with progress_bar(ctx.console) as bar:
        res = evaluate(data, cfg, encoder="hashing" if ctx.quick else "minilm", progress=bar)
    out = Path(ctx.out) / "evaluation"
    write_report(res, out, command="personalign demo (evaluate step)")
    ctx.state["evaluation"] = res
    ctx.console.print(comparison_table(TITLE, comparison_rows(res)))
    ctx.console.print(f"written to [bold]{out}[/] (results.json, results.md, index.html, PNG plots)")
