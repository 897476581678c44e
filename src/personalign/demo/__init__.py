"""`personalign demo`: the main job, end to end, on the embedded synthetic population.

One module per step; each step is a function of the shared :class:`DemoContext` that calls the library like a
user would and prints what it shows. :data:`STEPS` runs in order; later steps read what earlier ones left in
``ctx.state`` and make do without it when run alone (``--only``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from personalign.demo.audit import audit_step
from personalign.demo.bounds import bounds_step
from personalign.demo.context import DemoContext
from personalign.demo.evaluate import evaluate_step
from personalign.demo.generate import generate_step
from personalign.demo.population import population_step
from personalign.demo.serve import serve_step
from personalign.demo.train import train_step

Step = Callable[[DemoContext], None]

# (title, step), run in order
STEPS: list[tuple[str, Step]] = [
    ("Synthetic pluralistic population", population_step),
    ("Train and compare: aggregated vs personalized", train_step),
    ("Aggregation audit", audit_step),
    ("Bounded personalization", bounds_step),
    ("Personalization service", serve_step),
    ("Best-of-N with a local model", generate_step),
    ("Evaluate: personalized against aggregated", evaluate_step),
]

__all__ = ["STEPS", "DemoContext", "Step", "run_demo"]


def run_demo(
    out: Path,
    quick: bool = False,
    seed: int = 0,
    only: list[str] | None = None,
    steps: Sequence[tuple[str, Step]] | None = None,
    console: Console | None = None,
) -> DemoContext:
    """Run ``steps`` (default :data:`STEPS`) in order, or those whose title contains one of ``only``; returns
    the context with what the steps left in its ``state``."""
    steps = STEPS if steps is None else steps
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out=out, quick=quick, seed=seed)
    if console is not None:
        ctx.console = console
    con = ctx.console
    for i, (title, step) in enumerate(steps, 1):
        if only and not any(o.lower() in title.lower() for o in only):
            continue
        con.print(Rule(f"[bold]{i}/{len(steps)} {title}"))
        t0 = time.perf_counter()
        step(ctx)
        con.print(f"[dim]({title}: {time.perf_counter() - t0:.1f} s)[/]")
    con.print(Rule("[bold green]demo finished"))
    con.print(f"Everything written under [bold]{out}[/]")
    return ctx
