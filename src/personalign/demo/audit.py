"""Step 3: what one aggregated reward hides in the population of step 1."""

from __future__ import annotations

import shlex
from pathlib import Path

from personalign.audit import run_audit, write_audit
from personalign.data.manifest import data_summary, write_manifest
from personalign.data.synthetic import generate_population
from personalign.demo.context import DemoContext
from personalign.demo.evaluate import synthetic_spec
from personalign.render import audit_table


def audit_step(ctx: DemoContext) -> None:
    """Audit the synthetic population of step 1 and print the headline figures."""
    data = ctx.state.get("population")
    if data is None:
        data = generate_population(persons=300, seed=ctx.seed)
    permutations = 19 if ctx.quick else 99
    res = run_audit(
        data,
        n_permutations=permutations,
        seed=ctx.seed,
        progress=lambda m: ctx.console.print(f"[dim]  {m}[/]"),
    )
    out = Path(ctx.out) / "audit"
    args = ["personalign", "audit", synthetic_spec(data.meta["config"]), "--permutations", str(permutations)]
    args += ["--seed", str(ctx.seed), "--out", str(out)]
    command = " ".join(shlex.quote(a) for a in args)
    write_audit(res, out, command=command)
    write_manifest(out, kind="audit", command=command, seeds=ctx.seed, inputs=[], data=data_summary(data))
    ctx.console.print(audit_table(res))
    ctx.console.print(f"written to [bold]{out}[/] (audit.json, report.html, PNG plots)")
    ctx.state["audit"] = res["headline"]
