"""`personalign data ...`: inspect, convert and synthesize preference data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from personalign.cli.app import app
from personalign.cli.common import data_options, overwrite_option, user_columns_option, users_option
from personalign.errors import ConfigError

if TYPE_CHECKING:
    from personalign.data.core import PreferenceData

SHOW_PERSONS = 20  # data inspect lists each person's judgments up to this many persons
data_app = typer.Typer(help="Inspect, convert and synthesize preference data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


# ---------------------------------------------------------------- inspect / convert (readers, adapters, validation)
def _parse_map(pairs: list[str] | None) -> dict[str, str] | None:
    """``--map old=new`` options as a column map."""
    if not pairs:
        return None
    out = {}
    for p in pairs:
        old, sep, new = p.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(f"--map {p!r}: expected OLD=NEW (a column name, '=', its canonical name)")
        out[old.strip()] = new.strip()
    return out


def _read(
    path: Path,
    fmt: str | None,
    user_col: str | None,
    mapping: list[str] | None,
    users: Path | None = None,
    user_columns: str | None = None,
) -> PreferenceData:
    from personalign.data.io import read_data

    return read_data(
        path, fmt, user_col=user_col, column_map=_parse_map(mapping), **data_options(users, user_columns)
    )


def inspect_report(data: PreferenceData) -> dict:
    """What ``data inspect`` shows, as JSON-ready data: the summary, demographics and validation findings."""
    from personalign.data.validate import validate

    summary = data.summary()
    demo = {}
    for c in data.demographic_columns:
        col = data.users[c]
        demo[c] = {
            "distinct": int(col.nunique(dropna=True)),
            "missing": int(col.isna().sum()),
            "top": [str(v) for v in col.value_counts().head(3).index],
        }
    report = validate(data)
    per = data.judgments_per_user()
    out = {**summary, "demographics": demo, "validation": report.to_dict()}
    if 0 < len(per) <= SHOW_PERSONS:  # few raters: each one's count
        out["judgments_by_person"] = {str(u): int(n) for u, n in per.sort_index().items()}
    return out


@data_app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="A file or folder of preference data."),
    fmt: str = typer.Option(None, "--format", "-f", help="Format name (guessed when omitted)."),
    user_col: str = typer.Option(None, "--user-col", help="Column that names the person."),
    mapping: list[str] = typer.Option(None, "--map", help="Rename a column: OLD=NEW (repeatable)."),
    users: Path = users_option(),
    user_columns: str = user_columns_option(),
    json_out: Path = typer.Option(None, "--json", help="Also write the report as JSON here."),
) -> None:
    """Persons, items, judgments per kind and per person, demographics, contested items, validation findings."""
    from rich.table import Table

    from personalign.cli.common import console
    from personalign.data.files import write_text_atomic

    data = _read(path, fmt, user_col, mapping, users, user_columns)
    rep = inspect_report(data)
    t = Table(title=f"{rep['name']}  ({path})", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    t.add_row("persons", f"{rep['persons']:,}")
    t.add_row("items", f"{rep['items']:,}")
    for k, n in rep["judgments"].items():
        if n:
            t.add_row(k, f"{n:,}")
    if rep["population_pairs"]:
        t.add_row("population-level pairs", f"{rep['population_pairs']:,} (no person ids)")
    jp = rep["judgments_per_person"]
    if rep["persons"]:
        t.add_row("judgments per person", f"min {jp['min']:,} / median {jp['median']:g} / max {jp['max']:,}")
    if rep.get("judgments_by_person"):
        t.add_row(
            "judgments by person", ", ".join(f"{u} {n:,}" for u, n in rep["judgments_by_person"].items())
        )
    if rep["rating_scale"]:
        t.add_row("rating scale", f"{rep['rating_scale'][0]:g} .. {rep['rating_scale'][1]:g}")
    demo = rep["demographics"]
    t.add_row("demographic columns", ", ".join(f"{c} ({d['distinct']})" for c, d in demo.items()) or "none")
    if rep["contested_share"] is not None:
        t.add_row(
            "contested items",
            f"{rep['contested_share']:.1%} of {rep['items_with_3plus_judges']:,} items "
            "with 3+ judges on a side (the larger side < 80%; neutral answers take no side)",
        )
    findings = rep["validation"]["findings"]
    t.add_row(
        "validation", "[green]no findings[/]" if not findings else "[yellow]" + "\n".join(findings) + "[/]"
    )
    console.print(t)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(rep, indent=2, default=str))
        console.print(f"report written to [bold]{json_out}[/]")


CONVERT_OUT_HELP = (
    "Output: a folder (a path without an extension) of one file per table; with --kind, one table as a dense "
    ".jsonl/.jsonl.gz/.parquet/.csv file (comparisons TRL-ready); or one lossless .parquet file."
)
KINDS_HELP = (
    "Write only this kind of judgment (comparisons, ratings, rankings, votes) as one dense file: comparisons as "
    "TRL's prompt/chosen/rejected texts plus user_id (derived from ratings, votes, rankings when the data has "
    "no comparisons of its own)."
)


def _mixed_file_error(out: Path, data: PreferenceData) -> ConfigError:
    from personalign.data.tables import format_from_name

    tables = ", ".join(
        t for t in ("users", "items", "comparisons", "ratings", "rankings", "votes") if len(getattr(data, t))
    )
    stem = out.name.split(".")[0] or "out"
    return ConfigError(
        f"{out}: one {(format_from_name(out) or 'jsonl').upper()} file holds one table, and this data has several "
        f"({tables}); write a folder of one file per table (--out {out.with_name(stem)}), one kind of judgment "
        f"(--kind comparisons --out {out}: TRL's prompt, chosen, rejected plus user_id; or --kind ratings, rankings, votes) or one lossless file "
        f"(--out {out.with_name(stem + '.parquet')})"
    )


def _judgments_for(data: PreferenceData, kind: str) -> tuple[PreferenceData, str]:
    """The data whose ``kind`` table is to be written, and a note when comparisons were derived."""
    from personalign.data.schema import KINDS

    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "comparisons" and not len(data.comparisons) and len(data):
        derived = data.as_comparison_data()
        if not len(derived.comparisons):
            raise ConfigError("the data holds no comparisons and none can be derived from its judgments")
        held = ", ".join(k for k in KINDS if len(getattr(data, k)))
        return derived, f" ({len(derived.comparisons):,} comparisons derived from the {held})"
    return data, ""


@data_app.command("convert")
def convert(
    path: Path = typer.Argument(..., help="A file or folder of preference data."),
    out: Path = typer.Option(..., "--out", "-o", help=CONVERT_OUT_HELP),
    fmt: str = typer.Option(None, "--format", "-f", help="Input format name (guessed when omitted)."),
    user_col: str = typer.Option(None, "--user-col", help="Column that names the person."),
    mapping: list[str] = typer.Option(None, "--map", help="Rename a column: OLD=NEW (repeatable)."),
    users: Path = users_option(),
    user_columns: str = user_columns_option(),
    kind: str = typer.Option(None, "--kind", help=KINDS_HELP),
    out_format: str = typer.Option(
        "jsonl", "--out-format", help="File type of each table in a folder --out: jsonl or parquet."
    ),
    overwrite: bool = overwrite_option(),
) -> None:
    """Read any supported format and write personalign's tables: a folder of one file per table, one kind of
    judgment (TRL-ready comparisons) or one lossless Parquet file (written aside, then renamed into place)."""
    from personalign.cli.common import console
    from personalign.data.files import check_replaceable
    from personalign.data.io import is_table_folder, write_data, write_judgments, write_table_folder
    from personalign.data.tables import format_from_name, split_meta

    folder = out.is_dir() or not out.suffix
    if kind is None and not folder and format_from_name(out) not in ("parquet", "jsonl", "csv"):
        raise ConfigError(
            f"cannot write {out.name}: expected a folder, a .parquet path, or --kind with a .jsonl path"
        )
    if kind is not None and (folder or format_from_name(out) not in ("parquet", "jsonl", "csv")):
        raise ConfigError(
            f"--kind writes one file: expected --out NAME.jsonl, .jsonl.gz, .parquet or .csv, got {out}"
        )
    if out_format not in ("jsonl", "parquet"):
        raise ConfigError(f"--out-format {out_format!r}: expected jsonl or parquet")
    if folder:
        check_replaceable(out, is_table_folder, "a folder of personalign tables", overwrite=overwrite)
    data = _read(path, fmt, user_col, mapping, users, user_columns)
    note = ""
    if kind is not None:
        data, note = _judgments_for(data, kind)
        write_judgments(data, out, kind)
        what = f"{len(getattr(data, kind)):,} {kind}{note}"
    elif folder:
        write_table_folder(data, out, file_format=out_format)
        dropped = split_meta(data.meta)[1]
        if dropped:
            note = f"\nnot written (Python objects, not tables): meta {', '.join(map(repr, dropped))}"
        what = ", ".join(
            f"{t}{'.jsonl' if out_format == 'jsonl' else '.parquet'}"
            for t in ("users", "items", "comparisons", "ratings", "rankings", "votes")
            if len(getattr(data, t))
        )
    elif format_from_name(out) == "parquet":
        write_data(data, out)
        what = "one lossless Parquet file"
    else:
        raise _mixed_file_error(out, data)
    from personalign.data.manifest import data_summary, write_output_manifest

    write_output_manifest(out, kind="converted-data", data=data_summary(data), extra={"judgments_kind": kind})
    console.print(f"{data!r}\nwritten to [bold]{out}[/]: {what}{note if folder else ''}", highlight=False)


# ---------------------------------------------------------------- synth


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the population into."),
    persons: int = typer.Option(2000, "--persons", help="Number of persons."),
    comparisons: int = typer.Option(40, "--comparisons", help="Training comparisons per person."),
    alpha: float = typer.Option(0.1, "--alpha", help="Dirichlet concentration: small = people differ."),
    profiles: int = typer.Option(4, "--profiles", help="Number of latent value profiles."),
    adversarial: float = typer.Option(
        0.0, "--adversarial", help="Fraction of persons who prefer harmful content."
    ),
    temperature: float = typer.Option(1.0, "--temperature", help="Bradley-Terry label temperature."),
    context: float = typer.Option(0.0, "--context", help="How much weights shift with the prompt's domain."),
    heldout: int = typer.Option(
        20, "--heldout-comparisons", help="Comparisons per person on held-out prompts."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same population)."),
) -> None:
    """Generate a synthetic pluralistic population with known true rewards (Parquet + truth JSON)."""
    from personalign.cli.common import console
    from personalign.data.synthetic import (
        SyntheticConfig,
        generate_population,
        sample_comparisons,
        write_population,
    )
    from personalign.render import population_table

    cfg = SyntheticConfig(
        persons=persons,
        comparisons_per_person=comparisons,
        alpha=alpha,
        n_profiles=profiles,
        adversarial_frac=adversarial,
        temperature=temperature,
        context_dependence=context,
        seed=seed,
    )
    data = generate_population(cfg)
    test = sample_comparisons(data, heldout, prompts="heldout", seed=seed + 1) if heldout > 0 else None
    summary = write_population(data, out, test)
    from personalign.data.manifest import data_summary, write_output_manifest

    write_output_manifest(out, kind="population", seeds=seed, data=data_summary(data))
    console.print(population_table(summary))
    console.print(
        f"written to [bold]{out}[/]: population.parquet, "
        f"{'heldout.parquet, ' if test is not None else ''}truth.json, summary.json"
    )
