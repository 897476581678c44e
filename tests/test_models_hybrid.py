"""HybridBT: item parameters learned from everybody's judgments, falling back to the text for new items."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _planted import planted  # noqa: E402
from personalign.errors import ConfigError  # noqa: E402
from personalign.features import PairFeaturizer, PrecomputedEncoder  # noqa: E402
from personalign.models import HybridBT, LowRankBT, load_model, make_model  # noqa: E402


@pytest.fixture(scope="module")
def pop():
    return planted(n_users=60, n_per_user=60, seed=0)


@pytest.fixture(scope="module")
def noise(pop):
    # features that say nothing about the items: only who judged what carries the signal
    rng = np.random.default_rng(5)
    X = rng.normal(size=(len(pop["texts"]), 16)).astype(np.float32)
    return PairFeaturizer(PrecomputedEncoder((pop["texts"], X)), mode="response")


def acc(model, test) -> float:
    return float(np.mean(model.predict_proba(test) > 0.5))


def test_hybrid_learns_items_where_text_says_nothing(pop, noise):
    test = pop["test"]  # the same items, judged again by the same persons
    lr = LowRankBT(rank=2, featurizer=noise, random_state=0).fit(pop["data"])
    hy = HybridBT(rank=2, featurizer=noise, random_state=0).fit(pop["data"])
    assert acc(lr, test) < 0.6  # text features of noise: the text model is near chance
    assert acc(hy, test) > acc(lr, test) + 0.1
    # personal item factors, not only a per-item population bias: beats its own collapsed control
    assert acc(hy, test) > acc(hy.collapsed(), test) + 0.03


def test_hybrid_stays_near_text_model_where_text_explains(pop):
    test = pop["test"]
    lr = LowRankBT(rank=2, featurizer=pop["featurizer"], random_state=0).fit(pop["data"])
    hy = HybridBT(rank=2, featurizer=pop["featurizer"], random_state=0).fit(pop["data"])
    assert acc(hy, test) >= acc(lr, test) - 0.03


def test_unknown_items_fall_back_to_text(pop):
    hy = HybridBT(rank=2, featurizer=pop["featurizer"], random_state=0).fit(pop["data"])
    known = hy.item_rows("", pop["texts"][:3])
    assert (known >= 0).all()
    assert (hy.item_rows("another prompt", pop["texts"][:3]) == -1).all()
    phi = hy.features("another prompt", pop["texts"][:5])
    s, g = hy.project(phi)
    X = np.asarray(phi[:, :-1], float)
    np.testing.assert_allclose(s, X @ hy.mu_[:-1])
    np.testing.assert_allclose(g, X @ hy.B_[:-1])
    # a known item gets its learned bias on top of the text
    s_known, _ = hy.project(hy.features("", pop["texts"][:5]))
    np.testing.assert_allclose(s_known - s, hy.item_bias_[hy.item_rows("", pop["texts"][:5])], atol=1e-9)


def test_hybrid_round_trip_and_registry(pop, tmp_path):
    hy = make_model("hybrid", rank=2, featurizer=pop["featurizer"], random_state=0).fit(pop["data"])
    assert isinstance(hy, HybridBT)
    hy.save_pretrained(tmp_path / "h")
    back = load_model(tmp_path / "h", featurizer=pop["featurizer"])
    np.testing.assert_allclose(back.predict_proba(pop["test"]), hy.predict_proba(pop["test"]))
    post = back.adapt(pop["test"][pop["test"]["user_id"] == "u0"].head(10))
    assert post.dim == 2
    cfg = (tmp_path / "h" / "config.json").read_text()
    (tmp_path / "h" / "config.json").write_text(cfg.replace('"item_keys"', '"no_keys"'))
    with pytest.raises(ConfigError, match="item_keys"):
        load_model(tmp_path / "h", featurizer=pop["featurizer"])


def test_hybrid_rank_zero(pop, noise):
    hy = HybridBT(rank=0, featurizer=noise, random_state=0).fit(pop["data"])
    assert hy.K_ == 0 and hy.item_factors_.shape[1] == 0
    assert acc(hy, pop["test"]) > 0.55  # item biases alone carry the population's preferences


@pytest.mark.parametrize("joint", [False, True])
def test_the_text_part_is_fitted_first_and_does_not_depend_on_the_item_prior(pop, noise, joint, monkeypatch):
    """Two stages: the text part (what an item nobody judged gets) is fitted before the item parameters, so a
    weak item prior cannot let the item biases absorb it; fitted jointly (the second case), it changes with it.
    Noise text features: there the item parameters pay on held-out judgments, so the item stages are kept (on the
    planted features they do not, and early stopping keeps the item stages' starting point, ``b = 0``)."""
    if joint:
        monkeypatch.setattr(HybridBT, "_fit_stages", LowRankBT._fit_stages)
    weak = HybridBT(rank=2, featurizer=noise, random_state=0, l2_item=1e-3, l2_item_factors=1e-3)
    strong = HybridBT(rank=2, featurizer=noise, random_state=0, l2_item=1e3, l2_item_factors=1e3)
    weak.fit(pop["data"])
    strong.fit(pop["data"])
    # the text stage sees neither the item parameters nor their penalty: its fit is the same whatever the prior
    moved = (
        max(np.abs(weak.mu_ - strong.mu_).max(), np.abs(weak.B_ - strong.B_).max()) / np.abs(strong.mu_).max()
    )
    assert (
        np.abs(weak.item_bias_).max() > 10 * np.abs(strong.item_bias_).max()
    )  # the prior did act on the items
    if joint:
        assert moved > 0.05
        return
    assert moved < 1e-9
    # text, item biases, item factors: each stage lowers the training loss it starts from
    assert [s["train_loss"][0] > s["train_loss"][-1] for s in weak.history_["stages"]] == [True, True, True]


def test_item_stages_that_do_not_pay_on_held_out_judgments_keep_their_start(pop):
    """On the planted features the text carries everything, so fitting item parameters only raises the held-out
    loss; early stopping keeps where those stages began (``b = 0``) instead of their least bad round."""
    weak = HybridBT(rank=2, featurizer=pop["featurizer"], random_state=0, l2_item=1e-3, l2_item_factors=1e-3)
    weak.fit(pop["data"])
    stages = weak.history_["stages"]
    assert [s["kept_start"] for s in stages] == [False, True, True]
    assert min(stages[2]["val_loss"]) > stages[2]["start_val_loss"]  # every item-factor round was worse
    assert np.abs(weak.item_bias_).max() == 0.0
