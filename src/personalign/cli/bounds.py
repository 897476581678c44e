"""`personalign bounds ...`: check a model against a policy, train the universal scorers, the synthetic report."""

from __future__ import annotations

from pathlib import Path

import typer

from personalign.cli.app import app
from personalign.cli.common import (
    allow_callable_option,
    check_result_out,
    console,
    data_options,
    overwrite_option,
    user_columns_option,
    users_option,
)

bounds_app = typer.Typer(
    help="Bounded personalization: policies, universal scorers, checks.", no_args_is_help=True
)
app.add_typer(bounds_app, name="bounds")


def _cmdline() -> str:
    from personalign.data.manifest import current_command

    return current_command() or ""


@bounds_app.command("validate")
def validate(
    policy: str = typer.Argument(..., help="Policy file (.yaml/.toml) or a packaged policy name."),
    allow_callable: list[str] = allow_callable_option(),
) -> None:
    """Validate a policy file and print what it declares."""
    from personalign.bounds.policy import load_policy

    pol = load_policy(policy, allow=allow_callable)
    console.print(
        f"[green]ok[/] {pol.source}: policy {pol.name!r}, {len(pol.constraints)} constraints, "
        f"rho={pol.trust_region.rho}, consensus={'on' if pol.consensus.enabled else 'off'}"
    )
    for c in pol.constraints:
        op = ">=" if c.direction == "min" else "<="
        promise = (
            f", miss <= {c.epsilon} at {c.confidence:.0%} ({c.calibration})" if c.epsilon is not None else ""
        )
        console.print(f"  - {c.name}: {c.scorer.type} {op} {c.threshold}{promise} ({c.severity}) {c.meaning}")


@bounds_app.command("check")
def check(
    data: Path = typer.Argument(..., help="Preference data file (any format personalign reads)."),
    policy: str = typer.Option("default", help="Policy file or packaged policy name."),
    model: Path = typer.Option(..., help="A saved personalign model directory."),
    format: str = typer.Option(None, "--format", help="Data format (default: inferred from the file)."),
    users: Path = users_option(),
    user_columns: str = user_columns_option(),
    out: Path = typer.Option(Path("out/bounds-check"), help="Where to write report.json and report.md."),
    max_persons: int = typer.Option(None, help="Check at most this many persons."),
    allow_callable: list[str] = allow_callable_option(),
    overwrite: bool = overwrite_option(),
) -> None:
    """Check a model against a policy on DATA: constraint pass rates, per-person violation rates without and with
    the policy, trust-region distances. Writes OUT/report.json, OUT/report.md and OUT/report.html."""
    from personalign.bounds.bounded import BoundedPolicy
    from personalign.bounds.check import check_markdown, check_report, write_check
    from personalign.bounds.policy import load_policy
    from personalign.data.files import atomic_dir
    from personalign.data.io import read_data
    from personalign.data.manifest import data_summary, record_input, write_manifest
    from personalign.models import load_model

    check_result_out(out, "report.json", overwrite)

    pol = load_policy(
        policy, allow=allow_callable
    )  # before the data and model: a refused policy costs nothing
    d = read_data(data, format=format, **data_options(users, user_columns))
    m = load_model(model)
    record_input(model)  # the model folder and the policy's file are inputs too (hashed in the manifest)
    if pol.source and Path(pol.source).is_file():
        record_input(pol.source)
    bp = BoundedPolicy(m, pol, items=d.items)
    rep = check_report(bp, d, max_persons=max_persons)
    rep["command"] = _cmdline()
    md = check_markdown(rep)
    with atomic_dir(out) as tmp:  # a temporary sibling renamed into place
        write_check(rep, tmp)
        write_manifest(tmp, kind="bounds-check", data=data_summary(d), extra={"policy": pol.name})
    console.print(md.split("\n## Glossary")[0], markup=False, highlight=False)  # the glossary: in the files
    console.print(f"written {out / 'report.json'}, report.md, report.html and manifest.json")


@bounds_app.command("train-scorers")
def train_scorers(
    out: Path = typer.Option(None, help="Artifact folder (default: the package's bounds/artifacts)."),
    shared: Path = typer.Option(None, help="The real-data folder (default ../shared/data)."),
    seed: int = typer.Option(0, help="Split seed."),
    which: str = typer.Option("both", help="harmlessness, consensus or both."),
) -> None:
    """Train the harmlessness head (HH-RLHF harmless pairs) and the consensus scorer (POPQUORN + toxicity),
    print their held-out accuracy and save them (head.json per scorer)."""
    from personalign.bounds.scorers import (
        ARTIFACT_DIR,
        default_shared_data,
        train_consensus,
        train_harmlessness,
    )

    base = out or ARTIFACT_DIR
    sd = shared or default_shared_data()
    if which in ("both", "harmlessness"):
        h = train_harmlessness(
            base / "harmlessness", sd / "hh-rlhf-harmless-test" / "test.jsonl.gz", seed=seed
        )
        m = h.metrics_
        console.print(
            f"harmlessness head: held-out pair accuracy {m['test_pair_accuracy']:.3f} "
            f"(± {m['test_pair_accuracy_se']:.3f}, n={m['n_test']}), l2={m['l2']}, threshold {m['threshold']:.4f}"
        )
    if which in ("both", "consensus"):
        c = train_consensus(base / "consensus", sd, seed=seed)
        m = c.metrics_
        console.print(
            f"consensus scorer: held-out accuracy {m['test_accuracy']:.3f}, balanced {m['test_balanced_accuracy']:.3f}, "
            f"AUC {m['test_auc']:.3f} (n={m['n_test']}), threshold {m['threshold']:.3f}"
        )
    console.print(f"saved under {base}")


@bounds_app.command("calibrate")
def calibrate(
    out: Path = typer.Option(None, help="Artifact folder (default: the package's bounds/artifacts)."),
    shared: Path = typer.Option(None, help="The real-data folder (default ../shared/data)."),
    seed: int = typer.Option(0, help="Seed of the calibration / test split."),
    epsilon: float = typer.Option(0.1, help="Miss rate to show the calibrated threshold for."),
    confidence: float = typer.Option(0.95, help="Confidence of that miss rate."),
) -> None:
    """Score real harm-labelled items held out from the packaged heads' training and write each head's
    calibration.json (calibration and test scores of its domain: HH-RLHF pairs for the harmlessness head,
    ConvAbuse and the POPQUORN / toxicity consensus items for the consensus scorer), so that a policy may state
    `epsilon:` and `confidence:` for it."""
    from personalign.bounds.realdata import DOMAINS, calibration_set, real_harm_items
    from personalign.bounds.scorers import ARTIFACT_DIR, ConsensusScorer, HarmlessnessHead

    base = out or ARTIFACT_DIR
    items = real_harm_items(shared, seed=0)
    heads = {
        "harmlessness": (HarmlessnessHead.load(base / "harmlessness"), "min"),
        "consensus": (ConsensusScorer.load(base / "consensus"), "max"),
    }
    for name, (head, direction) in heads.items():
        scores = head.score(items["prompt"].tolist(), items["text"].tolist())
        cs = calibration_set(scores, items, seed=seed, name=name, sources=DOMAINS[name])
        path = cs.save(base / name)
        tc = cs.calibrate(epsilon, confidence, direction)
        rates = cs.test_rates(tc.threshold, direction, confidence) or {}
        miss, over = rates.get("miss", {}), rates.get("over_block", {})
        console.print(
            f"{name}: {len(cs.harmful)} harmful / {len(cs.safe)} safe calibration items; at epsilon {epsilon} "
            f"({confidence:.0%}): threshold {tc.threshold:.4g}, test miss {miss.get('rate', float('nan')):.3f} "
            f"[{miss.get('lo', float('nan')):.3f}, {miss.get('hi', float('nan')):.3f}], over-block "
            f"{over.get('rate', float('nan')):.3f} -> {path}"
        )


@bounds_app.command("train-harmlessness")
def train_harmlessness_cmd(
    out: Path = typer.Option(None, help="Artifact folder (default: the package's bounds/artifacts)."),
    seed: int = typer.Option(0, help="Split seed."),
) -> None:
    """Train only the harmlessness head (same as train-scorers --which harmlessness)."""
    train_scorers(out=out, shared=None, seed=seed, which="harmlessness")


@bounds_app.command("report")
def report(
    out: Path = typer.Option(Path("results/bounds"), help="Where to write JSON, markdown and figures."),
    persons: int = typer.Option(200, help="Synthetic persons (10% adversarial)."),
    seed: int = typer.Option(0),
    poisoning: bool = typer.Option(True, help="Run the poisoning curve (slowest part)."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Violation rates with/without policy, personalization tax, monitor findings, poisoning curve."""
    from personalign.data.files import atomic_dir
    from personalign.data.manifest import write_manifest
    from personalign.experiments.bounds_report import run_synthetic_report

    check_result_out(out, "bounds_report.json", overwrite)
    poison_seeds = (0, 1)
    with atomic_dir(out) as tmp:  # written into a temporary sibling, renamed into place when complete
        res = run_synthetic_report(
            tmp,
            persons=persons,
            seed=seed,
            poison_seeds=poison_seeds,
            poisoning=poisoning,
            command=_cmdline(),
        )
        extra = {"persons": persons, "poison_seeds": list(poison_seeds) if poisoning else []}
        write_manifest(tmp, kind="bounds-report", seeds=seed, extra=extra)
    for name, v in res["violations"].items():
        console.print(
            f"{name}: max per-person violation without {v['max_over_persons_without']:.3f}, "
            f"with {v['max_over_persons_with']:.3f}"
        )
    console.print(f"written under {out} ({res['seconds']:.0f} s)")
