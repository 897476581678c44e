"""Terminal rendering (rich) of what the library returns: used by the CLI and the demo, never by the library.

The library hands back dicts and frames; these functions turn them into tables and progress bars.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

# what a long-running library function calls as it goes: (description, done, total)
ProgressCallback = Callable[[str, int, int], None]


@contextlib.contextmanager
def progress_bar(console: Console | None = None, disable: bool = False) -> Iterator[ProgressCallback]:
    """A rich progress bar (description, bar, done/total, elapsed) driven by a :data:`ProgressCallback`; it
    appears at the first call, so whatever the function prints before its first step stays above it.

    When the console is not a terminal (a log file, a pipe, CI) a live bar would only be drawn at the end, so each
    new step is printed as one plain line instead, as it happens."""
    console = console or Console()
    if not disable and not console.is_terminal:
        yield progress_lines(console)
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
        transient=False,
    )
    task: TaskID | None = None

    def update(description: str, done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(description, total=total)
        bar.update(task, description=description, completed=done, total=total)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


def progress_lines(console: Console) -> ProgressCallback:
    """A :data:`ProgressCallback` that prints ``[done/total] description (elapsed s)`` whenever the description
    or the count changes (rich flushes each print, so a log shows it at once)."""
    t0 = time.perf_counter()
    last: tuple[str, int] | None = None

    def update(description: str, done: int, total: int) -> None:
        nonlocal last
        if (description, done) == last:
            return
        last = (description, done)
        line = f"[{done}/{total}] {description} ({time.perf_counter() - t0:.0f} s)"
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    return update


def key_value_table(title: str, rows: Sequence[tuple[str, str]], bold_keys: bool = False) -> Table:
    """A two-column table without header."""
    tab = Table(title=title, show_header=False)
    if bold_keys:
        tab.add_column("", style="bold")
        tab.add_column("")
    for k, v in rows:
        tab.add_row(k, v)
    return tab


def population_table(summary: dict[str, Any], title: str = "Synthetic pluralistic population") -> Table:
    """The figures of :func:`personalign.data.synthetic.population_summary`."""
    oa = summary["oracle_accuracy"]
    rows = [
        ("persons", f"{summary['persons']:,}"),
        ("prompts (held out)", f"{summary['prompts']} ({summary['heldout_prompts']})"),
        ("domains", ", ".join(summary["domains"])),
        ("candidate responses (harmful)", f"{summary['items']:,} ({summary['harmful_items']})"),
        ("training comparisons", f"{summary['comparisons']:,}"),
        ("profiles (persons nearest each)", ", ".join(f"{k} {v:,}" for k, v in summary["profiles"].items())),
        ("adversarial persons", f"{summary['adversarial_persons']:,}"),
        (
            "alpha / temperature / context",
            f"{summary['alpha']} / {summary['temperature']} / {summary['context_dependence']}",
        ),
        ("agreement between two persons", f"{summary['agreement_between_persons']:.3f}"),
        ("oracle accuracy: Bayes / realized", f"{oa['bayes']:.3f} / {oa['realized']:.3f}"),
    ]
    if "heldout_comparisons" in summary:
        ho = summary["heldout_oracle_accuracy"]
        rows.append(("held-out comparisons", f"{summary['heldout_comparisons']:,}"))
        rows.append(("held-out oracle: Bayes / realized", f"{ho['bayes']:.3f} / {ho['realized']:.3f}"))
    return key_value_table(title, rows, bold_keys=True)


def favourites_table(fav: pd.DataFrame, width: int = 280) -> Table:
    """:func:`personalign.data.synthetic.favourite_responses`: each person's favourite, cut to ``width``."""
    prompt = fav["prompt"].iloc[0] if len(fav) else ""
    tab = Table(title=f"Who likes what: {prompt!r}", show_lines=True)
    tab.add_column("person")
    tab.add_column("favourite response (true reward)")
    for r in fav.itertuples(index=False):
        text = str(r.response)
        tab.add_row(f"{r.person} ({r.profile})", text if len(text) <= width else text[: width - 3] + "...")
    return tab


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{100 * v:.1f}%" if pct else f"{v:.3f}"
    return str(v)


def audit_table(res: dict[str, Any]) -> Table:
    """The headline figures of :func:`personalign.audit.pipeline.run_audit`."""
    h, f = res["headline"], _fmt
    rows = [
        ("persons / items / pairs", f"{res['persons']} / {res['items']} / {res['pairs']}"),
        ("Krippendorff's alpha", f(h["alpha"])),
        ("contested items", f(h["contested_share"], True)),
        ("variance: person share beyond item", f(h["person_share_of_variance"], True)),
        ("explained-variance ratio (item)", f(h["explained_variance_ratio"])),
        ("Condorcet winner exists", f(h["condorcet_winner_exists"])),
        (
            "majority 3-cycles (all edges significant)",
            f"{f(h['three_cycles'])} ({f(h['three_cycles_significant'])})",
        ),
        ("voting rules disagree on the winner", f(h["rules_disagree"])),
        ("aggregate fit per person (mean)", f(h["aggregate_fit_mean"], True)),
        ("persons fit below 60%", f(h["share_below_60"], True)),
    ]
    if h.get("personalized_share_below_60") is not None:
        rows.append(("... with the personalized model", f(h["personalized_share_below_60"], True)))
    gap = (res.get("worst_group") or {}).get("gap_vs_rest")
    worst = f"{h['worst_group']} ({f(h['worst_group_fit'], True)})" if h["worst_group"] else "n/a"
    if gap:  # the difference to everyone else, with its bootstrap interval over persons
        lo, hi = gap["ci95"]
        worst += f"; {100 * gap['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] points vs the rest"
    rows.append(("worst-fit group", worst))
    if h.get("structure_verdict"):
        rows.append(
            (
                "personal structure",
                f"{h['structure_verdict']} (p={f(h['structure_p'])}, effect={f(h['structure_effect'])})",
            )
        )
    return key_value_table(f"Aggregation audit: {res['dataset']}", rows)


COMPARISON_HEADER = (
    "model",
    "per-person acc",
    "collapsed",
    "personal gain [95% CI]",
    "worst 10%",
    "worst group",
)


def comparison_table(title: str, rows: Sequence[Sequence[str]]) -> Table:
    """:func:`personalign.evaluate.report.comparison_rows` under their header."""
    t = Table(title=title)
    for h in COMPARISON_HEADER:
        t.add_column(h)
    for row in rows:
        t.add_row(*row)
    return t
