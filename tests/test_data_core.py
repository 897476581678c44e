"""Canonical data: conversions to per-person comparisons, splits, k-shot context, summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from personalign.data import POPULATION_USER, PreferenceData, kshot, kshot_all, split, split_judgments


def _ratings() -> PreferenceData:
    r = pd.DataFrame(
        {
            "user_id": ["a"] * 4 + ["b"] * 4,
            "prompt": ["p", "p", "p", "q"] * 2,
            "response": ["x", "y", "z", "w"] * 2,
            "rating": [1, 3, 3, 5, 5, 3, 1, 2],
        }
    )
    return PreferenceData(ratings=r, users=pd.DataFrame({"user_id": ["a", "b"], "age": ["30s", "60s"]}))


def test_ratings_become_pairs_within_person_and_prompt():
    d = _ratings()
    c = d.to_comparisons()
    # person a on prompt p: x=1, y=3, z=3 -> (y>x), (z>x); y=z is a tie and dropped; prompt q has one item
    a = c[c.user_id == "a"]
    assert sorted(zip(a.chosen, a.rejected)) == [("y", "x"), ("z", "x")]
    b = c[c.user_id == "b"]
    assert sorted(zip(b.chosen, b.rejected)) == [("x", "y"), ("x", "z"), ("y", "z")]
    assert not c.tie.any()
    with_ties = d.to_comparisons(include_ties=True)
    assert with_ties.tie.sum() == 1 and len(with_ties) == len(c) + 1
    # every chosen/rejected id names an item whose text is the compared text
    texts = dict(zip(d.items.item_id, d.items.text))
    assert all(texts[i] == t for i, t in zip(c.chosen_id, c.chosen))


def test_votes_and_rankings_convert():
    votes = pd.DataFrame({"user_id": ["u"] * 3, "response": ["s1", "s2", "s3"], "vote": [1, -1, 0]})
    d = PreferenceData(votes=votes)
    c = d.to_comparisons()
    assert sorted(zip(c.chosen, c.rejected)) == [("s1", "s2"), ("s1", "s3"), ("s3", "s2")]
    rk = pd.DataFrame({"user_id": ["u"], "prompt": ["p"], "responses": [["a", "b", "c", "d"]]})
    c = PreferenceData(rankings=rk).to_comparisons()
    assert len(c) == 6
    order = {"a": 0, "b": 1, "c": 2, "d": 3}
    assert all(order[x] < order[y] for x, y in zip(c.chosen, c.rejected))


def test_max_pairs_per_user_is_deterministic():
    rng = np.random.default_rng(0)
    r = pd.DataFrame(
        {"user_id": "u", "response": [f"t{i}" for i in range(30)], "rating": rng.integers(1, 6, 30)}
    )
    d = PreferenceData(ratings=r)
    c1 = d.to_comparisons(max_pairs_per_user=20, seed=3)
    c2 = d.to_comparisons(max_pairs_per_user=20, seed=3)
    assert len(c1) == 20 and c1.equals(c2)


def test_summary_and_truth_columns_hidden():
    d = _ratings()
    s = d.summary()
    assert s["persons"] == 2 and s["items"] == 4 and s["judgments"]["ratings"] == 8
    assert s["demographic_columns"] == ["age"]
    d.users["profile"] = [0, 1]
    d.meta["truth_columns"] = ["profile"]
    assert d.demographic_columns == ["age"]


def test_contested_items():
    r = pd.DataFrame(
        {
            "user_id": [str(i) for i in range(10)] * 2,
            "response": ["agreed"] * 10 + ["split"] * 10,
            "rating": [5] * 10 + [5] * 5 + [1] * 5,
        }
    )
    d = PreferenceData(ratings=r, rating_scale=(1, 5))
    c = d.contested_items()
    ids = dict(zip(d.items.text, d.items.item_id))
    assert not c[ids["agreed"]] and c[ids["split"]]


def _grid(n_users: int = 20, n_items: int = 15, seed: int = 0) -> PreferenceData:
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"item {i}", int(rng.integers(1, 6))) for u in range(n_users) for i in range(n_items)]
    r = pd.DataFrame(rows, columns=["user_id", "response", "rating"])
    return PreferenceData(ratings=r)


def test_split_cells_are_disjoint_and_deterministic():
    d = _grid()
    s = split(d, unseen_user_frac=0.25, unseen_item_frac=0.2, seed=7)
    assert s.unit == "item"
    assert set(s.seen_users).isdisjoint(s.unseen_users)
    assert len(s.unseen_users) == 5
    train_items = set(s.train.ratings.item_id)
    test_items = set(s.seen_users_unseen_items.ratings.item_id)
    assert train_items.isdisjoint(test_items) and len(test_items) == 3
    assert set(s.unseen_users_unseen_items.ratings.item_id) == test_items
    assert set(s.unseen_users_seen_items.ratings.user_id) == set(s.unseen_users)
    total = sum(len(c.ratings) for c in s.cells().values())
    assert total == len(d.ratings)
    s2 = split(d, unseen_user_frac=0.25, unseen_item_frac=0.2, seed=7)
    assert s2.unseen_users == s.unseen_users
    assert split(d, unseen_user_frac=0.25, unseen_item_frac=0.2, seed=8).unseen_users != s.unseen_users


def test_split_by_prompt_keeps_candidates_together_and_population_seen():
    c = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", POPULATION_USER] * 5,
            "prompt": [f"p{i // 4}" for i in range(20)],
            "chosen": [f"c{i}" for i in range(20)],
            "rejected": [f"r{i}" for i in range(20)],
        }
    )
    d = PreferenceData(comparisons=c)
    s = split(d, unseen_user_frac=0.34, unseen_item_frac=0.4, seed=1)
    assert s.unit == "prompt"
    assert POPULATION_USER not in s.unseen_users
    assert set(s.train.comparisons.prompt).isdisjoint(s.seen_users_unseen_items.comparisons.prompt)


def test_filter_items_needs_both_items_of_a_comparison():
    c = pd.DataFrame({"user_id": ["u", "u"], "chosen": ["a", "a"], "rejected": ["b", "c"]})
    d = PreferenceData(comparisons=c)
    ids = dict(zip(d.items.text, d.items.item_id))
    kept = d.filter_items({ids["a"], ids["b"]})
    assert list(kept.comparisons.rejected) == ["b"]


@settings(max_examples=30, deadline=None)
@given(k=st.integers(0, 12), seed=st.integers(0, 1000))
def test_kshot_all_gives_each_person_at_most_k(k, seed):
    d = _grid(6, 8, seed=1)
    c = d.to_comparisons()
    ctx, q = kshot_all(c, k, seed=seed)
    assert len(ctx) + len(q) == len(c)
    per = ctx.groupby("user_id").size()
    total = c.groupby("user_id").size()
    assert (per.reindex(total.index, fill_value=0) == np.minimum(k, total)).all()
    one_ctx, one_q = kshot(c, "u0", k, seed=seed)
    assert len(one_ctx) == min(k, (c.user_id == "u0").sum())
    assert set(one_ctx.index).isdisjoint(one_q.index)


def test_split_judgments_keeps_one_per_person():
    c = _grid(5, 6).to_comparisons()
    tr, va = split_judgments(c, 0.3, seed=0)
    assert len(tr) + len(va) == len(c)
    assert set(tr.user_id) == set(c.user_id)
    assert 0.15 < len(va) / len(c) < 0.45
