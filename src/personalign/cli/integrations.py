"""`personalign generate`, `export-dpo`, `export-reward`, `train-ddp`: plug personal rewards into LLM alignment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from personalign.cli.app import app
from personalign.cli.common import (
    allow_callable_option,
    check_model_out,
    console,
    encoder_option,
    err_console,
    overwrite_option,
)
from personalign.errors import ConfigError

POLICY_HELP = (
    "Bounded policy: a preset (rules, default, synthetic) or a policy file (.yaml/.toml); none: unbounded."
)


def _load(model_dir: Path, policy: str | None, allow: list[str]):
    """The model and its scoring front (a BoundedPolicy; without --policy it bounds nothing); the policy is
    vetted against the allow-list before the model loads."""
    from personalign.bounds.bounded import BoundedPolicy
    from personalign.bounds.policy import load_policy
    from personalign.models import load_model

    pol = None if policy is None else load_policy(policy, allow=allow)
    model = load_model(model_dir)
    return model, BoundedPolicy(model, pol)


@app.command("generate")
def generate(
    model: Path = typer.Option(..., "--model", "-m", help="A saved model folder."),
    user: list[str] = typer.Option(..., "--user", "-u", help="Person id (repeat to compare persons)."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="The prompt to answer."),
    n: int = typer.Option(8, "-n", help="Candidates to sample."),
    policy: str | None = typer.Option(None, "--policy", help=POLICY_HELP),
    allow_callable: list[str] = allow_callable_option(),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Tokens per candidate."),
    candidate: list[str] = typer.Option([], "--candidate", "-c", help="An extra candidate (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Best-of-N: SmolLM2-135M-Instruct samples N answers, each person's bounded reward chooses."""
    from rich.table import Table

    from personalign.integrations.generate import LocalGenerator, best_of_n
    from personalign.render import progress_bar

    if n < 1:
        raise ConfigError(f"-n must be >= 1, got {n}")
    _, reward = _load(model, policy, allow_callable)
    gen = LocalGenerator(max_new_tokens=max_new_tokens, seed=seed)
    # on stderr, so that --json output stays one document; a bar for the model load, then one for the samples
    with progress_bar(err_console) as bar:
        gen.load(progress=bar)
    with progress_bar(err_console) as bar:
        cands = gen.generate(prompt, n=n, progress=bar) + list(candidate)
    results = [best_of_n(reward, u, prompt, cands) for u in user]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=1))
        return
    for r in results:
        t = Table(
            title=f"person {r.user_id}: {prompt!r}" + ("" if reward.bounded else " (no policy: unbounded)")
        )
        t.add_column("#", justify="right")
        t.add_column("reward", justify="right")
        t.add_column("personal", justify="right")
        t.add_column("ok", justify="center")
        t.add_column("candidate")
        for i, c in enumerate(r.candidates):
            mark = " <- chosen" if i == r.chosen else ""
            ok = "yes" if r.allowed[i] else f"no ({', '.join(r.violations[i])})"
            t.add_row(str(i), f"{r.rewards[i]:.3f}", f"{r.personal[i]:+.3f}", ok, c.replace("\n", " ") + mark)
        console.print(t)
        console.print(f"[bold]choice for {r.user_id}:[/] #{r.chosen} {r.answer!r}\n", soft_wrap=True)


@app.command("export-dpo")
def export_dpo(
    model: Path = typer.Option(..., "--model", "-m", help="A saved model folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output: .jsonl, .parquet, or a folder (HF dataset)."),
    candidates: Path | None = typer.Option(
        None,
        "--candidates",
        help="Candidates file (prompt + response, or prompt + responses); else --generate.",
    ),
    prompts_file: Path | None = typer.Option(
        None, "--prompts", help="A text file, one prompt per line (--generate)."
    ),
    generate_n: int = typer.Option(
        0, "--generate", help="Sample this many candidates per prompt with SmolLM2."
    ),
    user: list[str] = typer.Option(
        [], "--user", "-u", help="Person id (repeatable); default all trained persons."
    ),
    policy: str | None = typer.Option(None, "--policy", help=POLICY_HELP),
    allow_callable: list[str] = allow_callable_option(),
    pairs_per_prompt: int = typer.Option(
        1, "--pairs-per-prompt", help="Rejected answers per (person, prompt)."
    ),
    system: str | None = typer.Option(
        None, "--system", help="System message template with {user_id} (person conditioning)."
    ),
    conversational: bool = typer.Option(
        False, "--conversational", help="Write chat messages instead of strings."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Personalized DPO pairs in TRL's format, chosen by each person's bounded reward."""
    from personalign.data.files import check_replaceable
    from personalign.integrations.dpo import is_pairs_folder, personalized_pairs, read_candidates, write_pairs
    from personalign.integrations.generate import LocalGenerator

    if out.suffix.lower() not in (".jsonl", ".json", ".parquet"):  # a dataset folder replaces --out whole
        check_replaceable(out, is_pairs_folder, "a dataset folder", overwrite=overwrite)

    m, reward = _load(model, policy, allow_callable)
    users = list(user) or list(getattr(m, "user_units_", {}))
    if not users:
        raise ConfigError("no persons: pass --user (the model has no trained persons)")
    cands, prompts, gen = None, None, None
    if candidates is not None:
        cands = read_candidates(candidates)
    elif generate_n > 0 and prompts_file is not None:
        prompts = [ln.strip() for ln in prompts_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        gen = LocalGenerator(seed=seed)
    else:
        raise ConfigError("give --candidates FILE, or --prompts FILE with --generate N")
    df = personalized_pairs(
        reward,
        users,
        prompts=prompts,
        candidates=cands,
        generator=gen,
        n=generate_n,
        pairs_per_prompt=pairs_per_prompt,
        system_message=system,
        conversational=conversational,
        show_progress=True,
    )
    write_pairs(df, out)
    from personalign.data.manifest import record_input, write_output_manifest

    for f in (model, candidates, prompts_file):
        if f is not None:
            record_input(f)  # hashed in the manifest
    extra = {"model": str(model), "persons": len(users), "policy": getattr(reward.policy, "name", None)}
    write_output_manifest(out, kind="dpo-pairs", seeds=seed, extra=extra)
    console.print(
        f"{len(df):,} pairs for {df['user_id'].nunique() if len(df) else 0} persons written to [bold]{out}[/]"
    )


@app.command("export-reward")
def export_reward_cmd(
    model: Path = typer.Option(..., "--model", "-m", help="A saved model folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the portable artifact."),
    user: str | None = typer.Option(None, "--user", "-u", help="Person id (default: the population)."),
    group: str | None = typer.Option(
        None, "--group", help="A group (unit) of a group model instead of a person."
    ),
    policy: str | None = typer.Option(None, "--policy", help=POLICY_HELP),
    allow_callable: list[str] = allow_callable_option(),
    overwrite: bool = overwrite_option(),
) -> None:
    """Export a bounded reward as a standalone artifact (safetensors head + loader script + README)."""
    from personalign.data.files import check_replaceable
    from personalign.integrations.export import export_reward, is_reward_artifact

    check_replaceable(out, is_reward_artifact, "an exported reward folder", overwrite=overwrite)
    m, reward = _load(model, policy, allow_callable)
    path = export_reward(m, out, user_id=user, policy=reward if reward.bounded else None, group=group)
    from personalign.data.manifest import record_input, write_output_manifest

    record_input(model)  # the model folder is the input (hashed in the manifest)
    extra = {"model": str(model), "user": user, "group": group, "policy": policy}
    write_output_manifest(path, kind="exported-reward", extra=extra)
    console.print(f"portable reward written to [bold]{path}[/] (see {path / 'README.md'})")


@app.command("train-ddp")
def train_ddp(
    data: Path = typer.Argument(..., help="Preference data (a file, or a `data synth` folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the model into."),
    nproc: int = typer.Option(2, "--nproc", help="Processes on this machine (torchrun --nproc_per_node)."),
    model: str = typer.Option("lowrank", "--model", help="bt, group, independent or lowrank."),
    rank: int = typer.Option(8, "--rank", "-k", help="Personal dimensions K (lowrank)."),
    encoder: str = encoder_option(),
    max_iter: int = typer.Option(300, "--max-iter", help="Most L-BFGS iterations."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    backend: str | None = typer.Option(None, "--backend", help="gloo or nccl (default: nccl with CUDA)."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Train under DistributedDataParallel on this machine (torchrun --standalone). For several machines run
    `torchrun --nnodes N --node_rank I --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m
    personalign.integrations.distributed DATA --out DIR` on every node."""
    check_model_out(out, overwrite)  # before the workers start
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "personalign.integrations.distributed",
        str(data),
        "--out",
        str(out),
        "--model",
        model,
        "--rank",
        str(rank),
        "--encoder",
        encoder,
        "--max-iter",
        str(max_iter),
        "--seed",
        str(seed),
    ]
    if backend:
        cmd += ["--backend", backend]
    console.print("[dim]" + " ".join(cmd) + "[/]")
    rc = subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if rc != 0:
        raise typer.Exit(rc)
