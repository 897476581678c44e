"""Pointwise personal judgments: ordinal logistic with personal cut-points/sensitivity, and the crowd+offset reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.data.core import PreferenceData
from personalign.errors import DataError
from personalign.features import PairFeaturizer, PrecomputedEncoder
from personalign.models import CrowdOffsetReference, OrdinalLowRank, load_model, make_model


def planted_labels(n_users=80, n_items=120, per_user=40, d=5, seed=0, levels=2):
    """Shared latent reward + a personal threshold offset b_u (and a personal direction); labels by cut-points."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_items, d)).astype(np.float32)
    mu = rng.normal(size=d)
    v = rng.normal(size=d)
    b = rng.normal(0, 1.5, size=n_users)  # personal threshold: what "offensive" means to this person
    w = rng.normal(0, 1.0, size=n_users)
    texts = [f"x{i}" for i in range(n_items)]
    cuts = np.linspace(-1.5, 1.5, levels - 1)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False)
        eta = X[items] @ mu + w[u] * (X[items] @ v) - b[u] + rng.logistic(size=per_user)
        y = (eta[:, None] > cuts[None, :]).sum(1)
        rows += [(f"p{u}", "", texts[i], float(lab)) for i, lab in zip(items, y)]
    df = pd.DataFrame(rows, columns=["user_id", "prompt", "response", "rating"])
    feat = PairFeaturizer(PrecomputedEncoder((texts, X)), mode="response")
    return df, feat


def split(df: pd.DataFrame, frac=0.25, seed=0):
    rng = np.random.default_rng(seed)
    test = rng.random(len(df)) < frac
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


@pytest.fixture(scope="module")
def binary():
    df, feat = planted_labels()
    tr, te = split(df)
    personal = OrdinalLowRank(rank=1, featurizer=feat, random_state=0).fit(PreferenceData(ratings=tr))
    shared = OrdinalLowRank(rank=0, personal_cuts=False, personal_scale=False, featurizer=feat).fit(tr)
    return tr, te, feat, personal, shared


def test_personal_thresholds_beat_the_shared_model(binary):
    tr, te, _, personal, shared = binary
    y = te["rating"].to_numpy()
    acc_p = np.mean(personal.predict(te) == y)
    acc_s = np.mean(shared.predict(te) == y)
    assert acc_p > acc_s + 0.05
    P = personal.predict_proba(te)
    assert P.shape == (len(te), 2)
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-9)
    # per person too, not only on average
    per_p = pd.Series(personal.predict(te) == y).groupby(te["user_id"]).mean()
    per_s = pd.Series(shared.predict(te) == y).groupby(te["user_id"]).mean()
    assert (per_p >= per_s).mean() > 0.6
    # the shared prior over cut-point offsets was learned (empirical Bayes) and is wide: thresholds differ
    assert personal.prior_var_[1] > 0.3
    # collapsed control: everybody at the population is the shared model's quality, not the personal one
    assert np.mean(personal.collapsed().predict(te) == y) < acc_p - 0.03


def test_adapt_from_k_labels(binary):
    tr, te, _, personal, _ = binary
    errs0, errs = [], []
    for u in [f"p{i}" for i in range(0, 80, 4)]:
        own_tr, own_te = tr[tr["user_id"] == u], te[te["user_id"] == u]
        if len(own_te) == 0:
            continue
        new = own_te.assign(user_id="newcomer")
        post = personal.adapt(own_tr.iloc[:20])
        assert post.dim == personal.n_person_params_ and post.n == min(20, len(own_tr))
        personal.add_user("newcomer", post)
        errs.append(np.mean(personal.predict(new) != new["rating"].to_numpy()))
        personal.add_user("newcomer", personal.prior())
        errs0.append(np.mean(personal.predict(new) != new["rating"].to_numpy()))
    assert np.mean(errs) < np.mean(errs0) - 0.04
    assert np.all(np.linalg.eigvalsh(post.cov) > 0)


def test_ordinal_five_levels_and_roundtrip(tmp_path):
    df, feat = planted_labels(levels=5, seed=1, n_users=60)
    df["rating"] += 1.0  # 1..5
    tr, te = split(df, seed=1)
    m = make_model("ordinal", rank=1, featurizer=feat).fit(tr)
    flat = OrdinalLowRank(rank=0, personal_cuts=False, personal_scale=False, featurizer=feat).fit(tr)
    assert m.levels_ == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert m.mae(te) < flat.mae(te) - 0.05
    e = m.expected_rating(te)
    assert np.all((e >= 1) & (e <= 5))
    cuts = m.cutpoints_
    assert np.all(np.diff(cuts) > 0)
    assert isinstance(m.mae(te, by_person=True), pd.Series)
    m.save_pretrained(tmp_path / "ord")
    again = load_model(tmp_path / "ord", featurizer=feat)
    np.testing.assert_allclose(again.predict_proba(te.iloc[:30]), m.predict_proba(te.iloc[:30]))
    with pytest.raises(DataError, match="rating"):
        m.adapt(te.iloc[:3].assign(rating=2.5))


def test_crowd_offset_reference_is_leave_one_out():
    df = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "a", "b"],
            "response": ["x", "x", "x", "y", "y"],
            "rating": [1.0, 0.0, 0.0, 1.0, 1.0],
        }
    )
    ref = CrowdOffsetReference(shrink=0.0).fit(df)
    # a's crowd value on x excludes a's own label: mean(b, c) = 0
    np.testing.assert_allclose(ref._crowd(np.array(["a"]), np.array(["" + "\x1f" + "x"])), [0.0])
    # a's offset: (1 - 0) on x and (1 - 1) on y -> 0.5; predictions are clipped to the scale
    assert ref.offset_["a"] == pytest.approx(0.5)
    new = pd.DataFrame({"user_id": ["a"], "response": ["x"], "rating": [1.0]})
    assert ref.predict(new)[0] == pytest.approx(0.5)
    with pytest.raises(DataError, match="rating"):
        CrowdOffsetReference().fit(pd.DataFrame({"user_id": ["a"], "response": ["x"]}))
