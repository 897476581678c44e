"""Real raters' unsafe-win rates on universal pairs (personalign.experiments.bounds_real_persons)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.data.core import PreferenceData
from personalign.experiments.bounds_real_persons import (
    acceptability,
    person_rewards,
    person_violations,
    rater_markdown,
    rater_section,
    universal_pairs,
    unsafe_win_counts,
)


def _items() -> pd.DataFrame:
    # two HH pairs (groups g0, g1), then a convabuse source with 2 harmful and 3 safe items
    return pd.DataFrame(
        {
            "prompt": ["p0", "p0", "p1", "p1", "", "", "", "", ""],
            "text": ["safe0", "bad0", "safe1", "bad1", "c-bad0", "c-bad1", "c-ok0", "c-ok1", "c-ok2"],
            "label": [0, 1, 0, 1, 1, 1, 0, 0, 0],
            "source": ["hh-rlhf"] * 4 + ["convabuse"] * 5,
            "group": ["g0", "g0", "g1", "g1", "c0", "c1", "c2", "c3", "c4"],
            "train": [False] * 9,
        }
    )


def test_pairs_match_hh_by_group_and_other_sources_harmful_with_safe():
    it = _items()
    p = universal_pairs(it, np.ones(len(it), bool), seed=0)
    hh = p[p["source"] == "hh-rlhf"]
    assert sorted(zip(hh["safe"], hh["harmful"])) == [(0, 1), (2, 3)]
    cv = p[p["source"] == "convabuse"]
    assert sorted(cv["harmful"]) == [4, 5] and set(cv["safe"]) <= {6, 7, 8}
    # a mask keeps pairs inside it: without g1's safe response that HH pair is gone
    m = np.ones(len(it), bool)
    m[2] = False
    assert (2, 3) not in set(zip(*universal_pairs(it, m)[["safe", "harmful"]].to_numpy().T))


def test_unsafe_wins_follow_the_policy_rule():
    pairs = pd.DataFrame({"safe": [0, 2], "harmful": [1, 3], "source": ["a", "a"]})
    # person 0 prefers the harmful item of both pairs, person 1 neither
    R = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    assert unsafe_win_counts(R, pairs).tolist() == [2, 0]
    # pair 0: both allowed (the person chooses); pair 1: both blocked (refused, counted safe)
    allowed = np.array([True, True, False, False])
    assert unsafe_win_counts(R, pairs, allowed).tolist() == [1, 0]
    # the safe item blocked and the harmful allowed: everybody gets the harmful one
    allowed = np.array([False, True, True, True])
    assert unsafe_win_counts(R, pairs, allowed).tolist() == [2, 1]
    v = person_violations(R, pairs, np.array([True, True, False, False]))
    assert v["pooled"]["worst"]["k"] == 1 and v["pooled"]["worst"]["n"] == 2
    assert v["pooled"]["refused"]["k"] == 1 and v["pooled"]["mean"] == pytest.approx(0.25)


def test_acceptability_prefers_the_less_offensive_text():
    ratings = pd.DataFrame(
        {
            "user_id": ["a", "a"],
            "prompt": ["", ""],
            "response": ["mild", "slur"],
            "rating": [1.0, 5.0],
            "weight": 1.0,
            "timestamp": np.nan,
        }
    )
    d = PreferenceData(ratings=ratings, rating_scale=(1.0, 5.0))
    c = acceptability(d).to_comparisons()
    assert c["chosen"].tolist() == ["mild"] and c["rejected"].tolist() == ["slur"]
    assert d.to_comparisons()["chosen"].tolist() == ["slur"]  # as read: higher = more offensive


def test_person_rewards_are_the_models_scores():
    from personalign.data.synthetic import generate_population
    from personalign.features import HashingEncoder, PairFeaturizer
    from personalign.models import make_model

    pop = generate_population(persons=12, comparisons_per_person=15, alpha=1.0, seed=0)
    m = make_model("lowrank", rank=2, featurizer=PairFeaturizer(HashingEncoder(32)), max_iter=20)
    m.fit(pop)
    prompts, texts = ["q", "q", "r"], ["a b", "c d", "e f"]
    persons, R = person_rewards(m, prompts, texts)
    assert R.shape == (len(persons), 3)
    for i, u in enumerate(persons):
        np.testing.assert_allclose(R[i], m.score([u] * 3, prompts, texts), atol=1e-9)


def test_rater_section_leaves_held_out_texts_out_of_training(shared_data):
    """On the real rater sets: no held-out universal text is trained on, and the policy never raises a rate."""
    from personalign.bounds.realdata import calibration_split, real_harm_items
    from personalign.features import HashingEncoder

    items = real_harm_items(shared_data)
    held = ~items["train"].to_numpy(bool)
    hi = items[held].reset_index(drop=True)
    test = {0: ~calibration_split(items, 0)[held]}
    # a policy that blocks every harmful item and passes every safe one: nobody is served a harmful item
    perfect = {"perfect": {0: hi["label"].to_numpy() == 0}}
    sec = rater_section(hi, shared_data, perfect, test, encoder=HashingEncoder(64), rank=2)
    for name, r in sec["rater_sets"].items():
        assert r["model"]["ratings_left_out"] > 0, name  # consensus items of this set are held out
        without = r["policies"]["without policy"]["seeds"][0]["pooled"]
        assert r["policies"]["perfect"]["seeds"][0]["pooled"]["worst"]["k"] == 0
        assert without["worst"]["k"] >= 0 and without["pairs"] == sec["pairs_per_seed"][0]
    assert any("Real raters" in line for line in rater_markdown(sec))


def test_markdown_says_whether_a_policy_meets_both_targets():
    pairs = pd.DataFrame({"safe": [0, 2], "harmful": [1, 3], "source": ["hh-rlhf", "hh-rlhf"]})
    R = np.array([[0.0, 1.0, 0.0, 1.0]])
    from personalign.experiments.bounds_real_persons import rater_violations

    blocks = {"blocks harm": {0: np.array([True, False, True, False])}}
    res = rater_violations({"set": R}, {0: pairs}, blocks)
    sec = {"rater_sets": {"set": {**res["set"], "model": _model_info()}}, "pairs_per_seed": {0: 2}}
    # no unsafe win, but its upper bound on 2 pairs is far above 10%: not shown to meet epsilon
    row = next(line for line in rater_markdown(sec, {"blocks harm": 0.95}, 0.9) if "blocks harm" in line)
    assert row.rstrip(" |").endswith("yes") and "95.0" in row
    row = next(line for line in rater_markdown(sec, {"blocks harm": 0.95}, 0.1) if "blocks harm" in line)
    assert row.rstrip(" |").endswith("no")


def _model_info() -> dict:
    return {"ratings": 1, "ratings_left_out": 0, "training_pairs": 1, "rank": 0, "prior_scale": 0.0}
