"""Baselines: GroupBT (one reward per group) and IndependentBT (one per person, no sharing)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _planted import planted  # noqa: E402
from personalign.data.core import PreferenceData  # noqa: E402
from personalign.errors import DataError  # noqa: E402
from personalign.models import AggregatedBT, GroupBT, IndependentBT, load_model  # noqa: E402


@pytest.fixture(scope="module")
def pop():
    P = planted(n_users=40, n_per_user=60, seed=2)
    # groups follow the sign of the first true personal direction
    grp = np.where(P["W"][:, 0] > 0, "A", "B")
    users = pd.DataFrame({"user_id": P["users"], "group": grp})
    P["data"] = PreferenceData(comparisons=P["data"].comparisons, users=users)
    return P


def acc(model, test):
    return float(np.mean(model.predict_proba(test) > 0.5))


def test_group_between_aggregated_and_oracle(tmp_path, pop):
    f = pop["featurizer"]
    agg = acc(AggregatedBT(featurizer=f).fit(pop["data"]), pop["test"])
    g = GroupBT(featurizer=f).fit(pop["data"])
    assert acc(g, pop["test"]) > agg + 0.05
    # cold start: a new person's prior is their group's reward
    np.testing.assert_allclose(g.prior({"group": "A"}).mean, g.unit_means_[g.units_.index("A")])
    a_user = next(u for u, j in g.user_units_.items() if g.units_[j] == "A")
    np.testing.assert_allclose(g.posterior(a_user).mean, g.prior({"group": "A"}).mean)
    np.testing.assert_array_equal(g.prior({"group": "Z"}).mean, g.prior_mean_)
    back = load_model(g.save_pretrained(tmp_path / "g"), featurizer=f)
    np.testing.assert_array_equal(back.predict_proba(pop["test"]), g.predict_proba(pop["test"]))


def test_group_needs_column(pop):
    d = PreferenceData(comparisons=pop["data"].comparisons)
    with pytest.raises(DataError, match="group"):
        GroupBT(featurizer=pop["featurizer"]).fit(d)


def test_independent_beats_aggregated_and_adapts(pop):
    f = pop["featurizer"]
    agg = acc(AggregatedBT(featurizer=f).fit(pop["data"]), pop["test"])
    ind = IndependentBT(featurizer=f).fit(pop["data"])
    assert acc(ind, pop["test"]) > agg + 0.05
    own = pop["test"][pop["test"]["user_id"] == "u1"]
    post = ind.adapt(own)
    assert post.dim == f.dim_out and np.trace(post.cov) < np.trace(ind.prior().cov)


def test_group_column_with_a_hyphen():
    """Polis' opinion-group column is called "group-id": GroupBT must accept any column name."""
    import pandas as pd

    from personalign.data import PreferenceData
    from personalign.features import HashingEncoder, PairFeaturizer
    from personalign.models import GroupBT, TrainingConfig

    c = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b"],
            "prompt": "p",
            "chosen": ["x", "y", "y", "x"],
            "rejected": ["y", "x", "x", "y"],
        }
    )
    users = pd.DataFrame({"user_id": ["a", "b"], "group-id": ["0", "1"]})
    m = GroupBT(
        group_col="group-id",
        featurizer=PairFeaturizer(HashingEncoder(dim=16)),
        training=TrainingConfig(validation_fraction=0.0),
    )
    m.fit(PreferenceData(comparisons=c, users=users))
    assert sorted(m.units_) == ["0", "1"]
