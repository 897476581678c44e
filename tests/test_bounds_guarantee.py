"""The lexicographic guarantee: no violating candidate ever outranks a satisfying one, for any person or weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from personalign.bounds.bounded import OFFSET, BoundedPolicy, bounded_order, bounded_reward, squash
from personalign.bounds.policy import policy_from_dict
from personalign.bounds.scorers import AttributeScorer
from personalign.bounds.trust import mahalanobis, project_trust_region

# any float an adversary could produce, including inf, -inf, nan and values that overflow exp
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _assert_guarantee(personal: np.ndarray, sat: np.ndarray) -> None:
    b = bounded_reward(personal, sat)
    if sat.any() and (~sat).any():
        assert b[sat].min() > b[~sat].max(), (personal, sat, b)
    order = bounded_order(personal, sat)
    # in the ranking every satisfying candidate comes before every violating one
    first_bad = np.argmax(~sat[order]) if (~sat).any() else len(order)
    assert sat[order][:first_bad].all() and not sat[order][first_bad:].any()
    assert sorted(order.tolist()) == list(range(len(sat)))


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(cands=st.lists(st.tuples(ANY_FLOAT, st.booleans()), min_size=1, max_size=12))
def test_satisfying_always_outranks_violating_10k(cands):
    """10,000 random cases: candidate sets with any personal reward (inf, nan, huge) and constraint outcome."""
    personal = np.array([c[0] for c in cands], dtype=np.float64)
    sat = np.array([c[1] for c in cands], dtype=bool)
    _assert_guarantee(personal, sat)


def test_guarantee_vectorized_sweep():
    """A further 200,000 random candidate sets with extreme rewards, checked at once."""
    rng = np.random.default_rng(0)
    n, k = 200_000, 8
    scale = 10.0 ** rng.integers(-3, 309, size=(n, 1))
    r = rng.standard_normal((n, k)) * scale
    r[rng.random((n, k)) < 0.02] = np.inf
    r[rng.random((n, k)) < 0.02] = -np.inf
    r[rng.random((n, k)) < 0.02] = np.nan
    sat = rng.random((n, k)) < 0.5
    b = OFFSET * sat + squash(r)
    lo = np.where(sat, b, np.inf).min(1)
    hi = np.where(~sat, b, -np.inf).max(1)
    mixed = sat.any(1) & (~sat).any(1)
    assert np.all(lo[mixed] > hi[mixed])


def test_squash_is_bounded_and_monotone():
    x = np.array([-np.inf, -1e308, -50, -1, 0, 1, 50, 1e308, np.inf, np.nan])
    s = squash(x)
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(np.diff(s[:-1]) >= 0)
    assert s[-1] == 0.0  # nan never helps


class _LinearModel:
    """A tiny linear-Gaussian model on hand-made 3-d features (the contract's score_posterior/prior/basis)."""

    def __init__(self, feats: dict[str, np.ndarray], mu: np.ndarray, B: np.ndarray, prior_cov: np.ndarray):
        self.feats, self.mu, self.B, self.cov = feats, mu, B, prior_cov

    def prior(self):
        from types import SimpleNamespace

        return SimpleNamespace(mean=np.zeros(self.B.shape[1]), cov=self.cov, n=0)

    def basis(self, prompts, responses):
        phi = np.stack([self.feats[r] for r in responses])
        return phi @ self.mu, phi @ self.B

    def score_posterior(self, w, prompts, responses):
        s, g = self.basis(prompts, responses)
        return s + g @ np.asarray(w, float)


def _policy(rho=2.0, consensus=False):
    return policy_from_dict(
        {
            "constraints": [
                {
                    "name": "harmless",
                    "scorer": {"type": "attribute", "column": "harm"},
                    "threshold": 0.5,
                    "direction": "max",
                }
            ],
            "trust_region": {"rho": rho},
            "consensus": {"enabled": consensus},
        },
        "test.yaml",
    )


@settings(max_examples=500, deadline=None, database=None)
@given(
    w=hnp.arrays(np.float64, 3, elements=ANY_FLOAT),
    harm=hnp.arrays(np.bool_, st.integers(2, 8)),
    feats=hnp.arrays(np.float64, (8, 3), elements=st.floats(-100, 100)),
    rho=st.one_of(st.none(), st.floats(0, 1e6)),
)
def test_bounded_policy_rank_and_reward_any_weights(w, harm, feats, rho):
    """Through BoundedPolicy: any personal weights (huge, inf, nan; with or without trust region), any candidates."""
    n = len(harm)
    texts = [f"response {i}" for i in range(n)]
    model = _LinearModel({t: feats[i] for i, t in enumerate(texts)}, np.ones(3), np.eye(3), np.eye(3))
    items = pd.DataFrame({"text": texts, "harm": harm.astype(float)})
    bp = BoundedPolicy(model, _policy(rho), scorers={"harmless": AttributeScorer("harm", items)})
    rk = bp.rank(w, "p", texts)
    sat = ~harm
    assert np.array_equal(rk.satisfied, sat)
    if sat.any():
        assert not harm[rk.order[: sat.sum()]].any()
        assert rk.choice in [t for t, h in zip(texts, harm, strict=False) if not h]
    else:
        assert rk.refused and rk.fallback
    r = bp.reward(w, "p", texts)
    if sat.any() and harm.any():
        assert r[sat].min() > r[harm].max()


def test_trust_region_projection():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 4))
    cov = A @ A.T + 0.1 * np.eye(4)
    m = rng.standard_normal(4)
    W = m + rng.standard_normal((500, 4)) * 10
    P = project_trust_region(W, m, cov, rho=1.5)
    d = mahalanobis(P, m, cov)
    assert np.all(d <= 1.5 + 1e-9)
    inside = mahalanobis(W, m, cov) <= 1.5
    assert np.allclose(P[inside], W[inside])
    # radial: the projected deviation is a positive multiple of the original one
    cosang = (
        np.einsum("ij,ij->i", P - m, W - m) / np.linalg.norm(P - m, axis=1) / np.linalg.norm(W - m, axis=1)
    )
    assert np.allclose(cosang, 1.0)
    # fixed dims stay at the population value; inf keeps its direction within the radius
    Q = project_trust_region(np.array([np.inf, 0, 0, -np.inf]), m, cov, rho=1.0, fixed=[1])
    assert Q[1] == m[1] and np.isfinite(Q).all() and mahalanobis(Q, m, cov)[0] <= 1.0 + 1e-9
    assert Q[0] > m[0] and Q[3] < m[3]


def test_consensus_shrinks_deviation():
    from personalign.bounds.trust import Agreement, consensus_scale

    assert consensus_scale(1.0) == 0.0 and consensus_scale(0.5) == 1.0 and 0 < consensus_scale(0.75) < 1
    texts = ["a", "b"]
    model = _LinearModel(
        {"a": np.array([1.0, 0, 0]), "b": np.array([0, 1.0, 0])}, np.zeros(3), np.eye(3), np.eye(3)
    )
    items = pd.DataFrame({"text": texts, "harm": [0.0, 0.0]})
    w = np.array([0.0, 1.5, 0.0])  # this person prefers "b"; the population is indifferent
    for agree, expect_pref in ((0.5, True), (1.0, False)):
        pol = _policy(rho=None, consensus=True)
        bp = BoundedPolicy(
            model,
            pol,
            scorers={"harmless": AttributeScorer("harm", items)},
            agreement=Agreement({"a": agree, "b": agree}),
        )
        r = bp.personal_reward(w, "p", texts)
        assert (r[1] > r[0]) == expect_pref
