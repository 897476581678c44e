"""The one pair rule, the one pointwise table and the one agreement rule, and every caller using them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalign.audit.heterogeneity import contested_items as audit_contested
from personalign.audit.representation import person_fit
from personalign.audit.table import judgments_from_data, pairs_from_judgments
from personalign.data import PreferenceData
from personalign.data.pairs import per_person_accuracy, pointwise_pairs
from personalign.evaluate import metrics as M
from personalign.evaluate.protocol import judgment_pairs
from personalign.serve.state import all_pairs


def _table(rows, **extra):
    """(user, prompt, text, value) rows as a pointwise table, the text naming the item."""
    df = pd.DataFrame(rows, columns=["user_id", "prompt", "response", "rating"])
    return df.assign(item_id=df["response"], **extra)


def test_pair_rule_weights_time_items_and_kinds():
    t = _table(
        [("u", "p", "a", 3.0), ("u", "p", "b", 1.0), ("u", "p", "a", 1.0), ("u", "q", "c", 5.0)],
        weight=[1.0, 0.5, 2.0, 1.0],
        timestamp=[10.0, 20.0, 30.0, np.nan],
    )
    c = pointwise_pairs(t)
    # a (3) > b (1); the repeat of a never pairs with a itself; its 1 ties with b; prompt q has one item
    assert c[["chosen", "rejected"]].values.tolist() == [["a", "b"]]
    assert c["weight"].tolist() == [0.5] and c["timestamp"].tolist() == [20.0]  # weaker judgment, later time
    ties = pointwise_pairs(t, include_ties=True)
    assert ties["tie"].tolist() == [False, True] and ties.iloc[1][["chosen", "rejected"]].tolist() == [
        "b",
        "a",
    ]
    # a rating and a vote of the same person and prompt are on different scales: no pair
    mixed = pd.concat([t.assign(kind="ratings"), _table([("u", "p", "v", 1.0)]).assign(kind="votes")])
    assert set(pointwise_pairs(mixed)["rejected"]) == {"b"}


def test_cap_is_per_person_across_prompts():
    rows = [("u", f"p{k}", f"t{k}{i}", float(i)) for k in range(3) for i in range(4)]  # 3 prompts x 6 pairs
    c = pointwise_pairs(_table(rows), max_pairs_per_user=10, rng=np.random.default_rng(1))
    assert len(c) == 10 and c["prompt"].nunique() >= 2
    again = pointwise_pairs(_table(rows), max_pairs_per_user=10, rng=np.random.default_rng(1))
    assert c.equals(again)
    d = PreferenceData(ratings=_table(rows).drop(columns=["item_id"]))
    assert len(d.to_comparisons(max_pairs_per_user=10)) == 10  # per person, not per (person, prompt)


def test_pointwise_table_scales_and_passes():
    d = PreferenceData(
        ratings=pd.DataFrame({"user_id": ["a"], "response": ["x"], "rating": [4]}),
        votes=pd.DataFrame({"user_id": ["a", "a", "a"], "response": ["s1", "s2", "s3"], "vote": [1, 0, -1]}),
        rating_scale=(1, 5),
    )
    pt = d.pointwise()
    assert pt["kind"].tolist() == ["ratings", "votes", "votes", "votes"]
    assert pt["rating"].tolist() == [4.0, 1.0, 0.0, -1.0]
    assert d.value_scale("votes") == (-1.0, 1.0) and d.value_scale("ratings") == (1, 5)
    assert d.pointwise(passes=False)["rating"].tolist() == [4.0, 1.0, -1.0]
    assert d.pointwise("ratings")["kind"].unique().tolist() == ["ratings"]
    # a pass is the middle of the 3-point scale for to_comparisons, an abstention with passes=False
    assert len(d.to_comparisons()) == 3 and len(d.to_comparisons(passes=False)) == 1


def _grid(n_users=12, n_items=8, seed=0, scale=5):
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{u}", "", f"item {i}", float(rng.integers(1, scale + 1)))
        for u in range(n_users)
        for i in range(n_items)
    ]
    return PreferenceData(ratings=pd.DataFrame(rows, columns=["user_id", "prompt", "response", "rating"]))


def test_every_caller_gets_the_same_pairs():
    d = _grid()
    rng_ref = np.random.default_rng(0)
    ref = pointwise_pairs(d.pointwise(passes=False), max_pairs_per_user=15, rng=rng_ref)
    ev = judgment_pairs(d, 15, np.random.default_rng(0))
    assert ev[["user_id", "chosen_id", "rejected_id"]].equals(ref[["user_id", "chosen_id", "rejected_id"]])
    full = d.to_comparisons()
    key = lambda df: sorted(zip(df["user_id"], df["chosen_id"], df["rejected_id"]))  # noqa: E731
    assert key(full) == key(pointwise_pairs(d.pointwise()))
    # the audit's pairs are the same pairs on its integer codes
    j = judgments_from_data(d)
    p = pairs_from_judgments(j)
    audit = sorted((j.users[u], j.items[a], j.items[b]) for u, a, b in zip(p.u, p.a, p.b))
    assert audit == key(full)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("pq"), st.sampled_from("abcd"), st.integers(1, 3), st.integers(1, 2)),
        min_size=0,
        max_size=25,
    )
)
def test_the_service_folds_the_same_pairs_one_judgment_at_a_time(rows):
    class Row:
        kind = "rating"

        def __init__(self, prompt, response, rating, weight):
            self.prompt, self.response, self.rating, self.weight = (
                prompt,
                response,
                float(rating),
                float(weight),
            )

    online = all_pairs("u", [Row(*r) for r in rows])
    t = pd.DataFrame(rows, columns=["prompt", "response", "rating", "weight"]).assign(user_id="u")
    batch = pointwise_pairs(t.assign(item_id=t["response"])) if len(t) else online
    key = lambda df: sorted(zip(df["prompt"], df["chosen"], df["rejected"], df["weight"]))  # noqa: E731
    assert key(online) == key(batch)


def test_contested_share_is_one_rule_for_inspect_and_audit():
    # item A: 3 say 5, 3 say 1, 4 say 3 (the midpoint: no side) -> contested (3 vs 3); item B: 4 say 5, 1 says 1,
    # 5 say 3 -> 4 of 5 on a side agree (80%): consensus; item C: two sided judges only -> not counted
    a = [5, 5, 5, 1, 1, 1, 3, 3, 3, 3]
    b = [5, 5, 5, 5, 1, 3, 3, 3, 3, 3]
    c = [5, 1, 3, 3, 3, 3, 3, 3, 3, 3]
    rows = [
        (f"u{k}", "", name, float(v))
        for name, vals in (("A", a), ("B", b), ("C", c))
        for k, v in enumerate(vals)
    ]
    d = PreferenceData(
        ratings=pd.DataFrame(rows, columns=["user_id", "prompt", "response", "rating"]), rating_scale=(1, 5)
    )
    ids = dict(zip(d.items["text"], d.items["item_id"]))
    got = d.contested_items()
    assert got.to_dict() == {ids["A"]: True, ids["B"]: False}
    audit = audit_contested(judgments_from_data(d))
    assert audit["contested_share"] == d.summary()["contested_share"] == 0.5
    assert audit["items_considered"] == d.summary()["items_with_3plus_judges"] == 2


def test_repeats_count_once_and_a_named_neutral_rating_wins():
    # u0 judges X five times: one person, one answer. Above the midpoint 2 of (0, 4): u0, u2, u3; below: u1, so
    # 3 of 4 (75%) agree: contested (counting each of u0's judgments would give 7 of 8, a consensus)
    rows = [("u0", "", "X", 4.0)] * 5 + [("u1", "", "X", 0.0), ("u2", "", "X", 3.0), ("u3", "", "X", 3.0)]
    d = PreferenceData(
        ratings=pd.DataFrame(rows, columns=["user_id", "prompt", "response", "rating"]), rating_scale=(0, 4)
    )
    assert d.contested_items().tolist() == [True]
    # a reader that names 0 as the neutral rating (ConvAbuse's "ambiguous"): u1 takes no side, 3 of 3 agree
    d.meta["neutral_rating"] = 0.0
    assert d.neutral_value() == 0.0 and d.contested_items().tolist() == [False]


def test_votes_passes_take_no_side():
    # 4 agree, 1 disagrees: 80% on a side, a consensus; were the 2 passes an answer, 4 of 7 would be contested
    votes = pd.DataFrame(
        {"user_id": [f"u{k}" for k in range(7)], "response": "s", "vote": [1, 1, 1, 1, 0, 0, -1]}
    )
    assert PreferenceData(votes=votes).contested_items().tolist() == [False]


def test_person_fit_is_the_per_person_accuracy():
    d = _grid(6, 6, seed=3)
    j = judgments_from_data(d)
    pairs = pairs_from_judgments(j)
    theta = np.random.default_rng(0).normal(size=len(j.items))
    theta[:2] = 0.0  # a tie counts 1/2 in both
    acc, n = person_fit(pairs, item_scores=theta)
    sa, sb = theta[pairs.a], theta[pairs.b]
    p = np.where(sa > sb, 1.0, np.where(sa < sb, 0.0, 0.5))
    ref = M.per_person_accuracy(pairs.u, p)
    assert M.per_person_accuracy is per_person_accuracy
    assert np.allclose(acc[n > 0], ref.reindex([str(k) for k in np.flatnonzero(n > 0)]).to_numpy())
    assert acc[n > 0] == pytest.approx(
        [float(np.mean(((sa > sb) + 0.5 * (sa == sb))[pairs.u == k])) for k in np.flatnonzero(n > 0)]
    )
