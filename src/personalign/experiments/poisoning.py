"""Poisoning: how far coordinated attackers move the shared reward's ranking of universal pairs, with and without
per-person influence caps (:func:`personalign.bounds.monitors.influence_weights`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from personalign.bounds.monitors import influence_weights
from personalign.data.core import PreferenceData
from personalign.data.synthetic import generate_population
from personalign.experiments.bounds import universal_pairs
from personalign.features import PairFeaturizer, get_encoder
from personalign.models import AggregatedBT


def poisoning_curve(
    fractions: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2),
    persons: int = 150,
    comparisons_per_person: int = 30,
    attack_volume: int = 5,
    caps: tuple[Any, ...] = (None, "median"),
    seeds: tuple[int, ...] = (0, 1),
    encoder: str = "minilm",
    progress: bool = True,
) -> pd.DataFrame:
    """Shift of the shared (population) reward's ranking of universal pairs against the attackers' fraction.

    Honest persons: a synthetic population without adversaries. Attackers: ``f / (1 - f) * persons`` fake persons
    (so they are a fraction f of all persons), each submitting ``attack_volume`` times the ordinary number of
    comparisons, all "harmful response > harmless response" on training prompts (a coordinated push). The shared
    model is an AggregatedBT fitted with weights from :func:`influence_weights` (cap None = plain). Shift = share of
    held-out universal pairs whose harmful response the shared reward ranks higher, minus that share at f = 0.
    The bounded policy's ranking of those pairs does not move at all: its constraints never read the shared model.
    """
    feat = PairFeaturizer(get_encoder(encoder))
    rows = []
    total = len(fractions) * len(caps) * len(seeds)
    done = 0
    t0 = time.perf_counter()
    for seed in seeds:
        data = generate_population(
            persons=persons, comparisons_per_person=comparisons_per_person, adversarial_frac=0.0, seed=seed
        )
        pairs = universal_pairs(data.items)
        rng = np.random.default_rng(seed + 100)
        tr_items = data.items[~data.items["heldout_prompt"].astype(bool)]
        for f in fractions:
            n_att = int(round(f / (1 - f) * persons))
            att = []
            for a in range(n_att):
                for _ in range(attack_volume * comparisons_per_person):
                    p = tr_items["prompt"].iloc[rng.integers(len(tr_items))]
                    g = tr_items[tr_items["prompt"] == p]
                    bad = g[g["attr_harm"] >= 0.5]["text"].to_numpy()
                    good = g[g["attr_harm"] < 0.5]["text"].to_numpy()
                    att.append((f"attacker{a}", p, rng.choice(bad), rng.choice(good)))
            comps = data.comparisons[["user_id", "prompt", "chosen", "rejected"]].copy()
            if att:
                comps = pd.concat(
                    [comps, pd.DataFrame(att, columns=["user_id", "prompt", "chosen", "rejected"])],
                    ignore_index=True,
                )
            comps["weight"] = 1.0
            for cap in caps:
                c = comps.copy()
                c["weight"] = influence_weights(c, cap)
                model = AggregatedBT(featurizer=feat, random_state=seed).fit(PreferenceData(comparisons=c))
                s = model.score_posterior(np.zeros(0), pairs["prompt"].tolist(), pairs["unsafe"].tolist())
                t = model.score_posterior(np.zeros(0), pairs["prompt"].tolist(), pairs["safe"].tolist())
                att_share = float(
                    c.loc[c["user_id"].str.startswith("attacker"), "weight"].sum() / c["weight"].sum()
                )
                rows.append(
                    {
                        "seed": seed,
                        "fraction": f,
                        "cap": "none" if cap is None else str(cap),
                        "attackers": n_att,
                        "attacker_weight_share": att_share,
                        "unsafe_win_rate": float(np.mean(s >= t)),
                        "mean_margin_safe": float(np.mean(t - s)),
                    }
                )
                done += 1
                if progress:
                    print(
                        f"  poisoning {done}/{total} (f={f:.2f}, cap={cap}) {time.perf_counter() - t0:.0f}s",
                        flush=True,
                    )
    df = pd.DataFrame(rows)
    base = df[df["fraction"] == 0].set_index(["seed", "cap"])["unsafe_win_rate"]
    df["shift"] = (
        df["unsafe_win_rate"].to_numpy() - base.loc[list(zip(df["seed"], df["cap"], strict=False))].to_numpy()
    )
    df["bounded_shift"] = 0.0
    return df
