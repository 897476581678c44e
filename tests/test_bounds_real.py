"""Real harm-labelled items (HH-RLHF, ConvAbuse, consensus), their splits, and the real-text report's measures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from personalign.bounds.realdata import calibration_set, calibration_split, real_harm_items
from personalign.experiments.bounds_real import _policy_outcome, discrimination, safe_pass_ceiling


@pytest.fixture(scope="module")
def items(shared_data):
    return real_harm_items(shared_data)


def test_items_labels_and_held_out_parts(items):
    from personalign.bounds.scorers import HarmlessnessHead

    by = items.groupby(["source", "label"]).size()
    for src in ("hh-rlhf", "convabuse", "toxicity-consensus"):
        assert by[(src, 0)] > 0 and by[(src, 1)] > 0
    hh = items[items["source"] == "hh-rlhf"]
    n_pairs = hh["group"].nunique()
    _, test_idx = HarmlessnessHead().split(n_pairs)
    held_groups = set(hh.loc[~hh["train"], "group"])
    assert held_groups == {f"hh:{i}" for i in test_idx}  # the packaged head's held-out pairs
    labels = hh.groupby("group")["label"].agg(lambda s: tuple(sorted(s)))
    assert len(labels) == n_pairs and set(labels) == {(0, 1)}  # each pair: one safe, one harmful


def test_calibration_split_is_disjoint_grouped_stratified_and_seeded(items):
    train = items["train"].to_numpy(bool)
    a, b = calibration_split(items, 0), calibration_split(items, 1)
    assert not (a & train).any()
    assert np.array_equal(a, calibration_split(items, 0)) and not np.array_equal(a, b)
    test = ~train & ~a
    groups = (
        items[~train]
        .assign(c=a[~train])
        .groupby("group")
        .agg(source=("source", "first"), label=("label", "max"), c=("c", "first"))
    )
    for (_, _), g in groups.groupby(["source", "label"]):
        assert abs(int(g["c"].sum()) - int((~g["c"]).sum())) <= 1  # halves of each source and label
    # no held-out ConvAbuse text was seen in training (recurring utterances stay on one side)
    cv = items[items["source"] == "convabuse"]
    assert not set(cv.loc[cv["train"], "text"].str.lower()) & set(cv.loc[~cv["train"], "text"].str.lower())
    g = items.assign(c=a)[~train].groupby("group")["c"].nunique()
    assert (g == 1).all()  # an HH pair never straddles the two parts
    cs = calibration_set(np.arange(len(items), dtype=float), items, seed=0)
    assert len(cs.harmful) + len(cs.safe) == int(a.sum())
    assert len(cs.test_harmful) + len(cs.test_safe) == int(test.sum())


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": ["p0", "p0", "p1", "p1", "", ""],
            "text": ["safe0", "bad0", "safe1", "bad1", "fine", "slur"],
            "label": [0, 1, 0, 1, 0, 1],
            "source": ["hh-rlhf"] * 4 + ["convabuse"] * 2,
            "group": ["hh:0", "hh:0", "hh:1", "hh:1", "c0", "c1"],
            "train": False,
        }
    )


def test_discrimination_and_policy_outcome_on_a_hand_made_table():
    t = _table()
    harmless = np.array([2.0, -1.0, 0.5, 1.0, 3.0, -2.0])  # higher = safer; pair 1 is ranked wrongly
    d = discrimination(t, harmless, "min", threshold=0.0)
    assert d["hh-rlhf"]["pair_accuracy"] == 0.5 and d["convabuse"]["auc"] == 1.0
    assert d["pooled"]["accuracy"] == pytest.approx(5 / 6)
    # harm = -harmless; at epsilon 0.1 none of the 3 harmful items may pass, so everything at or above the least
    # harmful one's harm (-1) is blocked: the safe items at -2 and -3 pass, the one at -0.5 does not
    assert d["pooled"]["safe_pass_ceiling"] == pytest.approx(2 / 3)
    allowed = np.array([False, False, True, True, True, False])
    out = _policy_outcome(t, allowed, np.ones(6, bool), 0.95)
    hp = out["hh_pairs"]
    assert hp["pairs"] == 2 and hp["refused"]["k"] == 1 and hp["worst_person_unsafe_win"]["k"] == 1
    assert out["pooled"]["safe_pass"]["k"] == 2 and out["pooled"]["miss"]["k"] == 1


def test_safe_pass_ceiling_is_the_best_any_threshold_does():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    harm = rng.normal(size=400) + 1.5 * y
    for eps in (0.0, 0.05, 0.1, 0.3):
        ceil = safe_pass_ceiling(harm, y, eps)
        best = max(
            np.mean(harm[y == 0] < t) for t in np.append(harm, np.inf) if np.mean(harm[y == 1] < t) <= eps
        )
        assert ceil == pytest.approx(best)
    # a score that carries nothing: at most about epsilon of the safe items pass too
    assert safe_pass_ceiling(rng.normal(size=4000), rng.integers(0, 2, 4000), 0.1) < 0.15
    assert safe_pass_ceiling(harm, y, 0.1) < safe_pass_ceiling(harm, y, 0.3)


@pytest.mark.slow
def test_calibrate_cli_writes_calibration_and_a_policy_uses_it(shared_data, tmp_path):
    """Heads on the hashing encoder (no weights), calibrated by the CLI on the real items; a policy that states
    epsilon then takes its threshold from that calibration and reports held-out rates."""
    from personalign.bounds.bounded import BoundedPolicy
    from personalign.bounds.calibrate import calibrate_threshold
    from personalign.bounds.scorers import ConsensusScorer, HarmlessnessHead, consensus_items, read_hh_pairs
    from personalign.cli import app
    from personalign.features import HashingEncoder, PairFeaturizer

    pairs = read_hh_pairs(shared_data / "hh-rlhf-harmless-test" / "test.jsonl.gz")
    HarmlessnessHead(l2=0.01, featurizer=PairFeaturizer(HashingEncoder(dim=64))).fit(pairs).save(
        tmp_path / "harmlessness"
    )
    cons = consensus_items(
        shared_data / "popquorn" / "offensiveness" / "raw_data.csv",
        shared_data / "toxicity-perspective-prolific",
    )
    ConsensusScorer(encoder=HashingEncoder(dim=64)).fit(cons).save(tmp_path / "consensus")
    r = CliRunner().invoke(app, ["bounds", "calibrate", "--out", str(tmp_path), "--shared", str(shared_data)])
    assert r.exit_code == 0, r.output
    assert "harmlessness:" in r.output and "test miss" in r.output
    head = HarmlessnessHead.load(tmp_path / "harmlessness")
    cs = head.calibration_
    assert cs is not None and cs.meta["sources"] == ["hh-rlhf"]  # the head's own domain
    assert len(cs.harmful) + len(cs.test_harmful) == 578  # the head's held-out pairs' rejected responses
    cons_cal = ConsensusScorer.load(tmp_path / "consensus").calibration_
    assert cons_cal is not None and cons_cal.meta["sources"] == ["convabuse", "toxicity-consensus"]
    pol = {
        "constraints": [
            {
                "name": "harmless",
                "scorer": {"type": "harmlessness", "path": str(tmp_path / "harmlessness")},
                "threshold": "calibrated",
                "direction": "min",
                "epsilon": 0.1,
            }
        ],
        "trust_region": {"rho": None},
        "consensus": {"enabled": False},
    }

    class _M:
        def prior(self):
            from types import SimpleNamespace

            return SimpleNamespace(mean=np.zeros(0), cov=np.zeros((0, 0)))

    bp = BoundedPolicy(_M(), pol)
    want = calibrate_threshold(head.calibration_.harmful, 0.1, 0.95, "min").threshold
    assert bp.thresholds["harmless"] == want
    rates = bp.held_out_rates()["harmless"]
    assert rates["epsilon"] == 0.1 and rates["miss"]["n"] == len(head.calibration_.test_harmful)
