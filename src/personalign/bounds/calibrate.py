"""Scorer thresholds with a stated miss rate: the share of harmful items a constraint lets through, bounded.

A constraint lets a harmful item through (a *miss*) when the item's score is on the allowed side of the threshold.
:func:`calibrate_threshold` picks, from the scores of labelled harmful items held out from the scorer's training
(the *calibration split*), the least blocking threshold whose miss rate is at most ``epsilon`` with probability at
least ``confidence`` over the draw of that split:

- ``binomial`` (default): let k(t) be the number of calibration harmful items that pass t. The threshold is set so
  that k(t) <= k*, the largest k whose one-sided Clopper-Pearson upper bound at ``confidence`` is <= epsilon
  (equivalently P(Binomial(n, epsilon) <= k*) <= 1 - confidence). For exchangeable items with continuous scores the
  chosen threshold is an order statistic of the calibration scores, and P(miss rate > epsilon) <= 1 - confidence
  exactly, with no correction for having looked at every candidate threshold (the miss rate is monotone in t).
- ``conformal`` (conformal risk control with the 0/1 miss loss): (k(t) + 1) / (n + 1) <= epsilon, which bounds the
  *expected* miss rate by epsilon (marginally over calibration draws) and says nothing about one draw.

:func:`held_out_rates` then measures the achieved miss and over-block rates on a separate test split, each with a
two-sided Clopper-Pearson interval (scipy's exact binomial interval). :class:`CalibrationSet` holds a scorer's
calibration and test scores (``calibration.json`` beside a packaged head), so a policy can state ``epsilon`` and
``confidence`` and get the threshold at load time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats

from personalign.errors import ConfigError

CALIBRATION_FILE = "calibration.json"
Direction = Literal["min", "max"]
Method = Literal["binomial", "conformal"]


def _check_level(name: str, v: float) -> float:
    v = float(v)
    if not 0.0 < v < 1.0:
        raise ConfigError(f"{name} must be strictly between 0 and 1, got {v}")
    return v


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson) interval for a binomial share k / n; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def binomial_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a share from k successes in n trials (1 when k = n or n = 0)."""
    if n <= 0 or k >= n:
        return 1.0
    return float(stats.beta.ppf(confidence, k + 1, n - k))


def allowed_misses(n: int, epsilon: float, confidence: float = 0.95, method: Method = "binomial") -> int:
    """k*: the most calibration harmful items (of ``n``) a threshold may let through; -1 when none may (``n`` is
    too small for ``epsilon`` at ``confidence``, see :func:`min_calibration_items`)."""
    epsilon = _check_level("epsilon", epsilon)
    if method == "conformal":
        return int(math.floor(epsilon * (n + 1) - 1 + 1e-12))
    if method != "binomial":
        raise ConfigError(f"unknown calibration method {method!r} (expected 'binomial' or 'conformal')")
    delta = 1.0 - _check_level("confidence", confidence)
    cdf = stats.binom.cdf(np.arange(n + 1), n, epsilon)  # P(Bin(n, eps) <= k), increasing in k
    ok = np.flatnonzero(cdf <= delta)
    return int(ok[-1]) if ok.size else -1


def min_calibration_items(epsilon: float, confidence: float = 0.95, method: Method = "binomial") -> int:
    """The fewest harmful calibration items for which some threshold meets ``epsilon`` at ``confidence``."""
    epsilon = _check_level("epsilon", epsilon)
    if method == "conformal":
        return int(math.ceil(1.0 / epsilon - 1 - 1e-12))
    delta = 1.0 - _check_level("confidence", confidence)
    return int(math.ceil(math.log(delta) / math.log(1.0 - epsilon) - 1e-12))


def passes(scores: np.ndarray, threshold: float, direction: Direction) -> np.ndarray:
    """Which scores satisfy ``score >= threshold`` (min) or ``<=`` (max); NaN never passes (fail closed)."""
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = s >= threshold if direction == "min" else s <= threshold
    return ok & np.isfinite(s)


@dataclass(frozen=True)
class Rate:
    """k of n with its share and two-sided Clopper-Pearson interval."""

    k: int
    n: int
    rate: float
    lo: float
    hi: float

    @classmethod
    def of(cls, k: int, n: int, confidence: float = 0.95) -> Rate:
        """k of n with its interval at ``confidence`` (rate NaN when n is 0)."""
        lo, hi = clopper_pearson(k, n, confidence)
        return cls(int(k), int(n), float(k / n) if n else float("nan"), lo, hi)

    def to_dict(self) -> dict[str, Any]:
        """``{k, n, rate, lo, hi}``."""
        return {"k": self.k, "n": self.n, "rate": self.rate, "lo": self.lo, "hi": self.hi}


@dataclass(frozen=True)
class ThresholdCalibration:
    """The outcome of :func:`calibrate_threshold`."""

    threshold: float
    direction: Direction
    epsilon: float
    confidence: float
    method: Method
    n_harmful: int
    allowed_misses: int
    misses: int
    miss_upper: float
    over_block: Rate | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (the over-block rate as a :meth:`Rate.to_dict`)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "over_block"}
        d["over_block"] = self.over_block.to_dict() if self.over_block is not None else None
        return d


def calibrate_threshold(
    harmful_scores: Sequence[float] | np.ndarray,
    epsilon: float,
    confidence: float = 0.95,
    direction: Direction = "min",
    safe_scores: Sequence[float] | np.ndarray | None = None,
    method: Method = "binomial",
) -> ThresholdCalibration:
    """The least blocking threshold whose miss rate on harmful items is <= ``epsilon`` at ``confidence``.

    ``harmful_scores``: the scorer's scores of harmful items held out from its training; ``direction`` as in the
    constraint (``min``: an item passes when score >= threshold, so harmful items should score low). NaN scores
    count as blocked. ``safe_scores`` (optional, the same split's safe items) give the over-block rate on the
    calibration split. ConfigError when there are too few harmful items for the promise.
    """
    if direction not in ("min", "max"):
        raise ConfigError(f"direction must be 'min' or 'max', got {direction!r}")
    h = np.asarray(harmful_scores, dtype=np.float64).reshape(-1)
    n = int(h.size)
    kstar = allowed_misses(n, epsilon, confidence, method)
    if kstar < 0:
        need = min_calibration_items(epsilon, confidence, method)
        raise ConfigError(
            f"{n} harmful calibration items cannot support a miss rate <= {epsilon} at confidence {confidence} "
            f"({method}); at least {need} are needed"
        )
    # orient so that an item passes when its oriented score is >= the oriented threshold; NaN -> never passes
    o = h if direction == "min" else -h
    o = np.where(np.isfinite(o), o, -np.inf)
    desc = np.sort(o)[::-1]
    if kstar >= n:
        t_or = -np.inf
    else:
        # just above the (k*+1)-th largest: at most k* items (those strictly above it) pass, ties blocked
        t_or = float(np.nextafter(desc[kstar], np.inf))
    threshold = t_or if direction == "min" else -t_or
    k = int(passes(h, threshold, direction).sum())
    ob = None
    if safe_scores is not None:
        s = np.asarray(safe_scores, dtype=np.float64).reshape(-1)
        ob = Rate.of(int((~passes(s, threshold, direction)).sum()), int(s.size), confidence)
    return ThresholdCalibration(
        threshold=float(threshold),
        direction=direction,
        epsilon=float(epsilon),
        confidence=float(confidence),
        method=method,
        n_harmful=n,
        allowed_misses=kstar,
        misses=k,
        miss_upper=binomial_upper(k, n, confidence),
        over_block=ob,
    )


def held_out_rates(
    harmful_scores: Sequence[float] | np.ndarray,
    safe_scores: Sequence[float] | np.ndarray,
    threshold: float,
    direction: Direction = "min",
    confidence: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Achieved ``miss`` (harmful items that pass) and ``over_block`` (safe items blocked) rates at ``threshold``,
    each ``{k, n, rate, lo, hi}`` with a two-sided Clopper-Pearson interval at ``confidence``."""
    h = np.asarray(harmful_scores, dtype=np.float64).reshape(-1)
    s = np.asarray(safe_scores, dtype=np.float64).reshape(-1)
    miss = Rate.of(int(passes(h, threshold, direction).sum()), int(h.size), confidence)
    over = Rate.of(int((~passes(s, threshold, direction)).sum()), int(s.size), confidence)
    return {"miss": miss.to_dict(), "over_block": over.to_dict()}


@dataclass
class CalibrationSet:
    """A scorer's scores of labelled items held out from its training: a calibration split (``harmful``,
    ``safe``) that sets thresholds, and a separate test split (``test_harmful``, ``test_safe``) that measures them.
    ``meta`` says where the items came from."""

    harmful: np.ndarray
    safe: np.ndarray
    test_harmful: np.ndarray = field(default_factory=lambda: np.zeros(0))
    test_safe: np.ndarray = field(default_factory=lambda: np.zeros(0))
    meta: dict[str, Any] = field(default_factory=dict)

    def calibrate(
        self,
        epsilon: float,
        confidence: float = 0.95,
        direction: Direction = "min",
        method: Method = "binomial",
    ) -> ThresholdCalibration:
        """:func:`calibrate_threshold` on the calibration split."""
        return calibrate_threshold(self.harmful, epsilon, confidence, direction, self.safe, method)

    def test_rates(
        self, threshold: float, direction: Direction = "min", confidence: float = 0.95
    ) -> dict[str, dict[str, Any]] | None:
        """:func:`held_out_rates` on the test split (None when it is empty)."""
        if not len(self.test_harmful) and not len(self.test_safe):
            return None
        return held_out_rates(self.test_harmful, self.test_safe, threshold, direction, confidence)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe content of ``calibration.json``."""
        arr = {
            k: [float(v) for v in getattr(self, k)] for k in ("harmful", "safe", "test_harmful", "test_safe")
        }
        return {"kind": "CalibrationSet", "format_version": 1, "meta": self.meta, **arr}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<calibration>") -> CalibrationSet:
        """Rebuild from :meth:`to_dict` output (ConfigError naming ``source`` when it is not one)."""
        if not isinstance(d, Mapping) or d.get("kind") != "CalibrationSet":
            raise ConfigError(f"{source}: field 'kind': expected 'CalibrationSet'")
        try:
            arrays = {
                k: np.asarray(d.get(k, []), dtype=np.float64).reshape(-1)
                for k in ("harmful", "safe", "test_harmful", "test_safe")
            }
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: scores must be lists of numbers ({exc})") from None
        return cls(**arrays, meta=dict(d.get("meta") or {}))

    def save(self, directory: str | Path) -> Path:
        """Write ``calibration.json`` into ``directory`` (atomically)."""
        from personalign.data.io import write_text_atomic

        path = Path(directory) / CALIBRATION_FILE
        write_text_atomic(path, json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> CalibrationSet | None:
        """The ``calibration.json`` of a scorer folder, or None when it has none."""
        path = Path(directory) / CALIBRATION_FILE
        if not path.exists():
            return None
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(d, str(path))
