"""The estimator contract, checked for every registered model (in the manner of scikit-learn's check_estimator)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from personalign.data.core import POPULATION_USER
from personalign.data.synthetic import generate_population, sample_ratings
from personalign.errors import ConfigError, DataError, NotFittedError
from personalign.features import HashingEncoder, PairFeaturizer
from personalign.models import (
    JudgmentKFold,
    LowRankBT,
    PersonalModel,
    PreferenceSamples,
    TrainingConfig,
    load_model,
    make_model,
    model_names,
    per_person_accuracy_score,
)

NAMES = sorted(model_names(aliases=False))
EXTRA = {"group": {"group_col": "age_band"}, "mlp": {"hidden": 4}, "mixture": {"em_iters": 5}}
FEAT = PairFeaturizer(HashingEncoder(64))


@pytest.fixture(scope="module")
def data():
    pop = generate_population(persons=30, comparisons_per_person=20, seed=4)
    return pop, sample_ratings(pop, 12, seed=1)


def build(name: str) -> PersonalModel:
    return make_model(name, rank=2, featurizer=FEAT, random_state=0, max_iter=30, **EXTRA.get(name, {}))


def train_data(name, data):
    return data[1] if name == "ordinal" else data[0]


def rows(name, data, user=None) -> pd.DataFrame:
    """Judgment rows the model predicts on (rating rows for the ordinal model), for known persons."""
    t = data[1].ratings if name == "ordinal" else data[0].comparisons
    t = t.iloc[:40].reset_index(drop=True)
    return t if user is None else t.assign(user_id=user)


@pytest.fixture(scope="module")
def fitted(data):
    return {name: build(name).fit(train_data(name, data)) for name in NAMES}


def test_every_model_is_registered():
    assert {
        "bt",
        "group",
        "independent",
        "lowrank",
        "mixture",
        "sideinfo",
        "context",
        "mlp",
        "ordinal",
    } <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_sets_only_trailing_underscore_attributes(name, data):
    m = build(name)
    before = dict(vars(m))
    assert not [k for k in before if k.endswith("_")], "fitted attributes exist before fit"
    params = m.get_params(deep=False)
    with pytest.raises(NotFittedError):
        m.prior()
    assert m.fit(train_data(name, data)) is m
    new = sorted(set(vars(m)) - set(before))
    assert new and all(k.endswith("_") and not k.startswith("_") for k in new), new
    # fit leaves the parameters as they were given (scikit-learn's check_dont_overwrite_parameters)
    after = m.get_params(deep=False)
    assert all(after[k] is v for k, v in params.items())


@pytest.mark.parametrize("name", NAMES)
def test_get_params_set_params_round_trip(name):
    m = build(name)
    p = m.get_params(deep=True)
    assert "featurizer" in p and p["featurizer"] is FEAT
    assert isinstance(p["training"], TrainingConfig) and p["training__max_iter"] == 30
    assert set(m.get_params(deep=False)) == set(type(m).constructor_params())
    m.set_params(**p)
    assert m.get_params(deep=True) == p
    m.set_params(training__max_iter=7, random_state=3)
    assert m.training.max_iter == 7 and m.random_state == 3
    assert m.training.patience == p["training__patience"]  # a changed copy, the other options kept
    with pytest.raises(ConfigError, match="invalid parameter"):
        m.set_params(no_such_parameter=1)
    assert type(m).__name__ in repr(m) and "max_iter=7" in repr(m)


@pytest.mark.parametrize("name", NAMES)
def test_clone_is_an_unfitted_copy_with_equal_params(name, fitted):
    m = fitted[name]
    c = clone(m)
    assert type(c) is type(m) and c is not m
    assert not [k for k in vars(c) if k.endswith("_")]
    assert c.get_params(deep=True) == m.get_params(deep=True)
    assert c.featurizer is m.featurizer  # the encoder is shared, not copied


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trips_the_scores(name, fitted, data, tmp_path):
    m = fitted[name]
    back = load_model(m.save_pretrained(tmp_path / name))
    assert type(back) is type(m) and back.get_params(deep=False).keys() == m.get_params(deep=False).keys()
    assert back.training == m.training
    r = rows(name, data)
    np.testing.assert_array_equal(back.predict_proba(r), m.predict_proba(r))
    users, prompts = r["user_id"].tolist(), r["prompt"].tolist()
    texts = r["response"].tolist() if name == "ordinal" else r["chosen"].tolist()
    np.testing.assert_array_equal(back.score(users, prompts, texts), m.score(users, prompts, texts))


@pytest.mark.parametrize("name", NAMES)
def test_collapsed_equals_the_population(name, fitted, data):
    m = fitted[name]
    col = m.collapsed()
    known = rows(name, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither the trained persons nor the population id are unknown
        np.testing.assert_allclose(
            col.predict_proba(known), m.predict_proba(rows(name, data, POPULATION_USER))
        )
    assert col is not m and m.posterior(known["user_id"].iloc[0]).dim == m.prior().dim


@pytest.mark.parametrize("name", NAMES)
def test_adapt_with_no_judgment_is_the_prior(name, fitted, data):
    m = fitted[name]
    prior = m.prior()
    post = m.adapt(rows(name, data).iloc[:0])
    np.testing.assert_array_equal(post.mean, prior.mean)
    np.testing.assert_array_equal(post.cov, prior.cov)
    assert post.n == 0
    some = rows(name, data).iloc[:3]
    assert m.adapt(some).n == 3 and m.update(prior, some).n == 3


@pytest.mark.parametrize("name", NAMES)
def test_unknown_persons_warn_or_raise(name, fitted, data):
    m = fitted[name]
    r = rows(name, data, "nobody-42")
    if not m.unknown_persons(["nobody-42"]):
        assert name == "bt"  # one reward for everybody: nobody is unknown to it
        return
    with pytest.warns(UserWarning, match="nobody-42") as caught:
        m.predict_proba(r)
    assert len([w for w in caught if issubclass(w.category, UserWarning)]) == 1  # once per call
    with pytest.raises(DataError, match="nobody-42"):
        m.predict_proba(r, strict=True)
    with pytest.raises(DataError, match="nobody-42"):
        m.score(["nobody-42"], [""], ["some text"], strict=True)


def test_grid_search_tunes_l2_basis_on_preference_data(data):
    pop = PreferenceSamples.of(data[0])
    assert len(pop) == len(data[0].comparisons) and len(pop.take([0, 5, 7])) == 3
    search = GridSearchCV(
        LowRankBT(rank=2, featurizer=FEAT, training=TrainingConfig(max_iter=20)),
        {"l2_basis": [0.1, 1e4], "training__max_iter": [20]},
        scoring=per_person_accuracy_score,
        cv=JudgmentKFold(3),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every held-out person is known to its fold's model
        search.fit(pop)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.all((scores > 0.3) & (scores <= 1.0))
    assert search.best_params_["l2_basis"] in (0.1, 1e4)
    assert search.best_estimator_.fitted_ and search.best_estimator_.training.max_iter == 20
    # the scorer is per-person accuracy: the held-out folds' score equals its direct computation
    fold = next(JudgmentKFold(3).split(pop))
    m = clone(search.best_estimator_).fit(pop.take(fold[0]))
    test = pop.take(fold[1]).comparisons
    p = m.predict_proba(test)
    direct = pd.Series((p > 0.5) + 0.5 * (p == 0.5)).groupby(test["user_id"].to_numpy()).mean().mean()
    assert per_person_accuracy_score(m, pop.take(fold[1])) == pytest.approx(direct)


def test_judgment_folds_keep_every_person_on_both_sides(data):
    pop = PreferenceSamples.of(data[0])
    users = pop.sample_users()
    seen = np.zeros(len(users), int)
    for tr, te in JudgmentKFold(4, random_state=1).split(pop):
        assert not set(tr) & set(te)
        seen[te] += 1
        assert set(users[te]) <= set(users[tr])
    assert np.all(seen == 1)
