"""Calibrated scorer thresholds: the miss rate promise holds over many draws, intervals, errors, round trips."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from personalign.bounds.calibrate import (
    CalibrationSet,
    Rate,
    allowed_misses,
    binomial_upper,
    calibrate_threshold,
    clopper_pearson,
    held_out_rates,
    min_calibration_items,
)
from personalign.errors import ConfigError

EPS, CONF = 0.1, 0.95


def _youden(pos: np.ndarray, neg: np.ndarray) -> float:
    cuts = np.unique(np.concatenate([pos, neg]))
    return float(cuts[np.argmax([(pos >= t).mean() - (neg >= t).mean() for t in cuts])])


def test_miss_rate_exceeds_epsilon_no_more_often_than_delta_allows():
    """A synthetic scorer with a known miss rate: harmful ~ N(0, 1), safe ~ N(2, 1), pass when score >= t, so the
    true miss rate of t is 1 - Phi(t). Over 400 calibration draws the calibrated threshold's true miss rate (and
    its rate on a large test split) exceeds epsilon about delta of the time; Youden's threshold (t near 1, miss
    ~0.16) exceeds it nearly always."""
    seeds = 400
    exceed_true = exceed_test = exceed_youden = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        harm, safe = rng.normal(0, 1, 200), rng.normal(2, 1, 200)
        cal = calibrate_threshold(harm, EPS, CONF, "min", safe)
        assert cal.misses <= cal.allowed_misses
        exceed_true += stats.norm.sf(cal.threshold) > EPS
        test = rng.normal(0, 1, 20000)
        exceed_test += np.mean(test >= cal.threshold) > EPS
        exceed_youden += stats.norm.sf(_youden(harm, safe)) > EPS
    # delta = 5%: the count of exceedances is at most Binomial(400, 0.05)'s 99.9% quantile
    cap = stats.binom.ppf(0.999, seeds, 1 - CONF)
    assert exceed_true <= cap, (exceed_true, cap)
    assert exceed_test <= cap + 8, (exceed_test, cap)  # the test split adds a little sampling noise
    assert exceed_youden >= 0.9 * seeds


def test_max_direction_and_conformal_expected_miss():
    """direction max (harmful items score high); conformal risk control bounds the mean miss rate by epsilon."""
    true_miss = []
    for seed in range(300):
        rng = np.random.default_rng(1000 + seed)
        harm = rng.normal(3, 1, 100)  # p(offensive)-like: harmful is high, pass when score <= t
        cal = calibrate_threshold(harm, EPS, CONF, "max", method="conformal")
        assert np.sum(harm <= cal.threshold) == cal.misses <= cal.allowed_misses
        true_miss.append(stats.norm.cdf(cal.threshold, loc=3))
    assert np.mean(true_miss) <= EPS + 0.01
    assert np.mean(true_miss) >= EPS - 0.03  # and not needlessly strict


def test_allowed_misses_is_the_clopper_pearson_cut():
    n = 300
    k = allowed_misses(n, EPS, CONF)
    assert binomial_upper(k, n, CONF) <= EPS < binomial_upper(k + 1, n, CONF)
    assert allowed_misses(28, EPS, CONF) == -1 and allowed_misses(29, EPS, CONF) == 0
    assert min_calibration_items(EPS, CONF) == 29
    assert allowed_misses(99, EPS, method="conformal") == 9


def test_ties_and_nan_never_let_more_than_allowed_through():
    harm = np.array([0.5] * 40 + [np.nan] * 5 + list(np.linspace(-1, 0, 55)))
    cal = calibrate_threshold(harm, EPS, CONF, "min")
    passed = np.sum(harm[np.isfinite(harm)] >= cal.threshold)
    assert passed == cal.misses <= cal.allowed_misses  # the tie group at 0.5 is blocked as a whole
    assert cal.n_harmful == 100


def test_too_few_items_and_bad_levels_are_clear_errors():
    with pytest.raises(ConfigError, match="at least 29 are needed"):
        calibrate_threshold(np.zeros(10), EPS, CONF)
    with pytest.raises(ConfigError, match="epsilon must be strictly between 0 and 1"):
        calibrate_threshold(np.zeros(100), 1.5)
    with pytest.raises(ConfigError, match="direction"):
        calibrate_threshold(np.zeros(100), EPS, CONF, "up")  # type: ignore[arg-type]


def test_held_out_rates_and_intervals():
    r = held_out_rates([0.1, 0.2, 0.9, np.nan], [0.8, 0.3, 0.95], threshold=0.5, direction="min")
    assert r["miss"]["k"] == 1 and r["miss"]["n"] == 4 and r["over_block"]["k"] == 1
    lo, hi = clopper_pearson(1, 4)
    assert r["miss"]["lo"] == pytest.approx(lo) and r["miss"]["hi"] == pytest.approx(hi)
    assert lo < 0.25 < hi and Rate.of(0, 0).rate != Rate.of(0, 0).rate  # nan for no items


def test_calibration_set_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    cs = CalibrationSet(
        rng.normal(0, 1, 100), rng.normal(2, 1, 100), rng.normal(0, 1, 50), rng.normal(2, 1, 50)
    )
    cs.meta = {"items": "synthetic"}
    cs.save(tmp_path)
    back = CalibrationSet.load(tmp_path)
    assert back is not None and back.meta == {"items": "synthetic"}
    np.testing.assert_array_equal(back.harmful, cs.harmful)
    cal = back.calibrate(EPS, CONF)
    rates = back.test_rates(cal.threshold)
    assert rates is not None and rates["miss"]["n"] == 50
    assert CalibrationSet.load(tmp_path / "nowhere") is None
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        CalibrationSet.load(tmp_path)
