"""Monitors calibrated on ordinary persons: the split-conformal flag threshold keeps a new ordinary person's flag
probability at or below the target, where the plain empirical quantile does not; the calibration report separates
what a monitor can see (a shifted planted group: high detection, AUC near 1) from what it cannot (AUC near 0.5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from personalign.bounds.monitors import calibrate_flag_threshold
from personalign.experiments.bounds import MONITOR_SCORES, monitor_calibration


def test_conformal_threshold_keeps_the_false_positive_rate_where_the_plain_quantile_does_not():
    rng = np.random.default_rng(0)
    n, fpr, draws = 39, 0.05, 3000
    conformal = [norm.sf(calibrate_flag_threshold(rng.standard_normal(n), fpr)) for _ in range(draws)]
    plain = [norm.sf(np.quantile(rng.standard_normal(n), 1 - fpr)) for _ in range(draws)]
    # expected flag probability of a new ordinary person (the exact guarantee is <= fpr; 3000 draws: se ~0.0007)
    assert np.mean(conformal) <= fpr + 0.002
    assert np.mean(plain) > fpr + 0.005  # the plain quantile flags more than it promises


def test_too_few_ordinary_persons_flag_nobody_and_bad_levels_are_refused():
    assert calibrate_flag_threshold([0.1, 0.2, 0.3], 0.05) == float("inf")
    assert calibrate_flag_threshold([1.0, np.nan, 2.0, 3.0], 0.5) == 2.0  # NaN ignored: ceil(4 * 0.5) = 2nd
    with pytest.raises(ValueError, match="fpr"):
        calibrate_flag_threshold([1.0], 0.0)


def _persons(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for kind, n in (("ordinary", 400), ("drifting", 60), ("adversarial", 60)):
        for _ in range(n):
            rows.append(
                {
                    "kind": kind,
                    # lock-in sees the drifting persons; sycophancy sees nobody; the bubble sees adversaries
                    "drift": rng.normal(4.0 if kind == "drifting" else 0.0),
                    "sycophancy_excess": rng.normal(),
                    "bubble_entropy_ratio": rng.normal(-4.0 if kind == "adversarial" else 0.0),
                }
            )
    return pd.DataFrame(rows)


def test_calibration_report_shows_what_each_monitor_can_and_cannot_see():
    cal = monitor_calibration(_persons(), fpr=0.05, seed=1)
    assert set(cal["monitors"]) == set(MONITOR_SCORES)
    assert cal["calibration_persons"] + cal["test_persons"] == 400
    lock, syc, bub = (cal["monitors"][k] for k in ("lock-in", "sycophancy", "filter bubble"))
    # on 200 new ordinary persons each monitor flags about its 5% target (exactly in expectation; sd ~2 points)
    fps = [m["false_positive"] for m in (lock, syc, bub)]
    assert all(fp["n"] == 200 and fp["rate"] <= 0.12 for fp in fps)
    assert np.mean([fp["rate"] for fp in fps]) <= 0.08
    assert lock["detection"]["drifting"]["rate"] > 0.8 and lock["roc"]["drifting"]["auc"] > 0.97
    assert lock["detection"]["adversarial"]["rate"] < 0.2
    assert abs(syc["roc"]["drifting"]["auc"] - 0.5) < 0.12 and syc["detection"]["drifting"]["rate"] < 0.2
    # a monitor flagging low values: the threshold is stated in the column's units, below the ordinary mean
    assert bub["flag_when"] == "below" and bub["threshold"] < 0
    assert bub["detection"]["adversarial"]["rate"] > 0.8 and bub["roc"]["adversarial"]["auc"] > 0.97
    roc = lock["roc"]["drifting"]
    assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0 and np.all(np.diff(roc["tpr"]) >= 0)


def test_a_person_without_a_score_is_never_flagged():
    df = _persons()
    df.loc[df["kind"] == "drifting", "drift"] = np.nan  # too little history for the monitor
    cal = monitor_calibration(df, fpr=0.05, seed=1)
    assert cal["monitors"]["lock-in"]["detection"]["drifting"]["k"] == 0


def test_a_threshold_with_confidence_keeps_the_rate_itself_under_the_target():
    """With ``confidence`` the false-positive rate of the calibrated threshold exceeds the target in at most
    1 - confidence of calibration sets; split conformal keeps it only on average (about half the sets exceed)."""
    rng = np.random.default_rng(1)
    n, fpr, draws = 200, 0.05, 2000
    sure = np.array(
        [norm.sf(calibrate_flag_threshold(rng.standard_normal(n), fpr, 0.95)) for _ in range(draws)]
    )
    conformal = np.array(
        [norm.sf(calibrate_flag_threshold(rng.standard_normal(n), fpr)) for _ in range(draws)]
    )
    assert np.mean(sure > fpr) <= 0.05 + 0.015  # 2000 draws: se ~0.005
    assert np.mean(conformal > fpr) > 0.3
    assert np.mean(sure) < np.mean(conformal)  # the price: fewer flags
    # too few persons for the promise: flag nobody (P(Bin(20, 0.05) = 0) = 0.36 > 0.05)
    assert calibrate_flag_threshold(rng.standard_normal(20), fpr, 0.95) == float("inf")
    with pytest.raises(ValueError, match="confidence"):
        calibrate_flag_threshold([1.0, 2.0], fpr, 1.0)
