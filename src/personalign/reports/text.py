"""Readable numbers and texts for reports: counts in words, shortened item texts, Markdown tables, intervals."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# characters a numeric cell may hold: "71.5 ± 1.4", "+2.3 [+0.4, +4.1]*", "2839 / 190", "86.3%"
_NUMERIC_CHARS = set("0123456789.,+-−±%[]*/ ")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def counts_text(counts: Mapping[str, Any] | int | None, empty: str = "no judgments") -> str:
    """{'ratings': 13036, 'votes': 0} -> '13,036 ratings' (zero counts left out, thousands separated)."""
    if counts is None:
        return empty
    if not isinstance(counts, Mapping):
        return f"{counts:,}" if isinstance(counts, int) else str(counts)
    parts = [f"{int(v):,} {k}" for k, v in counts.items() if isinstance(v, int | float) and v]
    if not parts:
        return empty
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def shorten(text: Any, width: int = 60) -> str:
    """``text`` on one line, cut at a word boundary to at most ``width`` characters (an ellipsis marks a cut)."""
    s = " ".join(str(text or "").split())
    if len(s) <= width:
        return s
    cut = s[: width - 1]
    if " " in cut[width // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,.;:") + "…"


def md_escape(text: Any) -> str:
    """``text`` safe inside Markdown (a table cell included): one line, special characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def is_numeric_cell(cell: str) -> bool:
    """Whether a formatted cell is a number (or a number with its spread or interval): it is right-aligned."""
    s = cell.strip()
    return any(c.isdigit() for c in s) and set(s) <= _NUMERIC_CHARS


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown pipe table; columns whose every filled cell is numeric are right-aligned (``---:``)."""
    cells = [[str(c) for c in r] for r in rows]
    align = []
    for j in range(len(header)):
        col = [r[j] for r in cells if j < len(r) and r[j].strip() not in ("", "-", "n/a")]
        align.append("---:" if col and all(is_numeric_cell(c) for c in col) else "---")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def interval_text(
    mean: float | None,
    lo: float | None = None,
    hi: float | None = None,
    *,
    scale: float = 100.0,
    digits: int = 1,
    signed: bool = True,
) -> str:
    """'+2.9 [+1.2, +4.6]' (a difference scaled to points, with its interval when known)."""
    if mean is None:
        return "n/a"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    s = f.format(scale * mean)
    if lo is not None and hi is not None:
        s += f" [{f.format(scale * lo)}, {f.format(scale * hi)}]"
    return s


def verdict_word(lo: float | None, hi: float | None, mean: float | None = None) -> str:
    """'helps' (interval above 0), 'hurts' (below 0) or 'does not clearly help' (it holds 0) for a difference."""
    if lo is None or hi is None:
        if mean is None:
            return "cannot be judged"
        return "cannot be judged (no interval: one seed)"
    if lo > 0:
        return "helps"
    if hi < 0:
        return "hurts"
    return "does not clearly help"


def glossary_markdown(glossary: Mapping[str, str], title: str = "Glossary", level: int = 2) -> str:
    """A Markdown section: each term in bold, then its meaning."""
    lines = ["#" * level + f" {title}", ""]
    lines += [f"- **{term}**: {text}" for term, text in glossary.items()]
    return "\n".join(lines) + "\n"
