"""LowRankBT and the shared linear-Gaussian layer on a planted low-rank population."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _planted import planted  # noqa: E402
from personalign.errors import ConfigError, NotFittedError  # noqa: E402
from personalign.models import (  # noqa: E402
    AggregatedBT,
    IndependentBT,
    LowRankBT,
    Posterior,
    TrainingConfig,
    load_model,
    make_model,
)


@pytest.fixture(scope="module")
def pop():
    return planted(n_users=60, n_per_user=60, seed=0)


@pytest.fixture(scope="module")
def fitted(pop):
    return LowRankBT(rank=2, featurizer=pop["featurizer"], random_state=0).fit(pop["data"])


def per_person_acc(model, test: pd.DataFrame) -> pd.Series:
    ok = model.predict_proba(test) > 0.5
    return pd.Series(ok).groupby(test["user_id"].to_numpy()).mean()


def test_lowrank_beats_aggregated_and_nears_oracle(pop, fitted):
    test = pop["test"]
    oracle = (test["true_margin"] > 0).groupby(test["user_id"]).mean()
    lr = per_person_acc(fitted, test)
    agg = per_person_acc(AggregatedBT(featurizer=pop["featurizer"]).fit(pop["data"]), test)
    assert lr.mean() > agg.mean() + 0.1
    assert (lr > agg).mean() > 0.7  # per person, not only on average
    assert lr.mean() >= 0.95 * oracle.mean()


def test_learned_prior_matches_planted_spread(pop, fitted):
    # the learned subspace spans the planted one: project true B onto span(B_)
    Q = np.linalg.qr(fitted.B_)[0]
    Bt = pop["B"]
    captured = np.linalg.norm(Q.T @ Bt) / np.linalg.norm(Bt)
    assert captured > 0.9
    assert fitted.prior_cov_.shape == (2, 2)
    assert np.all(np.linalg.eigvalsh(fitted.prior_cov_) > 0)


def test_adapt_k0_is_prior_and_concentrates(pop, fitted):
    prior = fitted.prior()
    p0 = fitted.adapt(pop["test"].iloc[:0])
    np.testing.assert_array_equal(p0.mean, prior.mean)
    np.testing.assert_array_equal(p0.cov, prior.cov)
    own = pop["test"][pop["test"]["user_id"] == "u3"]
    traces = [np.trace(fitted.adapt(own.iloc[:k]).cov) for k in (0, 2, 10, 40)]
    assert all(a > b for a, b in zip(traces, traces[1:], strict=False))
    # with 40 judgments the new person's weights point the way the trained person's do
    post = fitted.adapt(own)
    trained = fitted.posterior("u3")
    cos = post.mean @ trained.mean / (np.linalg.norm(post.mean) * np.linalg.norm(trained.mean))
    assert cos > 0.8 and post.n == 40


def test_update_one_by_one_matches_adapt(pop, fitted):
    own = pop["test"][pop["test"]["user_id"] == "u5"].iloc[:10]
    seq = fitted.prior()
    for i in range(len(own)):
        seq = fitted.update(seq, own.iloc[i : i + 1])
    batch = fitted.adapt(own)
    assert seq.n == batch.n == 10
    np.testing.assert_allclose(seq.mean, batch.mean, atol=0.15 * np.linalg.norm(batch.mean) + 0.05)
    # one judgment: identical by construction
    one = own.iloc[:1]
    np.testing.assert_allclose(fitted.update(fitted.prior(), one).mean, fitted.adapt(one).mean)
    # pure: the model did not change
    np.testing.assert_array_equal(fitted.prior().mean, fitted.prior_mean_)


def test_active_queries_beat_random(pop, fitted):
    rng = np.random.default_rng(1)
    texts = pop["texts"]
    R = pop["R"]
    gains = []
    for j in range(0, 30, 3):
        a = rng.integers(0, len(texts), 200)
        b = (a + rng.integers(1, len(texts), 200)) % len(texts)
        cands = pd.DataFrame(
            {"prompt": "", "chosen": [texts[i] for i in a], "rejected": [texts[i] for i in b]}
        )
        res = {}
        for mode in ("active", "random"):
            post, avail = fitted.prior(), np.ones(len(cands), bool)
            r2 = np.random.default_rng(j)
            for _ in range(4):
                idx = np.flatnonzero(avail)
                pick = (
                    idx[fitted.suggest_query(post, cands.iloc[idx])] if mode == "active" else r2.choice(idx)
                )
                avail[pick] = False
                ai, bi = a[pick], b[pick]
                win = r2.random() < 1 / (1 + np.exp(-(R[ai, j] - R[bi, j])))
                c, r = (ai, bi) if win else (bi, ai)
                post = fitted.update(
                    post, pd.DataFrame({"prompt": [""], "chosen": [texts[c]], "rejected": [texts[r]]})
                )
            res[mode] = post
        gains.append(res["random"].entropy() - res["active"].entropy())
    assert np.mean(gains) > 0  # active questions shrink the posterior more than random ones


def test_score_shapes_unknown_person_and_add_user(pop, fitted):
    texts = pop["texts"][:5]
    r = fitted.score("u1", "", texts)
    assert r.shape == (5,)
    np.testing.assert_allclose(r, fitted.score_posterior(fitted.posterior("u1"), "", texts))
    with pytest.warns(UserWarning, match="'nobody'"):
        unknown = fitted.score("nobody", "", texts)
    np.testing.assert_allclose(unknown, fitted.score_posterior(fitted.prior_mean_, "", texts))
    m = LowRankBT(rank=2, featurizer=pop["featurizer"]).fit(pop["data"])
    post = Posterior(np.array([3.0, -3.0]), np.eye(2), 5)
    m.add_user("newbie", post)
    np.testing.assert_allclose(m.score("newbie", "", texts), m.score_posterior(post.mean, "", texts))
    with pytest.raises(ConfigError):
        m.add_user("bad", Posterior(np.zeros(3), np.eye(3)))
    col = m.collapsed()
    np.testing.assert_allclose(col.score("u1", "", texts), col.score("__population__", "", texts))
    np.testing.assert_allclose(col.score("newbie", "", texts), col.score("__population__", "", texts))


def test_save_load_roundtrip_and_mismatch(tmp_path, pop, fitted):
    fitted.add_user("added", Posterior(np.array([1.0, 2.0]), np.eye(2) * 0.5, 3))
    d = fitted.save_pretrained(tmp_path / "m")
    back = load_model(d, featurizer=pop["featurizer"])
    assert isinstance(back, LowRankBT) and back.rank == 2
    test = pop["test"].iloc[:200]
    np.testing.assert_array_equal(back.predict_proba(test), fitted.predict_proba(test))
    np.testing.assert_array_equal(back.posterior("added").mean, fitted.posterior("added").mean)
    assert back.posterior("added").n == 3
    np.testing.assert_array_equal(back.prior_cov_, fitted.prior_cov_)
    with pytest.raises(ConfigError, match="not a"):
        AggregatedBT.from_pretrained(d, featurizer=pop["featurizer"])
    with pytest.raises(ConfigError, match="precomputed"):
        load_model(d)  # the precomputed vectors are not in the artifact
    # a config that does not match the weights
    cfg = (d / "config.json").read_text().replace('"K": 2', '"K": 3')
    (d / "config.json").write_text(cfg)
    with pytest.raises(ConfigError, match="shape"):
        load_model(d, featurizer=pop["featurizer"])
    with pytest.raises(ConfigError, match="config.json"):
        load_model(tmp_path / "nothing")
    del fitted.added_["added"]


def test_deterministic_with_seed(pop):
    short = TrainingConfig(max_iter=40)
    a = LowRankBT(rank=2, featurizer=pop["featurizer"], random_state=3, training=short).fit(pop["data"])
    b = LowRankBT(rank=2, featurizer=pop["featurizer"], random_state=3, training=short).fit(pop["data"])
    np.testing.assert_array_equal(a.B_, b.B_)
    np.testing.assert_array_equal(a.unit_means_, b.unit_means_)


def test_not_fitted_and_make_model(pop):
    with pytest.raises(NotFittedError):
        LowRankBT().score("u", "", ["a"])
    assert isinstance(make_model("lowrank", rank=3), LowRankBT)
    assert isinstance(make_model("bt", rank=3), AggregatedBT)
    assert isinstance(make_model("independent"), IndependentBT)
    with pytest.raises(ConfigError):
        make_model("nonsense")


def test_aggregated_is_same_for_everyone_and_size0(pop):
    m = AggregatedBT(featurizer=pop["featurizer"]).fit(pop["data"])
    t = pop["texts"][:4]
    np.testing.assert_array_equal(m.score("u1", "", t), m.score("u2", "", t))
    assert m.prior().dim == 0 and m.adapt(pop["test"].iloc[:5]).dim == 0
