"""Shared CLI plumbing: clean error messages and exit codes, rich console."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from personalign.errors import PersonalignError

console = Console()
err_console = Console(stderr=True)


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """The ClickException classes in play: typer >= 0.22 raises those of its bundled copy of click
    (``typer._click``), older typer those of click itself; both are caught."""
    types: list[type[BaseException]] = []
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(__import__(mod, fromlist=["ClickException"]).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def _usage_line(exc: BaseException) -> str:
    """One line for a usage error: the message and where to look for help."""
    msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", None) or "personalign"
    return f"{msg} (see '{where} --help')"


def run_guarded(app: typer.Typer, args: list[str] | None = None) -> int:
    """Run a typer app. A personalign error or a usage error prints one ``error:`` line to stderr and returns 2
    (no traceback); ``--help`` and normal exits return their own code."""
    from personalign.data.manifest import invocation

    try:
        # the real argv, recorded in the manifest of every folder the command writes
        with invocation(sys.argv[1:] if args is None else args):
            app(args=args, standalone_mode=False)
    except (PersonalignError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("Aborted.")
        return 1
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except _click_exception_types() as exc:
        if (
            type(exc).__name__ == "NoArgsIsHelpError"
        ):  # the help was printed already; a usage error all the same
            return 2
        if type(exc).__name__ == "Abort":
            err_console.print("Aborted.")
            return 1
        err_console.print(f"[bold red]error:[/] {_usage_line(exc)}", highlight=False, soft_wrap=True)
        code = getattr(exc, "exit_code", 2)
        return 2 if code in (None, 1) else code
    return 0


OVERWRITE_HELP = "Replace --out even when it holds something other than an earlier output of this command."


def overwrite_option() -> Any:
    """The ``--overwrite`` option of every command that replaces an --out folder."""
    return typer.Option(False, "--overwrite", help=OVERWRITE_HELP)


ALLOW_CALLABLE_HELP = (
    "A 'module:name' callable a policy's callable scorer may import (repeatable). Without it a policy may "
    "name only the project's own scorers: a policy file is data and never chooses code on its own."
)


def allow_callable_option() -> Any:
    """The ``--allow-callable`` option of every command that loads a policy."""
    return typer.Option([], "--allow-callable", help=ALLOW_CALLABLE_HELP)


def check_result_out(out: Any, main: str, overwrite: bool) -> None:
    """Refuse (ConfigError) a result --out that exists and is not a result folder of this command (its ``main``
    document, e.g. ``results.json``, is missing), unless ``--overwrite``; run before the work starts. The
    command then writes a temporary sibling and renames it into place (``data.files.atomic_dir``)."""
    from functools import partial

    from personalign.data.files import check_replaceable, is_result_folder

    what = f"a result folder of this command (with {main})"
    check_replaceable(out, partial(is_result_folder, main=main), what, overwrite=overwrite)


def check_model_out(out: Any, overwrite: bool) -> None:
    """Refuse (ConfigError) a model --out that exists and is not a saved model, unless ``--overwrite``."""
    from personalign.data.files import check_replaceable
    from personalign.models.artifacts import is_model_folder

    check_replaceable(out, is_model_folder, "a personalign model folder", overwrite=overwrite)


# ------------------------------------------------------------------------------------------ encoder options
ENCODER_HELP = (
    "Text encoder: minilm (default), mpnet, e5, smollm2, hashing, a model folder (sentence-transformers, "
    "fine-tuned or transformers), hf:PATH for a transformers model; options in brackets, quoted: "
    "'smollm2[pooling=last]', 'hf:PATH[pooling=mean,layer=-4]', 'hashing[dim=512]'."
)
DEVICE_HELP = "Where to encode text: auto (CUDA when available, in fp16), cpu, cuda or cuda:N."
PAIR_MODE_HELP = (
    "Pair features: auto [e(y), e(x)*e(y)], response e(y), or sentences (adds pooled sentence vectors)."
)


USERS_HELP = (
    "A persons file (CSV, TSV, JSONL or Parquet: a user_id column, one row per person) whose columns "
    "(demographics, side information) join the persons."
)
USER_COLUMNS_HELP = (
    "Comma-separated columns of the judgment rows that describe the person (e.g. age,gender): moved into the "
    "persons table (table formats: JSONL, CSV, TSV, Parquet)."
)


def users_option() -> Any:
    """The ``--users FILE`` option of every command that reads data."""
    return typer.Option(None, "--users", help=USERS_HELP)


def user_columns_option() -> Any:
    """The ``--user-columns a,b`` option of every command that reads data."""
    return typer.Option(None, "--user-columns", help=USER_COLUMNS_HELP)


def data_options(users: Any = None, user_columns: str | None = None) -> dict[str, Any]:
    """``read_data`` keywords of ``--users`` and ``--user-columns`` (only those given)."""
    kw: dict[str, Any] = {}
    if users is not None:
        kw["users"] = users
    cols = [c.strip() for c in (user_columns or "").split(",") if c.strip()]
    if cols:
        kw["user_columns"] = cols
    return kw


def encoder_option(default: str = "minilm", extra: str = "") -> Any:
    """The ``--encoder`` option of every command that makes text features."""
    # typer renders help as rich markup: the spec's brackets must be escaped to show
    return typer.Option(default, "--encoder", help=escape(ENCODER_HELP + (f" {extra}" if extra else "")))


def device_option() -> Any:
    """The ``--device`` option for encoding (auto, cpu, cuda)."""
    return typer.Option("auto", "--device", help=DEVICE_HELP)


def pair_mode_option() -> Any:
    """The ``--pair-mode`` option (the PairFeaturizer mode)."""
    return typer.Option("auto", "--pair-mode", help=escape(PAIR_MODE_HELP))


def build_encoder(encoder: str, device: str = "auto") -> Any:
    """The (cached) encoder named by ``--encoder``, run on ``--device``; bad names and devices are one error line."""
    from personalign.features import get_encoder, resolve_device

    resolve_device(device)  # a wrong --device fails here, before any data is read or encoded
    return get_encoder(encoder, device=device)


def build_featurizer(encoder: str, device: str = "auto", pair_mode: str = "auto") -> Any:
    """The PairFeaturizer of ``--encoder``, ``--device`` and ``--pair-mode``."""
    from personalign.features import PairFeaturizer

    return PairFeaturizer(build_encoder(encoder, device), mode=pair_mode)
