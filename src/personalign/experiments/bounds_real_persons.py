"""Real raters' personal rewards on real universal pairs, without and with each policy.

The personal models are :class:`~personalign.models.LowRankBT` fitted on real raters' judgments of offensive text
(POPQUORN offensiveness 1-5, the toxicity study's toxic / non-toxic labels), read as preferences for the less
offensive text (:func:`acceptability`), with every text of the held-out universal items left out of their
training (:func:`rater_data`). A person's reward of an item is ``r_u = s + g^T w_u`` (:func:`person_rewards`).

Universal pairs (:func:`universal_pairs`): a safe and a harmful held-out item of one source (HH-RLHF: the two
responses of one pair; ConvAbuse and the consensus items: each harmful item with a safe item of the same source
drawn at random). A person's unsafe-win rate is the share of pairs whose harmful item they are served:

    without a policy: 1[r_u(h) > r_u(s)];  with one: 1[h allowed and (s blocked or r_u(h) > r_u(s))]

(both blocked: the policy refuses, and a refusal counts as safe). :func:`person_violations` gives the worst and
mean person, with Clopper-Pearson intervals, per source and pooled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.bounds.calibrate import Rate
from personalign.data.core import PreferenceData

# name -> (path under the shared data folder, reader format)
RATER_SETS: dict[str, tuple[str, str]] = {
    "popquorn": ("popquorn/offensiveness/raw_data.csv", "popquorn"),
    "toxicity": ("toxicity-perspective-prolific", "toxicity"),
}


def normalized_text(texts: Sequence[str] | pd.Series) -> pd.Series:
    """Texts compared as the same item: stripped, lower-cased, inner whitespace collapsed."""
    return pd.Series(list(texts), dtype=object).astype(str).str.strip().str.lower().str.split().str.join(" ")


def acceptability(data: PreferenceData) -> PreferenceData:
    """Ratings of offensiveness as preferences: ``r -> lo + hi - r`` on the rating scale ``(lo, hi)``, so that the
    less offensive of two texts a person rated is the one they prefer."""
    lo, hi = data.value_scale("ratings") or (0.0, 1.0)
    ratings = data.ratings.assign(rating=lo + hi - data.ratings["rating"].astype(float))
    return data.copy(ratings=ratings)


def rater_data(path: str | Path, fmt: str, exclude_texts: set[str]) -> tuple[PreferenceData, int]:
    """One rater set as acceptability judgments without the items whose text is in ``exclude_texts``
    (normalized, :func:`normalized_text`); also the number of rating rows left out."""
    from personalign.data import read_data

    data = read_data(str(path), format=fmt)
    keep = ~normalized_text(data.ratings["response"]).isin(exclude_texts).to_numpy()
    dropped = int((~keep).sum())
    return acceptability(data.copy(ratings=data.ratings[keep])), dropped


def rater_model(data: PreferenceData, encoder: Any, rank: int = 4, seed: int = 0) -> Any:
    """LowRankBT over ``encoder`` fitted on the raters' comparisons (its person prior scale chosen on held-out
    items, as the evaluation does)."""
    from personalign.features import PairFeaturizer
    from personalign.models import make_model

    model = make_model(
        "lowrank",
        rank=rank,
        featurizer=PairFeaturizer(encoder),
        prior_scale="auto",
        validation_split="items",
        random_state=seed,
    )
    return model.fit(data.as_comparison_data(seed=seed))


def person_rewards(model: Any, prompts: Sequence[str], texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The trained persons and their rewards ``(persons, items)`` of the (prompt, text) rows."""
    persons = sorted(model.train_counts_)
    s, g = model.basis(list(prompts), list(texts))
    if g.shape[1] == 0:
        return persons, np.tile(s, (len(persons), 1))
    W = np.stack([model.weights_for(u) for u in persons])
    return persons, s[None, :] + W @ g.T


def universal_pairs(items: pd.DataFrame, mask: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Pairs (``safe``, ``harmful``: row positions in ``items``) among the ``mask`` rows: HH-RLHF pairs by their
    group; other sources: each harmful item with a safe item of its source drawn at random (seed ``seed``)."""
    rng = np.random.default_rng(seed)
    y = items["label"].to_numpy(int)
    src = items["source"].to_numpy()
    grp = items["group"].to_numpy()
    rows: list[tuple[int, int, str]] = []
    for s in pd.unique(src[mask]):
        m = mask & (src == s)
        if s == "hh-rlhf":
            safe = {g: i for i in np.flatnonzero(m & (y == 0)) for g in [grp[i]]}
            rows += [(safe[grp[i]], int(i), s) for i in np.flatnonzero(m & (y == 1)) if grp[i] in safe]
            continue
        harmful, safe_pool = np.flatnonzero(m & (y == 1)), np.flatnonzero(m & (y == 0))
        if len(harmful) and len(safe_pool):
            rows += [(int(j), int(i), s) for i, j in zip(harmful, rng.choice(safe_pool, len(harmful)))]
    return pd.DataFrame(rows, columns=["safe", "harmful", "source"])


def unsafe_win_counts(
    rewards: np.ndarray, pairs: pd.DataFrame, allowed: np.ndarray | None = None
) -> np.ndarray:
    """Per person, how many of ``pairs`` serve the harmful item (module docstring); ``allowed``: per item, the
    policy lets it through (None: no policy)."""
    s, h = pairs["safe"].to_numpy(int), pairs["harmful"].to_numpy(int)
    prefers_h = rewards[:, h] > rewards[:, s]
    if allowed is None:
        return prefers_h.sum(1)
    ok_h, ok_s = allowed[h], allowed[s]
    return (ok_h[None, :] & (~ok_s[None, :] | prefers_h)).sum(1)


def person_violations(
    rewards: np.ndarray,
    pairs: pd.DataFrame,
    allowed: np.ndarray | None,
    conf: float = 0.95,
) -> dict[str, Any]:
    """Worst and mean person's unsafe-win rate, pooled and per source (the worst person's count with its
    Clopper-Pearson interval), and the share of pairs the policy refuses."""
    out: dict[str, Any] = {}
    for key in ("pooled", *sorted(pairs["source"].unique())):
        p = pairs if key == "pooled" else pairs[pairs["source"] == key]
        n = len(p)
        if n == 0:
            continue
        wins = unsafe_win_counts(rewards, p, allowed)
        worst = int(np.argmax(wins))
        entry = {
            "pairs": n,
            "worst": Rate.of(int(wins[worst]), n, conf).to_dict(),
            "worst_person_index": worst,
            "mean": float(wins.mean() / n),
            "persons_above_half": int(np.sum(wins > n / 2)),
        }
        if allowed is not None:
            s, h = p["safe"].to_numpy(int), p["harmful"].to_numpy(int)
            entry["refused"] = Rate.of(int(np.sum(~allowed[s] & ~allowed[h])), n, conf).to_dict()
        out[key] = entry
    return out


def rater_violations(
    rewards_by_set: Mapping[str, np.ndarray],
    pairs_by_seed: Mapping[int, pd.DataFrame],
    allowed_by_policy: Mapping[str, Mapping[int, np.ndarray]],
    conf: float = 0.95,
) -> dict[str, Any]:
    """For each rater set, seed (its test pairs) and policy (None = without): :func:`person_violations`; and per
    rater set and policy the mean over seeds of the pooled worst and mean person."""
    res: dict[str, Any] = {}
    for name, R in rewards_by_set.items():
        per_policy: dict[str, Any] = {}
        for pol, masks in {"without policy": None, **allowed_by_policy}.items():
            seeds = []
            for seed, pairs in pairs_by_seed.items():
                allowed = None if masks is None else masks[seed]
                seeds.append({"seed": seed, **person_violations(R, pairs, allowed, conf)})
            per_policy[pol] = {
                "seeds": seeds,
                "mean_worst": float(np.mean([r["pooled"]["worst"]["rate"] for r in seeds])),
                "mean_worst_hi": float(np.mean([r["pooled"]["worst"]["hi"] for r in seeds])),
                "mean_person": float(np.mean([r["pooled"]["mean"] for r in seeds])),
            }
        res[name] = {"persons": int(R.shape[0]), "policies": per_policy}
    return res
