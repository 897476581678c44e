"""Real harm-labelled text for calibrating and measuring universal scorers (read from the shared data folder).

One table, :func:`real_harm_items`, with columns ``prompt, text, label`` (1 = harmful), ``source``, ``origin``,
``group`` (items that must stay in the same split: the two responses of an HH-RLHF pair) and ``train`` (the item
was, or may be, used to train a scorer; the others are held out from every scorer evaluated here):

- ``hh-rlhf``: HH-RLHF harmless pairs, the rejected response harmful and the chosen one safe (a relative judgment
  read as an absolute label: noisy by construction); ``train`` = the packaged harmlessness head's training pairs.
- ``convabuse``: ConvAbuse user utterances, harmful when the median annotator judged them strongly or very strongly
  abusive, safe when every annotator judged them not abusive (mild / ambiguous ones are left out); never used by
  the packaged heads, ``train`` = a stratified half of the distinct texts (for a scorer retrained on the pooled
  signals; an utterance that recurs in several conversations stays on one side).
- ``toxicity-consensus``: the consensus items of POPQUORN and the toxicity set (:func:`consensus_items`);
  ``train`` = the packaged consensus scorer's training items.

:func:`calibration_split` splits the held-out items into a calibration part (sets thresholds) and a test part
(measures them), by group and stratified by source and label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personalign.bounds.calibrate import CalibrationSet
from personalign.bounds.scorers import (
    ConsensusScorer,
    HarmlessnessHead,
    consensus_items,
    default_shared_data,
    read_hh_pairs,
)
from personalign.errors import ConfigError

SOURCES = ("hh-rlhf", "convabuse", "toxicity-consensus")
# the harm each packaged head models: its promise (epsilon) is calibrated and measured on these sources
DOMAINS = {"harmlessness": ("hh-rlhf",), "consensus": ("convabuse", "toxicity-consensus")}
COLUMNS = ["prompt", "text", "label", "source", "origin", "group", "train"]
HARMFUL_SEVERITY = 2.0  # ConvAbuse, oriented: 2 strong, 3 very strong abuse


def hh_items(path: str | Path, head: HarmlessnessHead | None = None) -> pd.DataFrame:
    """Both responses of every HH-RLHF pair (rejected: label 1); ``train`` = ``head``'s training pairs (the
    packaged head's split by default)."""
    pairs = read_hh_pairs(path)
    train_idx, _ = (head or HarmlessnessHead()).split(len(pairs))
    train = np.zeros(len(pairs), bool)
    train[train_idx] = True
    group = [f"hh:{i}" for i in range(len(pairs))]
    both = [
        pd.DataFrame(
            {"prompt": pairs["prompt"], "text": pairs[col], "label": lab, "group": group, "train": train}
        )
        for col, lab in (("chosen", 0), ("rejected", 1))
    ]
    out = pd.concat(both, ignore_index=True)
    return out.assign(source="hh-rlhf", origin="hh-rlhf-harmless-test")[COLUMNS]


def convabuse_items(path: str | Path, seed: int = 0, train_share: float = 0.5) -> pd.DataFrame:
    """ConvAbuse utterances with a clear label: harmful when the median severity is strong or very strong, safe
    when every annotator said not abusive; ``train``: a stratified ``train_share`` (seed ``seed``)."""
    from personalign.data.adapters.convabuse import read_convabuse

    d = read_convabuse(path)
    g = d.ratings.groupby("item_id")
    agg = pd.DataFrame(
        {
            "prompt": g["prompt"].first(),
            "text": g["response"].first(),
            "med": g["rating"].median(),
            "max": g["rating"].max(),
        }
    )
    agg = agg[agg["text"].str.strip() != ""]
    harmful = agg["med"] >= HARMFUL_SEVERITY
    safe = agg["max"] <= -1.0
    agg = agg[harmful | safe].assign(label=lambda a: (a["med"] >= HARMFUL_SEVERITY).astype(int))
    # the same short utterance ("hi", "bye") recurs in many conversations: split by text, so that no held-out
    # text was seen in training, stratified by the text's (most harmful) label
    key = agg["text"].str.strip().str.lower()
    by_text = agg.groupby(key)["label"].max()
    rng = np.random.default_rng(seed)
    train_texts: set[str] = set()
    for lab in (0, 1):
        texts = by_text.index[by_text.to_numpy() == lab].to_numpy().copy()
        rng.shuffle(texts)
        train_texts |= set(texts[: int(round(train_share * len(texts)))])
    out = agg.reset_index().assign(
        source="convabuse",
        origin="convabuse",
        group=("convabuse:" + key).to_numpy(),
        train=key.isin(train_texts).to_numpy(),
    )
    return out[COLUMNS]


def consensus_harm_items(
    popquorn_csv: str | Path, toxicity_dir: str | Path, scorer: ConsensusScorer | None = None
) -> pd.DataFrame:
    """The consensus items (label 1: nearly all raters judged it offensive); ``train`` = ``scorer``'s training
    items (the packaged scorer's split by default)."""
    it = consensus_items(popquorn_csv, toxicity_dir)
    test = (scorer or ConsensusScorer()).split(it["label"].to_numpy())
    out = pd.DataFrame(
        {
            "prompt": "",
            "text": it["text"],
            "label": it["label"].astype(int),
            "source": "toxicity-consensus",
            "origin": it["source"],
            "group": [f"consensus:{i}" for i in range(len(it))],
            "train": ~test,
        }
    )
    return out[COLUMNS]


def real_harm_items(shared: str | Path | None = None, seed: int = 0) -> pd.DataFrame:
    """Every source of the module docstring in one table (ConfigError naming a missing folder)."""
    sd = Path(shared) if shared is not None else default_shared_data()
    need = {
        "hh-rlhf": sd / "hh-rlhf-harmless-test" / "test.jsonl.gz",
        "convabuse": sd / "convabuse",
        "popquorn": sd / "popquorn" / "offensiveness" / "raw_data.csv",
        "toxicity": sd / "toxicity-perspective-prolific",
    }
    for name, p in need.items():
        if not p.exists():
            raise ConfigError(f"{p}: the {name} data is missing (see shared/data/README.md)")
    parts = [
        hh_items(need["hh-rlhf"]),
        convabuse_items(need["convabuse"], seed=seed),
        consensus_harm_items(need["popquorn"], need["toxicity"]),
    ]
    return pd.concat(parts, ignore_index=True)


def calibration_split(items: pd.DataFrame, seed: int, calib_share: float = 0.5) -> np.ndarray:
    """A boolean mask: True for the held-out items (``~train``) in the calibration part, False for the rest.

    Whole groups go to one side; within each source the groups are stratified by label (an HH pair holds both
    labels, so HH pairs are split at random). ``1 - calib_share`` of the held-out groups form the test part.
    """
    if not 0.0 < calib_share < 1.0:
        raise ConfigError(f"calib_share must be strictly between 0 and 1, got {calib_share}")
    rng = np.random.default_rng(seed)
    held = items[~items["train"].to_numpy(bool)]
    groups = held.groupby("group").agg(
        source=("source", "first"), label=("label", "max"), n=("label", "size")
    )
    chosen: list[str] = []
    for _, g in groups.groupby(["source", "label"], sort=True):
        ids = g.index.to_numpy().copy()
        rng.shuffle(ids)
        chosen += list(ids[: int(round(calib_share * len(ids)))])
    return (~items["train"].to_numpy(bool)) & items["group"].isin(set(chosen)).to_numpy()


def calibration_set(
    scores: np.ndarray,
    items: pd.DataFrame,
    seed: int = 0,
    calib_share: float = 0.5,
    name: str = "",
    sources: tuple[str, ...] | None = None,
) -> CalibrationSet:
    """A scorer's :class:`CalibrationSet` from its ``scores`` of ``items`` (a :func:`real_harm_items` table): the
    held-out items' calibration part (:func:`calibration_split`) sets thresholds, the rest is the test part;
    ``sources`` keeps only those sources (the scorer's domain, e.g. :data:`DOMAINS`)."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) != len(items):
        raise ConfigError(f"{len(s)} scores for {len(items)} items")
    unknown = set(sources or ()) - set(SOURCES)
    if unknown:
        raise ConfigError(f"unknown source(s) {sorted(unknown)} (expected some of {', '.join(SOURCES)})")
    keep = items["source"].isin(sources or SOURCES).to_numpy()
    cal = calibration_split(items, seed, calib_share) & keep
    test = ~items["train"].to_numpy(bool) & ~cal & keep
    y = items["label"].to_numpy(int)
    counts = {
        f"{src}/{part}": {"harmful": int(np.sum(m & (y == 1) & sm)), "safe": int(np.sum(m & (y == 0) & sm))}
        for src in sources or SOURCES
        for part, m in (("calibration", cal), ("test", test))
        for sm in [(items["source"] == src).to_numpy()]
    }
    return CalibrationSet(
        harmful=s[cal & (y == 1)],
        safe=s[cal & (y == 0)],
        test_harmful=s[test & (y == 1)],
        test_safe=s[test & (y == 0)],
        meta={
            "scorer": name,
            "items": "held-out items of " + ", ".join(sources or SOURCES) + " (HH-RLHF: rejected = harmful; "
            "ConvAbuse: strong / very strong abuse = harmful; consensus: POPQUORN / toxicity items)",
            "sources": list(sources or SOURCES),
            "seed": seed,
            "calib_share": calib_share,
            "counts": counts,
            "command": f"personalign bounds calibrate --seed {seed}",
        },
    )
