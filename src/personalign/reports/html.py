"""HTML of reports: Markdown through markdown-it-py, and one jinja2 page (inline CSS, no external assets)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from personalign.reports.text import counts_text, interval_text, is_numeric_cell, shorten


def _wrap_table(open_: bool):
    # a scrolling box around each table: its header row stays in sight (sticky) while the rows scroll
    def rule(self, tokens, idx, options, env):  # markdown-it's render-rule signature
        return '<div class="table-wrap"><table>\n' if open_ else "</table></div>\n"

    return rule


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # html on: the reports' own Markdown uses <details> for the long tables (item texts are escaped first)
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    md.add_render_rule("table_open", _wrap_table(True))
    md.add_render_rule("table_close", _wrap_table(False))
    return md


def markdown_to_html(text: str, glossary: Mapping[str, str] | None = None) -> str:
    """CommonMark with pipe tables as HTML; a header cell named in ``glossary`` gets its meaning as a tooltip,
    and numeric cells are marked (class ``num``: right-aligned)."""
    md = _parser()
    gl = {k.lower(): v for k, v in (glossary or {}).items()}
    tokens = md.parse(text)
    for i, tok in enumerate(tokens):
        if tok.type not in ("th_open", "td_open") or i + 1 >= len(tokens):
            continue
        content = tokens[i + 1].content.strip()
        if tok.type == "th_open" and content.lower() in gl:
            tok.attrSet("title", gl[content.lower()])
        if tok.type == "td_open" and is_numeric_cell(content):
            tok.attrJoin("class", "num")
    return md.renderer.render(tokens, md.options, {})


def _missing(v: Any) -> bool:
    return v is None or isinstance(v, jinja2.Undefined)


def _pct(v: Any, digits: int = 1) -> str:
    return "n/a" if _missing(v) else f"{100 * v:.{digits}f}%"


def _num(v: Any, digits: int = 3) -> str:
    if _missing(v):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _item(text: Any, width: int = 60, fallback: Any = "") -> Markup:
    """An item's text shortened to ``width``, the full text (or the id) on hover."""
    full = " ".join(str(text or fallback or "").split())
    short = shorten(full, width)
    if short == full:
        return Markup('<span class="item">{}</span>').format(short)
    return Markup('<span class="item" title="{}">{}</span>').format(full, short)


def _interval(iv: Any, scale: float = 100.0, digits: int = 1) -> str:
    """A {'mean', 'ci95': [lo, hi]} dict as '+2.9 [+1.2, +4.6]'."""
    if _missing(iv) or not isinstance(iv, Mapping) or iv.get("mean") is None:
        return "n/a"
    lo, hi = (list(iv.get("ci95") or []) + [None, None])[:2]
    return interval_text(iv["mean"], lo, hi, scale=scale, digits=digits)


@lru_cache(maxsize=8)
def environment(*packages: str) -> jinja2.Environment:
    """A jinja2 environment over the templates of ``packages`` (then the shared ``page.html.j2``), with filters
    ``pct``, ``num``, ``item`` (shortened text, full on hover), ``counts``, ``interval`` and ``md``."""
    loaders = [jinja2.PackageLoader(p, "templates") for p in packages]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([*loaders, jinja2.PackageLoader("personalign.reports", "templates")]),
        undefined=jinja2.ChainableUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=_pct,
        num=_num,
        item=_item,
        counts=lambda v: counts_text(None if _missing(v) else v),
        interval=_interval,
        md=lambda s: Markup(markdown_to_html(str(s))),
        upper_first=lambda s: "" if _missing(s) else (str(s)[:1].upper() + str(s)[1:]),
    )
    env.globals["missing"] = _missing
    return env


def render_page(title: str, body_html: str, *, subtitle: str | None = None) -> str:
    """A whole HTML page around ``body_html`` (trusted HTML, e.g. from :func:`markdown_to_html`)."""
    tpl = environment().get_template("page.html.j2")
    return tpl.render(title=title, subtitle=subtitle, body=Markup(body_html))


__all__ = ["environment", "escape", "markdown_to_html", "render_page"]
