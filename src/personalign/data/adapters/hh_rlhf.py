"""Anthropic HH-RLHF: JSON lines (optionally gzipped) ``{"chosen": dialogue, "rejected": dialogue}``.

Both dialogues are full transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ..."). The prompt is their shared
beginning up to and including the last ``"\\n\\nAssistant:"`` they share; chosen and rejected are the rest
(normally the final Assistant turn). No rater ids: every pair belongs to ``POPULATION_USER``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from personalign.data.core import POPULATION_USER, PreferenceData
from personalign.data.tables import read_jsonl_records
from personalign.errors import DataError

ASSISTANT = "\n\nAssistant:"


def split_dialogues(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen reply, rejected reply): the shared prefix cut after its last Assistant marker."""
    shared = os.path.commonprefix([chosen, rejected])
    cut = shared.rfind(ASSISTANT)
    if cut < 0:
        return "", chosen.strip(), rejected.strip()
    cut += len(ASSISTANT)
    return chosen[:cut], chosen[cut:].strip(), rejected[cut:].strip()


def read_hh_rlhf(path: str | Path, *, name: str | None = None) -> PreferenceData:
    """Read an HH-RLHF ``.jsonl`` / ``.jsonl.gz`` file as population-level comparisons."""
    path = Path(path)
    records, lines = read_jsonl_records(path)
    rows = []
    early = 0
    for rec, n in zip(records, lines, strict=True):
        for f in ("chosen", "rejected"):
            if not isinstance(rec.get(f), str):
                raise DataError(
                    "missing value" if rec.get(f) is None else f"got {type(rec[f]).__name__}",
                    file=str(path),
                    line=n,
                    field=f,
                    expected="a dialogue string",
                )
        prompt, c, r = split_dialogues(rec["chosen"], rec["rejected"])
        # the two dialogues normally differ only in the last Assistant turn; count those that differ earlier
        early += int("\n\nHuman:" in c or "\n\nHuman:" in r)
        rows.append((POPULATION_USER, prompt, c, r))
    if not rows:
        raise DataError("no records", file=str(path), expected="JSON lines with chosen and rejected")
    comps = pd.DataFrame(rows, columns=["user_id", "prompt", "chosen", "rejected"])
    stem = path.name.split(".")[0]
    default = path.parent.name if path.parent.name.startswith("hh-rlhf") else f"hh-rlhf-{stem}"
    return PreferenceData(
        comparisons=comps,
        name=name or default,
        meta={"source": str(path), "pairs_differing_before_last_turn": early},
    )
