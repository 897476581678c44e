"""Pointwise evaluation: a planted personal threshold is credited as personal gain; none is credited without one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.data import PreferenceData
from personalign.evaluate.pointwise import (
    PointwiseConfig,
    evaluate_pointwise,
    paired_interval,
    pointwise_markdown,
    seed_notes,
    split_judgments,
)
from personalign.features import HashingEncoder, PairFeaturizer


def _labels(personal: bool, seed: int = 0, persons: int = 60, items: int = 60) -> PreferenceData:
    """Binary labels: item severity s_i, person threshold t_u (spread only when ``personal``); y = s_i > t_u."""
    rng = np.random.default_rng(seed)
    severity = rng.normal(size=items)
    thresholds = rng.normal(scale=1.0 if personal else 0.0, size=persons)
    rows = []
    for u in range(persons):
        for i in rng.choice(items, size=40, replace=False):
            p = 1 / (1 + np.exp(-4 * (severity[i] - thresholds[u])))
            rows.append((f"p{u}", f"comment number {i} with words w{i} v{i % 7}", float(rng.random() < p)))
    r = pd.DataFrame(rows, columns=["user_id", "response", "rating"])
    return PreferenceData(ratings=r, rating_scale=(0, 1), name="planted")


def _run(data: PreferenceData) -> dict:
    feat = PairFeaturizer(HashingEncoder(dim=64), mode="response")
    return evaluate_pointwise(data, PointwiseConfig(seeds=3, rank=0), featurizer=feat)


def test_planted_thresholds_give_personal_gain_in_collaborative_cell():
    res = _run(_labels(personal=True))
    cs = res["summary"]["collaborative"]
    gain = cs["personal_gain_accuracy"]
    assert gain["mean"] > 0.03, gain
    # crowd + offset uses the same personal signal, so it beats the plain crowd too
    assert cs["offset_gain_over_crowd"]["mean"] > 0.03
    md = pointwise_markdown(res)
    assert "personal gain" in md and "collaborative" in md


def test_no_personal_signal_no_credit():
    res = _run(_labels(personal=False, seed=1))
    gain = res["summary"]["collaborative"]["personal_gain_accuracy"]
    assert abs(gain["mean"]) < 0.03, gain


def test_paired_interval():
    iv = paired_interval(np.array([0.01, 0.02, 0.03]))
    assert iv["lo"] < 0.02 < iv["hi"] and abs(iv["mean"] - 0.02) < 1e-12


def test_an_empty_cell_says_why_in_json_and_markdown():
    feat = PairFeaturizer(HashingEncoder(dim=16), mode="response")
    # two raters only: no item has the 3 other judges a collaborative test judgment needs
    data = _labels(personal=True, persons=2, items=40)
    res = evaluate_pointwise(data, PointwiseConfig(seeds=1, rank=0), featurizer=feat)
    assert "collaborative" not in res["summary"] and "unseen_items" in res["summary"]
    why = res["notes"]["collaborative"]
    assert "judged by >= 4 persons" in why and "unseen_items" not in res["notes"]
    md = pointwise_markdown(res)
    assert f"_this cell is empty: {why}_" in md and "## unseen items" in md
    n = res["per_seed"][0]["unseen_items"]["n"]
    assert f"- test judgments per seed: {n:,}-{n:,} (mean {n:,}), from 2 persons" in md


def test_split_notes_name_the_reason_and_the_seeds():
    t = _labels(personal=True, persons=6, items=40).pointwise("ratings")
    t["key"] = t["response"]
    *_, notes = split_judgments(t, PointwiseConfig(unseen_item_frac=0.0, collab_frac=0.0), 0)
    assert "rounds to 0" in notes["unseen_items"] and "collab_frac is 0" in notes["collaborative"]
    train, collab, unseen, notes = split_judgments(t, PointwiseConfig(), 0)
    assert len(collab) and len(unseen) and notes == {}
    rows = [{"seed": 0, "notes": {}}, {"seed": 1, "notes": {"collaborative": "why"}}]
    assert seed_notes(rows) == {"collaborative": "why (seeds 1)"}
    assert seed_notes(rows[1:]) == {"collaborative": "why"}
