"""OpenAI "Learning to summarize from human feedback" comparisons (Stiennon et al. 2020), JSON lines.

A record: ``info`` (``post``, ``title``, ``subreddit`` for Reddit TL;DR, or ``article``, ``title``, ``site`` for
CNN/DM), ``summaries`` (a list of ``{text, policy, note}``), ``choice`` (index of the preferred summary),
``worker`` (the labeller), optional ``split``, ``batch``, ``extra.confidence``.

Each record -> one comparison per rejected summary: prompt = the rendered post or article, chosen =
``summaries[choice].text``; the policies of both summaries, the split, batch and confidence are extra columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.data.tables import read_jsonl_records
from personalign.errors import DataError


def render_prompt(info: dict[str, Any]) -> str:
    """The text a labeller saw above the summaries."""
    parts = []
    if info.get("subreddit"):
        parts.append(f"SUBREDDIT: r/{info['subreddit']}")
    if info.get("title"):
        parts.append(f"TITLE: {info['title']}")
    if info.get("post") is not None:
        parts.append(f"POST: {info['post']}")
    elif info.get("article") is not None:
        parts.append(f"ARTICLE: {info['article']}")
    return "\n".join(parts)


def read_summarize_feedback(path: str | Path, *, name: str | None = None) -> PreferenceData:
    """Read a comparisons file (``.json``/``.jsonl``, one JSON object a line, optionally gzipped)."""
    path = Path(path)
    src = str(path)
    records, lines = read_jsonl_records(path)
    rows = []
    for rec, n in zip(records, lines, strict=True):
        info = rec.get("info")
        if not isinstance(info, dict):
            raise DataError(
                "missing value" if info is None else f"got {type(info).__name__}",
                file=src,
                line=n,
                field="info",
                expected="an object with post/title/subreddit or article",
            )
        if not isinstance(info.get("post"), str) and not isinstance(info.get("article"), str):
            raise DataError(
                "neither 'post' nor 'article'",
                file=src,
                line=n,
                field="info.post",
                expected="the post or article text",
            )
        summ = rec.get("summaries")
        if not isinstance(summ, list) or len(summ) < 2:
            raise DataError(
                f"got {summ!r:.60}",
                file=src,
                line=n,
                field="summaries",
                expected="a list of at least two {text, policy, note} objects",
            )
        for k, s in enumerate(summ):
            if not isinstance(s, dict) or not isinstance(s.get("text"), str):
                raise DataError(
                    "no summary text", file=src, line=n, field=f"summaries[{k}].text", expected="a string"
                )
        choice = rec.get("choice")
        if isinstance(choice, bool) or not isinstance(choice, int | np.integer):
            raise DataError(
                f"got {choice!r}",
                file=src,
                line=n,
                field="choice",
                expected="the integer index of the preferred summary",
            )
        if not 0 <= choice < len(summ):
            raise DataError(
                f"index {choice} out of range",
                file=src,
                line=n,
                field="choice",
                expected=f"an index from 0 to {len(summ) - 1}",
            )
        worker = rec.get("worker")
        if worker is None or (isinstance(worker, str) and not worker.strip()):
            raise DataError("missing value", file=src, line=n, field="worker", expected="a labeller id")
        prompt = render_prompt(info)
        conf = (rec.get("extra") or {}).get("confidence") if isinstance(rec.get("extra"), dict) else None
        win = summ[choice]
        for k, s in enumerate(summ):
            if k == choice:
                continue
            rows.append(
                {
                    "user_id": str(worker),
                    "prompt": prompt,
                    "chosen": win["text"].strip(),
                    "rejected": s["text"].strip(),
                    "chosen_policy": win.get("policy"),
                    "rejected_policy": s.get("policy"),
                    "post_id": info.get("id"),
                    "split": rec.get("split"),
                    "batch": rec.get("batch"),
                    "confidence": conf,
                }
            )
    if not rows:
        raise DataError("no records", file=src, expected="JSON lines with info, summaries, choice, worker")
    comps = pd.DataFrame(rows)
    comps["confidence"] = pd.to_numeric(comps["confidence"], errors="coerce")
    return PreferenceData(
        comparisons=comps, name=name or f"summarize-feedback-{path.stem.split('.')[0]}", meta={"source": src}
    )
