"""mkdocs hooks: the pages that describe code are generated from it at build time, so they cannot drift.

- ``<!-- cli-reference -->`` in a page becomes every command's usage, arguments and options, rendered from the
  typer app itself (what ``--help`` prints, as Markdown);
- ``<!-- service-routes -->`` becomes a table of the HTTP routes (method, path, summary) from the service's routers.

The checkout's own ``src`` goes first on ``sys.path``: the docs describe this tree, not an installed copy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI_MARKER = "<!-- cli-reference -->"
ROUTES_MARKER = "<!-- service-routes -->"


def on_config(config: Any, **kwargs: Any) -> Any:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def cli_reference() -> str:
    """Markdown for every command of ``personalign``: one section per command, nested groups included."""
    import click
    import typer

    from personalign.cli import app

    command = typer.main.get_command(app)
    ctx = click.Context(command, info_name="personalign")
    try:
        from typer.cli import get_docs_for_click  # what `typer ... utils docs` uses
    except ImportError:  # another typer: fall back on the plain --help text of each command
        return help_texts(command, ctx)
    text = get_docs_for_click(obj=command, ctx=ctx, name="personalign", title="personalign")
    return text.split("\n", 1)[1]  # the page has its own title


def help_texts(command: Any, ctx: Any, prefix: str = "personalign", level: int = 2) -> str:
    """Each command's ``--help`` as a code block under a heading (the fallback renderer)."""
    import click

    parts = [f"{'#' * level} `{prefix}`\n\n```text\n{command.get_help(ctx)}\n```\n"]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                sub_ctx = click.Context(sub, info_name=name, parent=ctx)
                parts.append(help_texts(sub, sub_ctx, f"{prefix} {name}", min(level + 1, 6)))
    return "\n".join(parts)


def service_routes() -> str:
    """A Markdown table of the service's routes, from the routers the app includes."""
    from personalign.serve.routes import ROUTERS

    rows = ["| method | path | what it does |", "|---|---|---|"]
    for router in ROUTERS:
        for route in router.routes:
            methods = ", ".join(sorted(getattr(route, "methods", None) or []))
            summary = (getattr(route, "summary", None) or "").replace("|", "\\|")
            rows.append(f"| {methods} | `{route.path}` | {summary} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if ROUTES_MARKER in markdown:
        markdown = markdown.replace(ROUTES_MARKER, service_routes())
    return markdown
