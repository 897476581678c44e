"""The audit of comparison and ranking data: the unit is the item pair; agreement, contested share, variance share,
groups and the structure test are defined there; --model, --max-items and --min-judgments apply."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.audit.pipeline import run_audit
from personalign.audit.structure import spearman_brown, split_half_reliability
from personalign.audit.table import comparison_table, judgments_from_data, judgments_from_pairs
from personalign.data.core import PreferenceData
from personalign.data.pairs import pair_outcomes, ranking_pairs
from personalign.data.pointwise import item_agreement


def camps(n_per: int = 20, n_items: int = 10, seed: int = 0, flip: float = 0.05) -> PreferenceData:
    """Two camps ranking the same items in opposite orders (a few pairs flipped at random), with a users table."""
    rng = np.random.default_rng(seed)
    order = [f"item {i}" for i in range(n_items)]
    rows, users = [], []
    for camp in ("A", "B"):
        for k in range(n_per):
            uid = f"{camp}{k:02d}"
            users.append({"user_id": uid, "camp": camp})
            base = order if camp == "A" else order[::-1]
            resp = list(base)
            for _ in range(int(flip * n_items * 4)):  # a little personal noise
                a = rng.integers(n_items - 1)
                resp[a], resp[a + 1] = resp[a + 1], resp[a]
            rows.append({"user_id": uid, "prompt": "", "responses": resp})
    return PreferenceData(rankings=pd.DataFrame(rows), users=pd.DataFrame(users), name="camps")


def coin_flips(n_persons: int = 60, n_items: int = 10, seed: int = 0) -> PreferenceData:
    """Every person compares every pair once, by a coin: no person is consistent, nobody agrees."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_persons):
        for a in range(n_items):
            for b in range(a + 1, n_items):
                x, y = (f"item {a}", f"item {b}") if rng.random() < 0.5 else (f"item {b}", f"item {a}")
                rows.append({"user_id": f"u{u:02d}", "prompt": "", "chosen": x, "rejected": y})
    return PreferenceData(comparisons=pd.DataFrame(rows), name="coins")


def test_rankings_are_audited_on_item_pairs():
    data = camps()
    res = run_audit(data, group_by=["camp"], n_permutations=99)
    assert res["kind"] == "rankings" and res["unit"] == "item pair"
    assert res["pairs"] == 40 * 45
    h = res["headline"]
    assert (
        h["alpha"] is not None
        and h["contested_share"] is not None
        and h["person_share_of_variance"] is not None
    )
    # opposite camps of equal size: every pair is contested, and agreement is far below chance-corrected 1
    assert h["contested_share"] == 1.0 and h["alpha"] < 0.1
    # the camp explains the answers: strong personal structure, camp B opposite everyone's majority
    assert h["structure_verdict"] == "strong" and res["structure"]["unit"] == "item pair"
    g = res["groups"]["camp"]["groups"]
    assert g["A"]["opposite_majority_share"] + g["B"]["opposite_majority_share"] > 0.9
    assert res["glossary"]["unit"].startswith("An unordered item pair")


def test_coin_flips_show_no_structure_and_no_agreement():
    # exchangeable persons: the permutation p-value is uniform, so "detected" is rare (5% per run at most)
    detected = 0
    for seed in range(5):
        res = run_audit(coin_flips(seed=seed), n_permutations=19, seed=seed)
        h = res["headline"]
        assert abs(h["alpha"]) < 0.05
        detected += h["structure_verdict"] != "none detected"
        rel = res["structure"]["reliability"]
        assert 0.0 <= rel["spearman_brown"] <= 1.0
    assert detected <= 1


def test_unanimous_pairs_agree_fully():
    rows = [{"user_id": f"u{u}", "prompt": "", "responses": ["a", "b", "c", "d"]} for u in range(8)]
    res = run_audit(PreferenceData(rankings=pd.DataFrame(rows)), n_permutations=9)
    assert res["headline"]["alpha"] == pytest.approx(1.0)
    assert res["headline"]["contested_share"] == 0.0
    v = res["heterogeneity"]["variance"]
    assert v["item_share_raw"] == pytest.approx(
        1.0
    )  # the pair explains every outcome (about 0, not the mean)


def test_contested_pairs_follow_the_data_layers_rule():
    data = camps(n_per=6, seed=3, flip=0.3)
    res = run_audit(data, n_permutations=9)
    c = comparison_table(data)
    a = item_agreement(pair_outcomes(c), 0.0)
    a = a[a["judges"] >= 3]
    assert res["heterogeneity"]["contested"]["contested_share"] == pytest.approx(
        (a["top_share"] < 0.8).mean()
    )


def test_pair_orientation_follows_the_majority():
    c = ranking_pairs(
        pd.DataFrame(
            {"user_id": ["p", "q", "r"], "prompt": "", "responses": [["b", "a"]] * 2 + [["a", "b"]]}
        ).assign(weight=1.0, timestamp=np.nan)
    )
    j, text = judgments_from_pairs(c, ["p", "q", "r"], {})
    assert sorted(j.y.tolist()) == [-1.0, 1.0, 1.0]  # p and q with the majority, r against it
    (label,) = text.values()
    assert label.startswith(c["chosen_id"].iloc[0])  # "b > a": the majority's choice first


def test_max_items_and_min_judgments_apply_to_comparisons():
    data = camps()
    full = run_audit(data, n_permutations=0)
    few = run_audit(data, max_items=4, n_permutations=0)
    assert few["items"] == 4 and few["pairs"] == 40 * 6 and few["selection"]["before"]["items"] == 10
    extra = pd.DataFrame([{"user_id": "lone", "prompt": "", "chosen": "item 0", "rejected": "item 1"}])
    more = PreferenceData(comparisons=pd.concat([comparison_table(data), extra], ignore_index=True))
    assert run_audit(more, n_permutations=0)["persons"] == 41
    assert run_audit(more, min_judgments=2, n_permutations=0)["persons"] == 40
    assert "structure test skipped (--permutations 0)" in full["notes"]


def test_model_is_honoured_on_comparison_data(tmp_path):
    from personalign.features import get_encoder
    from personalign.features.pairs import PairFeaturizer
    from personalign.models import make_model

    data = camps()
    model = make_model(
        "lowrank", rank=2, max_iter=60, featurizer=PairFeaturizer(get_encoder("hashing", cache=False))
    )
    model.fit(data.as_comparison_data()).save_pretrained(tmp_path / "m")
    rep = run_audit(data, group_by=["camp"], model_dir=tmp_path / "m", n_permutations=0)["representation"]
    assert rep["personalized"]["model"] == "LowRankBT"
    # half the persons are fit at ~0 by one reward; the personal model serves both camps
    assert rep["change"]["mean_gain"] > 0.3


def test_spearman_brown_stays_in_range():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(-0.7) == 0.0 and spearman_brown(0.0) == 0.0
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6))) for u in range(40) for i in range(12)]
    j = judgments_from_data(
        PreferenceData(
            ratings=pd.DataFrame(rows, columns=["user_id", "response", "rating"]).assign(prompt=""),
            rating_scale=(1.0, 5.0),
        )
    )
    rel = split_half_reliability(j, j.y, seed=0)
    assert 0.0 <= rel["spearman_brown"] <= 1.0 and "r <= 0" in rel["spearman_brown_rule"]
    if rel["split_half_r"] <= 0:
        assert rel["spearman_brown"] == 0.0
