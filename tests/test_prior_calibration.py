"""The person prior's scale, chosen on held-out items, and the posterior predictive."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _planted import planted  # noqa: E402
from personalign.errors import ConfigError  # noqa: E402
from personalign.models import LowRankBT, TrainingConfig, load_model  # noqa: E402
from personalign.models.lowrank import EM_PATIENCE, PRIOR_SCALES, SCALE_TIE  # noqa: E402

ITEMS = TrainingConfig(validation_split="items", validation_fraction=0.2)


def fit(pop, **kw):
    return LowRankBT(rank=2, featurizer=pop["featurizer"], random_state=0, training=ITEMS, **kw).fit(
        pop["data"]
    )


@pytest.fixture(scope="module")
def strong():
    return planted(n_users=60, n_per_user=60, seed=0)


@pytest.fixture(scope="module")
def none():
    # no personal structure at all: every person has the population's reward
    return planted(n_users=60, n_per_user=60, seed=1, scale=0.0)


def test_auto_scale_keeps_real_structure(strong):
    m = fit(strong)
    assert set(m.prior_scale_losses_) == {str(c) for c in PRIOR_SCALES}
    assert m.prior_scale_ >= 0.25
    # the chosen scale is within the tie margin of the best loss it recorded, and no smaller scale is
    best = min(m.prior_scale_losses_.values())
    assert m.prior_scale_losses_[str(m.prior_scale_)] <= best + 1e-4
    assert all(v > best + 1e-4 for c, v in m.prior_scale_losses_.items() if float(c) < m.prior_scale_)


def test_auto_scale_shrinks_without_structure(none, strong):
    m = fit(none)
    s = fit(strong)
    assert m.prior_scale_ < s.prior_scale_
    # shrunk: the prior's spread is far below what the structured population learns
    assert np.trace(m.prior_cov_) < 0.5 * np.trace(s.prior_cov_)


def test_kshot_does_not_hurt_without_structure(none):
    """More judgments of a new person must not make predictions on new pairs worse when nothing is personal."""
    m = fit(none)
    test = none["test"]
    rng = np.random.default_rng(0)
    drops = []
    for u in none["users"][:20]:
        rows = test[test["user_id"] == u]
        k_rows, eval_rows = rows.iloc[:20], rows.iloc[20:]
        post = m.adapt(k_rows)
        s0 = m.score_posterior(m.prior(), "", eval_rows["chosen"]) - m.score_posterior(
            m.prior(), "", eval_rows["rejected"]
        )
        s1 = m.score_posterior(post, "", eval_rows["chosen"]) - m.score_posterior(
            post, "", eval_rows["rejected"]
        )
        drops.append(np.mean(s0 > 0) - np.mean(s1 > 0))
    assert rng is not None
    assert np.mean(drops) < 0.02


def test_fixed_scale_and_bad_scale(strong):
    one = fit(strong, prior_scale=1.0)
    half = fit(strong, prior_scale=0.5)
    assert one.prior_scale_ == 1.0 and half.prior_scale_ == 0.5
    np.testing.assert_allclose(half.prior_cov_, 0.5 * one.prior_cov_, rtol=1e-10)
    with pytest.raises(ConfigError, match="prior_scale"):
        fit(strong, prior_scale="big")
    with pytest.raises(ConfigError, match="prior_scale"):
        fit(strong, prior_scale=-1)


def test_predictive_is_moderated_and_keeps_the_winner(strong, tmp_path):
    m = fit(strong)
    test = strong["test"]
    plug = m.predict_proba(test, predictive=False)
    pred = m.predict_proba(test)
    np.testing.assert_array_equal(plug > 0.5, pred > 0.5)
    assert np.all(np.abs(pred - 0.5) <= np.abs(plug - 0.5) + 1e-12)
    # a person nobody knows carries the prior's full uncertainty: moderated more than a trained person
    unknown = test.assign(user_id="nobody")
    with pytest.warns(UserWarning):
        far = m.predict_proba(unknown)
    assert np.mean(np.abs(far - 0.5)) < np.mean(np.abs(pred - 0.5))
    m.save_pretrained(tmp_path / "m")
    back = load_model(tmp_path / "m", featurizer=strong["featurizer"])
    assert back.prior_scale_ == m.prior_scale_
    np.testing.assert_allclose(back.predict_proba(test), pred)


def test_eval_tunes_on_held_out_items_except_for_item_parameter_models():
    """The eval's text models validate (early stopping, prior scale) on held-out items, as its tuning split
    does; models with per-item parameters (hybrid, ordinal) validate on held-out judgments, and an explicit
    ``model_params`` choice wins."""
    from personalign.evaluate.candidates import build_model
    from personalign.evaluate.config import EvalConfig

    pop = planted(n_users=8, n_per_user=10, seed=2)
    cfg = EvalConfig(models=("lowrank", "hybrid"), rank=2)
    split = {n: build_model(n, pop["featurizer"], 0, cfg, pop["data"]).training_config().validation_split
             for n in ("lowrank", "independent", "hybrid")}  # fmt: skip
    assert split == {"lowrank": "items", "independent": "items", "hybrid": "judgments"}
    mine = EvalConfig(
        models=("lowrank",), rank=2, model_params={"lowrank": {"validation_split": "judgments"}}
    )
    assert (
        build_model("lowrank", pop["featurizer"], 0, mine, pop["data"]).training.validation_split
        == "judgments"
    )


def test_em_keeps_the_round_that_held_out_judgments_prefer(strong, monkeypatch):
    """EM's rounds are scored on held-out judgments; once they stop paying, EM stops and the best round's prior
    is kept (on a direction the fitted basis separates, EM's fixed point is at infinity)."""
    real = fit(strong, prior_scale=1.0)
    assert real.em_losses_[real.em_best_round_] <= min(real.em_losses_) + SCALE_TIE
    assert len(real.em_losses_) - 1 - real.em_best_round_ <= EM_PATIENCE
    scripted = iter([0.6, 0.5, 0.55, 0.56, 0.4, 0.3])  # round 1 is the best until patience runs out

    def fake_loss(*args):
        return next(scripted)

    monkeypatch.setattr(LowRankBT, "_heldout_loss", staticmethod(fake_loss))
    stopped = fit(strong, prior_scale=1.0)
    assert stopped.em_best_round_ == 1 and len(stopped.em_losses_) == 2 + EM_PATIENCE
    scripted = iter([0.6, 0.5])
    one_round = fit(strong, prior_scale=1.0, em_iters=1)
    np.testing.assert_allclose(stopped.prior_cov_, one_round.prior_cov_)
    np.testing.assert_allclose(stopped.prior_mean_, one_round.prior_mean_)
    assert np.abs(stopped.prior_cov_ - np.eye(2)).max() > 0.05  # round 1's prior is EM's, not the start's
