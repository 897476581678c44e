"""Common plot styling for reports (matplotlib, Agg): titles, axis labels, a chance line where accuracy is
plotted, legends outside the data, a k-shot axis whose ticks are the k values, one colour per model."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from personalign.data.files import atomic_write

# one colour per model name across every plot of a report (tab10, in a fixed order)
_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
]
MODEL_ORDER = (
    "lowrank",
    "bt",
    "group",
    "independent",
    "mixture",
    "majority",
    "choix",
    "crowd",
    "oracle",
    "hybrid",
    "svd",
)
# fonts tried after DejaVu Sans for glyphs it lacks (item texts in Chinese, Japanese, Korean), when installed
FALLBACK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "Arial Unicode MS",
)
_WIDE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


@lru_cache(maxsize=1)
def installed_fallbacks() -> tuple[str, ...]:
    """The :data:`FALLBACK_FONTS` matplotlib can find on this machine."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return tuple(f for f in FALLBACK_FONTS if f in have)


def drawable(text: str) -> bool:
    """Whether the plot fonts can draw ``text`` (CJK characters need an installed fallback font)."""
    return not _WIDE.search(text or "") or bool(installed_fallbacks())


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed), with the reports' defaults."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "legend.fontsize": 9,
            # a list of families: matplotlib takes a glyph missing from the first from the next
            "font.family": ["DejaVu Sans", *installed_fallbacks()],
        }
    )
    return plt


def model_color(name: str) -> str:
    """The colour of a model (by its key: lowrank, bt, ...), the same in every plot."""
    i = MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER) + sum(map(ord, name))
    return _PALETTE[i % len(_PALETTE)]


def style(ax: Any, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None) -> None:
    """Title and axis labels (every plot of a report has all three)."""
    if title:
        ax.set_title(title, loc="left")
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)


def chance_line(ax: Any, value: float = 50.0, axis: str = "y", label: str = "chance (50%)") -> None:
    """A dotted line at chance level (a horizontal line for ``axis='y'``, vertical for 'x'), in the legend."""
    kw = dict(color="0.35", ls=":", lw=1.2, label=label, zorder=1)
    (ax.axhline if axis == "y" else ax.axvline)(value, **kw)


def legend_outside(ax: Any, title: str | None = None, loc: str = "right") -> Any:
    """The legend beside the axes (right) or below them, never over the data; None when nothing is labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    if loc == "below":
        return ax.legend(
            loc="upper left",
            bbox_to_anchor=(0.0, -0.16),
            ncol=min(4, len(handles)),
            frameon=False,
            title=title,
        )
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=title)


def kshot_axis(ax: Any, ks: Sequence[int]) -> None:
    """An x axis for k = 0, 1, 2, 5, ...: log(1 + k) spacing (k = 0 included) with ticks at the k values."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ks = sorted({int(k) for k in ks})
    ax.set_xscale("function", functions=(lambda x: np.log1p(np.clip(x, -0.9, None)), np.expm1))
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ks, [str(k) for k in ks])
    if ks:
        ax.set_xlim(-0.2 if ks[0] == 0 else ks[0] * 0.85, ks[-1] * 1.15 + 0.2)


def save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG (atomically; tight box so an outside legend is kept) and close it."""
    plt = pyplot()
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)
    return path
