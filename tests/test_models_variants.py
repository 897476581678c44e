"""Model variants: latent-class mixture (EM), demographic prior (side information), context dependence, MLP basis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.data.core import PreferenceData
from personalign.data.synthetic import ATTRIBUTES, generate_population, sample_comparisons
from personalign.errors import ConfigError, DataError
from personalign.features import PairFeaturizer, PrecomputedEncoder
from personalign.models import (
    AggregatedBT,
    ContextLowRankBT,
    LowRankBT,
    MixtureBT,
    MLPLowRankBT,
    SideInfoLowRankBT,
    load_model,
    make_model,
)
from personalign.models.lowrank import SCALE_TIE
from personalign.models.mixture import LIKELIHOOD_POWERS, MIXTURE_TRAINING


def attr_featurizer(data: PreferenceData) -> PairFeaturizer:
    it = data.items
    X = it[[f"attr_{a}" for a in ATTRIBUTES]].to_numpy(np.float32)
    return PairFeaturizer(PrecomputedEncoder((it["text"].tolist(), X)), mode="response")


def acc(model, comps: pd.DataFrame) -> float:
    return float(np.mean(model.predict_proba(comps) > 0.5))


@pytest.fixture(scope="module")
def pop():
    data = generate_population(
        persons=240, comparisons_per_person=40, alpha=0.05, n_profiles=3, seed=3, demographic_signal=0.95
    )
    test = sample_comparisons(data, 30, seed=11)
    return data, test, attr_featurizer(data)


@pytest.fixture(scope="module")
def mixture(pop):
    data, _, feat = pop
    return MixtureBT(3, featurizer=feat, em_iters=10, random_state=0).fit(data)


def test_make_model_names():
    assert (
        isinstance(make_model("mixture", rank=3), MixtureBT) and make_model("mixture", rank=3).n_classes == 3
    )
    assert make_model("sideinfo", rank=2).rank == 2
    assert isinstance(make_model("lowrank-side"), SideInfoLowRankBT)
    assert make_model("context", rank=3).rank == 3
    assert make_model("mlp", rank=2, hidden=8).hidden == 8


# ------------------------------------------------------------------------------------------------ mixture
def test_mixture_recovers_classes_and_beats_aggregated(pop, mixture):
    data, test, feat = pop
    truth = data.meta["truth"]
    assign = mixture.assignments()
    true = pd.Series(truth.dominant_profile, index=truth.user_ids.astype(str)).reindex(assign.index)
    # purity: each learned class is mostly one true profile
    purity = pd.crosstab(assign, true).max(1).sum() / len(assign)
    assert purity > 0.85
    assert len(set(assign)) == 3
    assert (
        acc(mixture, test.comparisons) > acc(AggregatedBT(featurizer=feat).fit(data), test.comparisons) + 0.03
    )
    np.testing.assert_allclose(mixture.prior().mean.sum(), 1.0)


def test_mixture_adapt_is_exact_bayes(pop, mixture):
    _, test, _ = pop
    own = test.comparisons[test.comparisons["user_id"] == "u007"]
    batch = mixture.adapt(own.iloc[:12])
    seq = mixture.prior()
    for i in range(12):
        seq = mixture.update(seq, own.iloc[i : i + 1])
    np.testing.assert_allclose(seq.mean, batch.mean, atol=1e-10)
    assert seq.n == 12 and batch.mean.max() > 0.9
    # the adapted class is the one the trained person was assigned to
    assert np.argmax(batch.mean) == np.argmax(mixture.posterior("u007").mean)
    np.testing.assert_allclose(batch.cov, np.diag(batch.mean) - np.outer(batch.mean, batch.mean))
    # informative queries: mutual information is >= 0, and ~0 once the class is certain
    D, a, _, _ = mixture.example_arrays(own)
    mi_prior = mixture.query_scores(mixture.prior(), D, a)
    assert np.all(mi_prior >= -1e-12) and mi_prior.max() > 0.01
    assert mixture.query_scores(batch, D, a).max() < mi_prior.max()


def test_mixture_save_load_and_maxmin(pop, mixture, tmp_path):
    data, test, feat = pop
    mixture.save_pretrained(tmp_path / "mix")
    again = load_model(tmp_path / "mix", featurizer=feat)
    assert isinstance(again, MixtureBT) and again.n_classes == 3
    c = test.comparisons.iloc[:50]
    np.testing.assert_allclose(again.predict_proba(c), mixture.predict_proba(c))
    R = mixture.class_rewards(c["prompt"].tolist(), c["chosen"].tolist())
    np.testing.assert_allclose(mixture.maxmin_score(c["prompt"].tolist(), c["chosen"].tolist()), R.min(1))


def test_mixture_tempering_serves_the_population_where_classes_carry_nothing(tmp_path):
    # nearly alike persons with 12 judgments each: EM still splits them into 4 classes, but on held-out items
    # trusting a person's class pays no more than a hair, so the likelihood power is 0: everybody gets the class prior
    data = generate_population(persons=300, comparisons_per_person=12, alpha=10, seed=4)
    feat = attr_featurizer(data)
    tr = MIXTURE_TRAINING.replace(validation_split="items", validation_fraction=0.2)
    mix = MixtureBT(4, featurizer=feat, random_state=0, training=tr).fit(data)
    assert mix.likelihood_power_ == 0.0
    losses = mix.likelihood_power_losses_
    assert set(losses) == {str(e) for e in LIKELIHOOD_POWERS}
    assert losses["0.0"] <= min(losses.values()) + SCALE_TIE  # a tie goes to the population
    c = sample_comparisons(data, 10, seed=13).comparisons
    np.testing.assert_allclose(mix.predict_proba(c), mix.collapsed().predict_proba(c), atol=1e-12)
    plain = MixtureBT(4, featurizer=feat, random_state=0, training=tr, likelihood_power=1.0).fit(data)
    assert plain.likelihood_power_ == 1.0 and plain.likelihood_power_losses_ == {}
    assert not np.allclose(plain.predict_proba(c), plain.collapsed().predict_proba(c))
    # adapt uses the same power: a new person's belief stays at the class prior
    np.testing.assert_allclose(mix.adapt(c.iloc[:12]).mean, mix.prior().mean, atol=1e-12)
    mix.save_pretrained(tmp_path / "mix0")
    assert load_model(tmp_path / "mix0", featurizer=feat).likelihood_power_ == 0.0
    with pytest.raises(ConfigError, match="likelihood_power"):
        MixtureBT(2, featurizer=feat, likelihood_power=2).fit(data)


def test_mixture_tempering_keeps_classes_that_predict_held_out_judgments(pop, mixture):
    assert mixture.likelihood_power_ > 0
    losses = mixture.likelihood_power_losses_
    assert losses[str(mixture.likelihood_power_)] < losses["0.0"]


# ---------------------------------------------------------------------------------------------- side info
@pytest.fixture(scope="module")
def side(pop):
    data, _, feat = pop
    return SideInfoLowRankBT(rank=2, featurizer=feat, random_state=0).fit(data)


def test_sideinfo_cold_start_beats_population_prior(pop, side):
    data, test, _ = pop
    users = data.users.set_index("user_id")
    c = test.comparisons
    pop_acc, demo_acc = [], []
    for u, g in c.groupby("user_id"):
        D, a, _, _ = side.example_arrays(g)
        row = users.loc[u].to_dict()
        pop_acc.append(np.mean(a + D @ side.prior().mean > 0))
        demo_acc.append(np.mean(a + D @ side.prior(row).mean > 0))
    assert np.mean(demo_acc) > np.mean(pop_acc) + 0.03
    # the demographic prior is tighter than the population prior (demographics explain part of the spread)
    assert np.trace(side.prior(users.iloc[0].to_dict()).cov) < np.trace(side.prior().cov)
    # adapt(user_row=...) starts from the demographic prior
    k0 = side.adapt(c.iloc[:0], user_row=users.iloc[0].to_dict())
    np.testing.assert_allclose(k0.mean, side.prior(users.iloc[0].to_dict()).mean)


def test_sideinfo_missing_columns_and_roundtrip(pop, side, tmp_path):
    data, _, feat = pop
    # a row without demographics gets the population-average demographic prior
    np.testing.assert_allclose(side.prior({}).mean, side.side_encoder_.row({}) @ side.side_map_)
    assert side.prior({"age_band": "never-seen"}).mean.shape == (2,)
    side.save_pretrained(tmp_path / "side")
    again = load_model(tmp_path / "side", featurizer=feat)
    row = data.users.iloc[3].to_dict()
    np.testing.assert_allclose(again.prior(row).mean, side.prior(row).mean)
    with pytest.raises(DataError, match="no_such_column"):
        SideInfoLowRankBT(rank=2, featurizer=feat, side_info=["no_such_column"]).fit(data)


def test_sideinfo_keeps_the_population_prior_when_demographics_do_not_predict():
    # a postcode that carries nothing, fitted with a ridge too weak to shrink it: EM of the demographic priors
    # would give each postcode the mean of its few persons' weights (noise); scored on held-out judgments,
    # no round beats the start, so a new person's demographic prior is the population's
    data = generate_population(
        persons=240, comparisons_per_person=40, alpha=1.0, seed=3, demographic_signal=0.0
    )
    data.users["postcode"] = [f"z{i}" for i in np.random.default_rng(0).integers(0, 8, len(data.users))]
    ids = data.user_ids
    feat = attr_featurizer(data)
    side = SideInfoLowRankBT(rank=2, featurizer=feat, side_info=["postcode"], side_ridge=1e-6, random_state=0)
    side.fit(data.filter_users(ids[:160]))
    assert side.side_em_best_round_ == 0 and len(side.side_em_losses_) >= 2
    assert min(side.side_em_losses_[1:]) > side.side_em_losses_[0]
    new = data.filter_users(ids[160:])
    users = data.users.set_index("user_id")
    for u in new.user_ids[:20]:
        np.testing.assert_allclose(side.prior(users.loc[u].to_dict()).mean, side.prior().mean, atol=1e-12)


def test_sideinfo_em_keeps_a_later_round_where_demographics_predict(side):
    assert side.side_em_best_round_ >= 1
    assert side.side_em_losses_[side.side_em_best_round_] < side.side_em_losses_[0]


# ------------------------------------------------------------------------------------------------ context
def test_context_model_helps_when_preferences_shift_with_domain(tmp_path):
    data = generate_population(
        persons=200, comparisons_per_person=40, alpha=0.1, context_dependence=1.0, seed=5
    )
    test = sample_comparisons(data, 30, seed=12)
    feat = attr_featurizer(data)
    plain = LowRankBT(rank=3, featurizer=feat, random_state=0).fit(data)
    ctx = ContextLowRankBT(rank=3, featurizer=feat, random_state=0).fit(data)
    assert acc(ctx, test.comparisons) > acc(plain, test.comparisons) + 0.015
    assert (ctx.domain_shift_norms() > 0.05).all()
    ctx.save_pretrained(tmp_path / "ctx")
    again = load_model(tmp_path / "ctx", featurizer=feat)
    c = test.comparisons.iloc[:40]
    np.testing.assert_allclose(again.predict_proba(c), ctx.predict_proba(c))
    # without context the shift is not used: a prompt of no known domain scores with the shared basis
    s_known = ctx.score("u001", c["prompt"].iloc[0], [c["chosen"].iloc[0]])
    ctx.prompt_domain_ = {}
    s_none = ctx.score("u001", c["prompt"].iloc[0], [c["chosen"].iloc[0]])
    assert not np.allclose(s_known, s_none)


# ---------------------------------------------------------------------------------------------------- mlp
def test_mlp_basis_learns_a_nonlinear_population_reward(tmp_path):
    rng = np.random.default_rng(0)
    n_items, d = 300, 6
    X = rng.uniform(-1, 1, size=(n_items, d)).astype(np.float32)
    shared = 3 * np.sin(3 * X[:, 0]) + 3 * X[:, 1] * X[:, 2]  # not linear in the features
    texts = [f"t{i}" for i in range(n_items)]
    users = [f"p{j}" for j in range(40)]
    W = rng.normal(size=(40,))

    def sample(n: int, items: np.ndarray) -> pd.DataFrame:
        rows = []
        for j, u in enumerate(users):
            a, b = rng.choice(items, n), rng.choice(items, n)
            keep = a != b
            r = shared + 1.5 * X[:, 3] * W[j]
            win = rng.random(keep.sum()) < 1 / (1 + np.exp(-(r[a[keep]] - r[b[keep]])))
            for x, y, w in zip(a[keep], b[keep], win):
                c, l_ = (x, y) if w else (y, x)
                rows.append((u, "", texts[c], texts[l_]))
        return pd.DataFrame(rows, columns=["user_id", "prompt", "chosen", "rejected"])

    train_items, test_items = np.arange(240), np.arange(240, 300)
    data = PreferenceData(comparisons=sample(80, train_items))
    test = sample(30, test_items)
    feat = PairFeaturizer(PrecomputedEncoder((texts, X)), mode="response")
    lin = LowRankBT(rank=1, featurizer=feat, random_state=0).fit(data)
    mlp = MLPLowRankBT(rank=1, hidden=32, featurizer=feat, random_state=0).fit(data)
    assert acc(mlp, test) > acc(lin, test) + 0.04
    mlp.save_pretrained(tmp_path / "mlp")
    again = load_model(tmp_path / "mlp", featurizer=feat)
    np.testing.assert_allclose(again.predict_proba(test.iloc[:30]), mlp.predict_proba(test.iloc[:30]))
    # adapt still works on the K-dim personal layer
    post = mlp.adapt(test[test["user_id"] == "p3"].iloc[:10])
    assert post.dim == 1 and post.n == 10
