"""Shared rendering for the reports people read (evaluation, audit, bounds check): Markdown to HTML, one page
template, readable numbers and texts, common plot styling.

It sits beside the data layer (it imports only ``personalign.data.files``), so every capability may use it.

- :func:`markdown_to_html`: Markdown (tables on) through markdown-it-py, with column tooltips from a glossary.
- :func:`render_page` / :func:`environment`: the jinja2 page (inline CSS, no external assets).
- :func:`md_table`, :func:`counts_text`, :func:`shorten`, :func:`glossary_markdown`: text helpers.
- :mod:`personalign.reports.plots`: titles, axis labels, chance lines, legends outside the data, k-shot axes.
"""

from personalign.reports.html import environment, markdown_to_html, render_page
from personalign.reports.text import (
    counts_text,
    glossary_markdown,
    interval_text,
    md_table,
    shorten,
    verdict_word,
)

__all__ = [
    "counts_text",
    "environment",
    "glossary_markdown",
    "interval_text",
    "markdown_to_html",
    "md_table",
    "render_page",
    "shorten",
    "verdict_word",
]
