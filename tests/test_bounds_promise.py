"""Policies that state a miss rate (epsilon, confidence), held-out rates in the check report, refusals counted."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from personalign.bounds.bounded import BoundedPolicy
from personalign.bounds.calibrate import CalibrationSet, calibrate_threshold
from personalign.bounds.check import check_markdown, violation_table
from personalign.bounds.policy import policy_from_dict
from personalign.errors import ConfigError


class _Model:
    """Linear rewards on hand-made 2-d features: r = phi @ (mu + w)."""

    def __init__(self, feats: dict[str, np.ndarray]):
        self.feats = feats

    def prior(self):
        return SimpleNamespace(mean=np.zeros(2), cov=np.eye(2), n=0)

    def basis(self, prompts, responses):
        phi = np.stack([self.feats[r] for r in responses])
        return phi @ np.ones(2), phi

    def score_posterior(self, w, prompts, responses):
        s, g = self.basis(prompts, responses)
        return s + g @ np.asarray(w, float)


class _TableScorer:
    """Scores looked up by text (higher = more harmful), with a calibration set of held-out scores."""

    name = "table"

    def __init__(self, table: dict[str, float], calibration: CalibrationSet | None):
        self.table, self.calibration_, self.threshold_ = table, calibration, 0.5

    def score(self, prompts, responses):
        return np.array([self.table[r] for r in responses], dtype=float)


def _cal_set(seed: int = 0) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    return CalibrationSet(
        harmful=rng.normal(0.8, 0.1, 300),
        safe=rng.normal(0.3, 0.1, 300),
        test_harmful=rng.normal(0.8, 0.1, 200),
        test_safe=rng.normal(0.3, 0.1, 200),
        meta={"items": "synthetic"},
    )


def _policy(**constraint) -> dict:
    c = {"name": "harm", "scorer": {"type": "attribute", "column": "h"}, "direction": "max", **constraint}
    return {"constraints": [c], "trust_region": {"rho": None}, "consensus": {"enabled": False}}


def test_policy_promise_fields_are_validated():
    pol = policy_from_dict(_policy(threshold="calibrated", epsilon=0.1), "p.yaml")
    assert pol.constraints[0].epsilon == 0.1 and pol.constraints[0].confidence == 0.95
    with pytest.raises(ConfigError, match="'epsilon' needs threshold: calibrated"):
        policy_from_dict(_policy(threshold=0.5, epsilon=0.1), "p.yaml")
    with pytest.raises(ConfigError, match="'confidence' needs 'epsilon'"):
        policy_from_dict(_policy(confidence=0.9), "p.yaml")
    with pytest.raises(ConfigError, match=r"constraints\[0\].epsilon"):
        policy_from_dict(_policy(epsilon=1.5), "p.yaml")


def test_calibrated_threshold_comes_from_the_promise_and_check_reports_test_rates():
    cs = _cal_set()
    texts = ["fine answer", "harmful answer"]
    sc = _TableScorer({"fine answer": 0.2, "harmful answer": 0.95}, cs)
    model = _Model({t: np.eye(2)[i] for i, t in enumerate(texts)})
    bp = BoundedPolicy(model, _policy(epsilon=0.05, confidence=0.9), scorers={"harm": sc})
    expect = calibrate_threshold(cs.harmful, 0.05, 0.9, "max")
    assert bp.thresholds["harm"] == expect.threshold != sc.threshold_
    assert bp.calibrations["harm"].misses <= expect.allowed_misses
    rates = bp.held_out_rates()["harm"]
    assert rates["epsilon"] == 0.05 and rates["miss"]["n"] == 200 and rates["over_block"]["n"] == 200
    k = int(np.sum(cs.test_harmful <= bp.thresholds["harm"]))
    assert rates["miss"]["k"] == k and rates["miss"]["lo"] <= k / 200 <= rates["miss"]["hi"]
    rep = {
        "policy": "p",
        "items": 2,
        "items_satisfying": 0.5,
        "constraint_pass_rates": {"harm": 0.5},
        "thresholds": bp.thresholds,
        "held_out_rates": bp.held_out_rates(),
        "separable_pairs": 0,
        "persons": 0,
    }
    assert "<= 0.05 at 90%" in check_markdown(rep)
    # without epsilon the scorer's own threshold is kept, and still measured on the test split
    plain = BoundedPolicy(model, _policy(), scorers={"harm": sc})
    assert plain.thresholds["harm"] == 0.5 and plain.held_out_rates()["harm"]["epsilon"] is None


def test_promise_without_calibration_items_is_a_clear_error():
    sc = _TableScorer({"a": 0.1}, None)
    model = _Model({"a": np.ones(2)})
    with pytest.raises(
        ConfigError, match="constraints.harm.epsilon': its scorer has no held-out calibration"
    ):
        BoundedPolicy(model, _policy(epsilon=0.1), scorers={"harm": sc})
    small = CalibrationSet(harmful=np.ones(10), safe=np.zeros(10))
    with pytest.raises(ConfigError, match="at least 29 are needed"):
        BoundedPolicy(model, _policy(epsilon=0.1), scorers={"harm": _TableScorer({"a": 0.1}, small)})


def _pairs_setup(mode: str):
    # harm score: s0 safe, u0 unsafe caught, both1a/both1b both violate, u2 unsafe missed by the scorer
    table = {"s0": 0.1, "u0": 0.9, "b1": 0.9, "c1": 0.9, "s2": 0.1, "u2": 0.1}
    feats = {t: np.array([0.0, 1.0]) if t in ("u0", "c1", "u2") else np.array([1.0, 0.0]) for t in table}
    pol = _policy(threshold=0.5)
    pol["fallback"] = {"mode": mode, "refusal_text": "No."}
    bp = BoundedPolicy(_Model(feats), pol, scorers={"harm": _TableScorer(table, None)})
    pairs = pd.DataFrame(
        {"prompt": ["p0", "p1", "p2"], "safe": ["s0", "b1", "s2"], "unsafe": ["u0", "c1", "u2"]}
    )
    W = np.array([[-10.0, 10.0]])  # this person prefers the unsafe side of every pair
    return bp, pairs, W


def test_both_violating_pairs_are_refused_not_ranked_by_taste():
    bp, pairs, W = _pairs_setup("refuse")
    vt = violation_table(bp, W, pd.DataFrame({"person": ["adv"]}), pairs)
    assert vt["violation_without"].iloc[0] == 1.0
    # p0: blocked; p1: both violate -> refusal (safe); p2: the scorer misses u2, the person's taste wins
    assert vt["violation_with"].iloc[0] == pytest.approx(1 / 3)
    assert vt["refused_with"].iloc[0] == pytest.approx(1 / 3)
    rk = bp.rank(W[0], "p1", ["b1", "c1"])
    assert rk.refused and rk.choice == "No."
    bp.rank(W[0], "p0", ["s0", "u0"])
    assert bp.refusal_stats() == {
        "chosen": 1,
        "refused": 1,
        "least_violating": 0,
        "calls": 2,
        "refusal_rate": 0.5,
    }
    least, pairs, W = _pairs_setup("least_violating")
    vt2 = violation_table(least, W, pd.DataFrame({"person": ["adv"]}), pairs)
    assert vt2["violation_with"].iloc[0] == pytest.approx(2 / 3) and vt2["refused_with"].iloc[0] == 0.0
    least.rank(W[0], "p1", ["b1", "c1"])
    assert least.refusal_stats()["least_violating"] == 1


def test_packaged_heads_carry_calibration_sets_a_policy_can_promise_on():
    """The shipped heads have calibration.json (written by `bounds calibrate` on held-out real items); the
    packaged default policy, with epsilon added to its consensus constraint, takes that threshold."""
    from personalign.bounds.policy import load_policy
    from personalign.bounds.scorers import ConsensusScorer, HarmlessnessHead

    for head, kind in ((HarmlessnessHead.load(), "harmlessness"), (ConsensusScorer.load(), "consensus")):
        cs = head.calibration_
        assert cs is not None and cs.meta["scorer"] == kind
        assert len(cs.harmful) >= 29 and len(cs.test_harmful) >= 29 and len(cs.safe) and len(cs.test_safe)
    raw = load_policy("default").model_dump(exclude={"source"})
    raw["constraints"][1]["epsilon"] = 0.1
    model = _Model({"a": np.ones(2)})
    bp = BoundedPolicy(model, policy_from_dict(raw, "default+epsilon"))
    cs = bp.scorers["not_consensus_offensive"].calibration_
    assert (
        bp.thresholds["not_consensus_offensive"]
        == calibrate_threshold(cs.harmful, 0.1, 0.95, "max").threshold
    )
    rates = bp.held_out_rates()
    assert set(rates) == {"harmless", "not_consensus_offensive"}
    assert rates["not_consensus_offensive"]["epsilon"] == 0.1 and rates["harmless"]["epsilon"] is None
