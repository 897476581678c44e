"""Step 1: the synthetic pluralistic population every later step uses."""

from __future__ import annotations

from pathlib import Path

from personalign.data.synthetic import (
    SyntheticConfig,
    favourite_responses,
    generate_population,
    sample_comparisons,
    write_population,
)
from personalign.demo.context import DemoContext
from personalign.render import favourites_table, population_table


def population_step(ctx: DemoContext) -> None:
    """Generate the population, print its summary and who likes what, write it."""
    cfg = SyntheticConfig(
        persons=500 if ctx.quick else 2000,
        comparisons_per_person=30 if ctx.quick else 40,
        alpha=0.1,
        adversarial_frac=0.02,
        seed=ctx.seed,
    )
    data = generate_population(cfg)
    test = sample_comparisons(data, 20, prompts="heldout", seed=ctx.seed + 1)
    out = Path(ctx.out) / "population"
    summary = write_population(data, out, test)
    ctx.console.print(population_table(summary))
    ctx.console.print(favourites_table(favourite_responses(data)))
    ctx.console.print(
        f"written to [bold]{out}[/] (population.parquet, heldout.parquet, truth.json, summary.json)"
    )
    ctx.state["population"] = data
    ctx.state["population_test"] = test
    ctx.state["population_summary"] = summary
