"""`personalign explain`: what a model believes one person prefers, in words (the profile endpoint's explanation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from personalign.cli.app import app
from personalign.cli.common import console, err_console


def _print(e: Any) -> None:
    """The explanation in plain text: provenance, each direction (summary, its two ends), bounds, monitors."""
    from rich.markup import escape

    who = e.user_id if e.user_id is not None else "the population"
    console.print(f"[bold]{escape(who)}[/] ({e.model}, {e.k} personal dimensions): {escape(e.provenance)}")
    for note in e.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if e.directions:
        console.print(
            f"[bold]personal directions[/] (named by {e.reference['n']} "
            + (
                "of the model's training items)"
                if e.reference["source"] == "training items"
                else "given texts)"
            )
        )
    for d in e.directions:
        lo, hi = d.interval
        console.print(
            f"[bold]{d.index + 1}.[/] {escape(d.summary)}  [dim]{d.variance_share:.0%} of how people differ; "
            f"you {d.position:+.2f} \u00b1 {d.sd:.2f} sd, 95% [{lo:+.2f}, {hi:+.2f}][/]"
        )
        for sign, words, texts in (("+", d.high_end, d.high_texts), ("-", d.low_end, d.low_texts)):
            example = f" e.g. \u201c{texts[0][:90]}\u201d" if texts else ""
            console.print(f"   {sign} end: {escape(words or 'no descriptor tracks it')}{escape(example)}")
    console.print(f"[bold]bounds:[/] {escape(e.bounds.summary)}")
    if e.bounds.trust_region:
        console.print(f"  {escape(e.bounds.trust_region['says'])}")
    for a in e.bounds.answers:
        console.print(f"  {escape(a.prompt[:60])}: {escape(a.reason)}")
    for m in e.monitors:
        console.print(f"[bold]{m.name}:[/] {escape(m.says)}")


@app.command("explain")
def explain(
    model: Path = typer.Option(..., "--model", "-m", help="A saved model folder."),
    user: str = typer.Option(
        None, "--user", "-u", help="Person id (an unknown person: the population prior, with a warning)."
    ),
    texts: Path = typer.Option(
        None,
        "--texts",
        help="Reference texts to name the directions by (.jsonl/.json with 'text' or 'response' and optional "
        "'prompt', or one text per line); default: the training items the model kept.",
    ),
    policy: str = typer.Option(
        None, "--policy", help="A policy preset or file: report the trust region it puts on the person."
    ),
    max_directions: int = typer.Option(8, "--max-directions", min=1, help="Directions to explain at most."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the service's explanation) instead."),
) -> None:
    """What the model believes a person prefers: each personal direction named by texts and descriptors, with
    the person's place on it and its uncertainty; where that belief came from; the bounds and monitors."""
    import warnings

    from personalign.bounds.explain import explain_person, known_person, read_texts
    from personalign.models import load_model

    m = load_model(model)
    prompts = ref = None
    if texts is not None:
        prompts, ref = read_texts(texts)
    if user is not None and not known_person(m, user):
        err_console.print(
            f"[yellow]warning:[/] the model does not know {user!r}: explaining the population prior",
            highlight=False,
        )
    with warnings.catch_warnings():  # the explanation says itself when the person is unknown
        warnings.simplefilter("ignore", UserWarning)
        e = explain_person(m, user, texts=ref, prompts=prompts, policy=policy, max_directions=max_directions)
    if as_json:
        print(json.dumps(e.to_dict(), indent=2))
    else:
        _print(e)
