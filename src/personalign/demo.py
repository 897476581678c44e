"""`personalign demo`: the main job, end to end, on the embedded synthetic population by default.

Each capability adds one step here. A step takes the shared :class:`DemoContext` and prints what it shows.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

# (title, "module:function"), run in order
STEPS: list[tuple[str, str]] = [
    ("Synthetic pluralistic population", "personalign.data.synthetic:demo_step"),
    ("Train and compare: aggregated vs personalized", "personalign.models.demo:train_step"),
    ("Aggregation audit", "personalign.audit.report:audit_step"),
    ("Bounded personalization", "personalign.bounds.report:bounds_step"),
    ("Personalization service", "personalign.serve.demo:serve_step"),
    ("Best-of-N with a local model", "personalign.integrations.generate:generate_step"),
    ("Evaluate: personalized against aggregated", "personalign.evaluate.report:evaluate_step"),
]


@dataclass
class DemoContext:
    """What the steps share: where to write, how big to go, and what earlier steps produced."""

    out: Path
    quick: bool = False
    seed: int = 0
    console: Console = field(default_factory=Console)
    state: dict[str, Any] = field(default_factory=dict)


def run_demo(out: Path, quick: bool = False, seed: int = 0, only: list[str] | None = None) -> DemoContext:
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out=out, quick=quick, seed=seed)
    con = ctx.console
    for i, (title, target) in enumerate(STEPS, 1):
        if only and not any(o.lower() in title.lower() for o in only):
            continue
        con.print(Rule(f"[bold]{i}/{len(STEPS)} {title}"))
        mod, fn = target.split(":")
        t0 = time.perf_counter()
        getattr(importlib.import_module(mod), fn)(ctx)
        con.print(f"[dim]({title}: {time.perf_counter() - t0:.1f} s)[/]")
    con.print(Rule("[bold green]demo finished"))
    con.print(f"Everything written under [bold]{out}[/]")
    return ctx
