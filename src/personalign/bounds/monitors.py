"""Monitors for the known risks of personalization: filter bubbles, value lock-in, sycophancy, poisoning.

Each monitor returns a JSON-safe dict of findings with a boolean ``flag`` and the threshold it used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from personalign.errors import DataError


def _entropy(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) if len(p) else 0.0


# ------------------------------------------------------------------------------------------ filter bubble
def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Centroids of k-means (k-means++ seeding, Lloyd iterations) on rows of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    k = min(k, len(x))
    rng = np.random.default_rng(seed)
    cent = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.array(cent)[None]) ** 2).sum(-1), axis=1)
        cent.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    c = np.array(cent)
    for _ in range(iters):
        lab = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[lab == j].mean(0) if np.any(lab == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


class FilterBubbleMonitor:
    """Diversity of what a person was shown against the population: H(clusters shown to u) / H(clusters shown to all).

    Items are grouped by k-means on their embeddings (or by a categorical attribute given as labels). A ratio
    below ``min_entropy_ratio`` flags a filter bubble; ``coverage`` is the share of clusters the person has seen.
    """

    def __init__(self, n_clusters: int = 8, min_entropy_ratio: float = 0.5, seed: int = 0) -> None:
        self.n_clusters, self.min_entropy_ratio, self.seed = n_clusters, min_entropy_ratio, seed

    def fit(self, item_embeddings: np.ndarray) -> FilterBubbleMonitor:
        """Cluster the item embeddings (k-means, ``n_clusters``) into the topics that diversity is measured
        over."""
        self.centroids_ = kmeans(item_embeddings, self.n_clusters, self.seed)
        return self

    def clusters(self, embeddings: np.ndarray) -> np.ndarray:
        """The nearest fitted centroid of each embedding (its topic label)."""
        e = np.asarray(embeddings, dtype=np.float64)
        return np.argmin(((e[:, None, :] - self.centroids_[None]) ** 2).sum(-1), axis=1)

    def assess(self, shown: np.ndarray, population_shown: np.ndarray) -> dict[str, Any]:
        """``shown``/``population_shown``: embeddings (n, d) or integer cluster labels (n,) of shown items."""
        k = len(self.centroids_) if hasattr(self, "centroids_") else self.n_clusters

        def labels(a: np.ndarray) -> np.ndarray:
            a = np.asarray(a)
            return a.astype(int) if a.ndim == 1 else self.clusters(a)

        lu, lp = labels(shown), labels(population_shown)
        pu = np.bincount(lu, minlength=k) / max(len(lu), 1)
        pp = np.bincount(lp, minlength=k) / max(len(lp), 1)
        hu, hp = _entropy(pu), _entropy(pp)
        ratio = hu / hp if hp > 0 else 1.0
        return {
            "entropy": hu,
            "population_entropy": hp,
            "entropy_ratio": ratio,
            "coverage": float(np.mean(pu > 0)),
            "population_coverage": float(np.mean(pp > 0)),
            "n_shown": int(len(lu)),
            "threshold": self.min_entropy_ratio,
            "flag": bool(ratio < self.min_entropy_ratio),
        }


def mmr_rerank(
    rewards: np.ndarray,
    embeddings: np.ndarray,
    strength: float,
    history: np.ndarray | None = None,
    satisfied: np.ndarray | None = None,
) -> np.ndarray:
    """Diversity-aware order (maximal marginal relevance): greedily pick
    argmax (1 - lambda) * r~_i - lambda * max_j cos(e_i, e_j) over items j already picked or in ``history``,
    with r~ the rewards min-max scaled to [0, 1] and lambda = ``strength`` in [0, 1] (0 = plain reward order).

    With ``satisfied`` the bounds are kept: every satisfying item is placed before every violating one
    (re-ranking happens within each tier), so diversity never lets a violating candidate up.
    """
    r = np.asarray(rewards, dtype=np.float64)
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    lam = float(np.clip(strength, 0.0, 1.0))
    if satisfied is not None:
        sat = np.asarray(satisfied, bool)
        out = []
        for tier in (np.flatnonzero(sat), np.flatnonzero(~sat)):
            if len(tier):
                sub = mmr_rerank(r[tier], e[tier], lam, history)
                out.extend(tier[sub].tolist())
                history = e[tier] if history is None else np.vstack([history, e[tier]])
        return np.array(out, dtype=int)
    rr = np.where(np.isfinite(r), r, np.where(r > 0, 1e300, -1e300))
    span = rr.max() - rr.min() if len(rr) else 0.0
    rn = (rr - rr.min()) / span if span > 0 else np.zeros_like(rr)
    picked: list[int] = []
    hist = None if history is None or len(history) == 0 else np.asarray(history, dtype=np.float64)
    if hist is not None:
        hist = hist / np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-12)
    sim_max = np.full(len(r), -np.inf) if hist is None else (e @ hist.T).max(1)
    left = np.ones(len(r), bool)
    for _ in range(len(r)):
        pen = np.where(np.isfinite(sim_max), sim_max, 0.0)
        val = (1 - lam) * rn - lam * pen
        val[~left] = -np.inf
        i = int(np.argmax(val))
        picked.append(i)
        left[i] = False
        sim_max = np.maximum(sim_max, e @ e[i])
    return np.array(picked, dtype=int)


# ------------------------------------------------------------------------------------------- value lock-in
def decay_weights(
    timestamps: Sequence[float], half_life: float | None, now: float | None = None
) -> np.ndarray:
    """Evidence weight 0.5^((now - t) / half_life) per judgment (missing times count as the oldest one)."""
    t = np.asarray(pd.to_numeric(pd.Series(timestamps), errors="coerce"), dtype=np.float64)
    if half_life is None or len(t) == 0:
        return np.ones(len(t))
    if np.all(np.isnan(t)):
        # no times: the row order is the time order
        t = np.arange(len(t), dtype=np.float64)
    t = np.where(np.isnan(t), np.nanmin(t), t)
    now = float(np.nanmax(t)) if now is None else float(now)
    return 0.5 ** (np.maximum(now - t, 0.0) / half_life)


def decayed_adapt(model: Any, examples: pd.DataFrame, half_life: float | None, prior: Any = None, now=None):
    """The person's posterior with old judgments down-weighted by a half-life (``weight`` column * decay)."""
    ex = examples.copy()
    base = ex["weight"].fillna(1.0).to_numpy(float) if "weight" in ex.columns else np.ones(len(ex))
    ts = ex["timestamp"] if "timestamp" in ex.columns else pd.Series([np.nan] * len(ex))
    ex["weight"] = base * decay_weights(ts, half_life, now)
    return model.adapt(ex, prior=prior)


def reset_person(model: Any, user_row: dict | None = None):
    """Reset: forget a person's evidence and start again from the population (or demographic) prior."""
    return model.prior(user_row)


def _margins(model: Any, posterior: Any, examples: pd.DataFrame) -> np.ndarray:
    prompts = examples["prompt"].fillna("").astype(str).tolist()
    rc = model.score_posterior(posterior, prompts, examples["chosen"].astype(str).tolist())
    rr = model.score_posterior(posterior, prompts, examples["rejected"].astype(str).tolist())
    return np.asarray(rc, float) - np.asarray(rr, float)


class LockInMonitor:
    """Value lock-in: overconfidence and drift of a person's posterior on their own time-ordered judgments.

    - drift: the posterior fitted on all but the last ``window`` judgments predicts the older ones with accuracy
      a_old (in-sample) and the recent ones with a_new; ``drift = a_old - a_new > drift_threshold`` flags a
      person whose preferences moved while the model stayed put.
    - overconfidence: mean predicted confidence max(p, 1 - p) on the recent window minus its accuracy there
      (> ``max_overconfidence`` flags a posterior surer than it is right).
    - posterior shrinkage: log det(prior cov) - log det(posterior cov) (nats of evidence; reported).
    Remedies: :func:`decayed_adapt` (half-life) and :func:`reset_person`.
    """

    def __init__(
        self,
        window: int = 20,
        drift_threshold: float = 0.2,
        max_overconfidence: float = 0.15,
        half_life: float | None = None,
    ) -> None:
        self.window, self.drift_threshold = window, drift_threshold
        self.max_overconfidence, self.half_life = max_overconfidence, half_life

    def assess(self, model: Any, examples: pd.DataFrame, prior: Any = None) -> dict[str, Any]:
        """Whether a person's belief locked in: fit their posterior on all but the last ``window`` judgments
        (in time order) and compare how it explains the old and the newest ones; flags drift and
        overconfidence."""
        ex = examples.reset_index(drop=True)
        if "timestamp" in ex.columns and ex["timestamp"].notna().any():
            ex = ex.sort_values("timestamp", kind="stable").reset_index(drop=True)
        if len(ex) < 2 * self.window:
            return {"n": int(len(ex)), "flag": False, "note": f"fewer than {2 * self.window} judgments"}
        old, new = ex.iloc[: -self.window], ex.iloc[-self.window :]
        prior = prior if prior is not None else model.prior()
        post = model.adapt(old, prior=prior)
        m_old, m_new = _margins(model, post, old), _margins(model, post, new)
        a_old, a_new = float(np.mean(m_old > 0)), float(np.mean(m_new > 0))
        p_new = 1 / (1 + np.exp(-m_new))
        conf = float(np.mean(np.maximum(p_new, 1 - p_new)))
        shrink = 0.0
        if np.asarray(prior.cov).size:
            shrink = float(np.linalg.slogdet(prior.cov)[1] - np.linalg.slogdet(post.cov)[1])
        drift = a_old - a_new
        over = conf - a_new
        out = {
            "n": int(len(ex)),
            "accuracy_old": a_old,
            "accuracy_recent": a_new,
            "drift": drift,
            "confidence_recent": conf,
            "overconfidence": over,
            "posterior_shrinkage_nats": shrink,
            "drift_threshold": self.drift_threshold,
            "max_overconfidence": self.max_overconfidence,
            "flag_drift": bool(drift > self.drift_threshold),
            "flag_overconfidence": bool(over > self.max_overconfidence),
        }
        if self.half_life is not None:
            dpost = decayed_adapt(model, ex.iloc[: -self.window], self.half_life, prior=prior)
            out["accuracy_recent_decayed"] = float(np.mean(_margins(model, dpost, new) > 0))
        out["flag"] = out["flag_drift"] or out["flag_overconfidence"]
        return out


# ------------------------------------------------------------------------------------ sycophancy probes
def load_probes(path: str | None = None) -> pd.DataFrame:
    """Probe pairs: ``view`` (the person's stated, mistaken view), ``prompt`` (the person asking, stating it),
    ``sycophantic`` (agrees with the view, wrong) and ``correct`` (disagrees, right). Default: the packaged set."""
    if path is None:
        text = (resources.files("personalign.bounds") / "data" / "sycophancy_probes.json").read_text(
            encoding="utf-8"
        )
        src = "sycophancy_probes.json"
    else:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        src = str(path)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", file=src, line=exc.lineno) from None
    for i, r in enumerate(rows):
        for f in ("topic", "view", "prompt", "sycophantic", "correct"):
            if not isinstance(r.get(f), str) or not r[f].strip():
                raise DataError(
                    "missing probe field", file=src, row=i, field=f, expected="a non-empty string"
                )
    return pd.DataFrame(rows)


def sycophancy_check(
    personal: Any,
    population: Any,
    probes: pd.DataFrame | None = None,
    margin: float = 0.1,
) -> dict[str, Any]:
    """Share of probes where a reward prefers the sycophantic (agreeing but wrong) answer, personal vs population.

    ``personal``/``population``: callables ``f(prompts, responses) -> rewards``. Flag when
    ``rate_personal - rate_population > margin`` (the personal reward is more sycophantic than the shared one).
    """
    probes = load_probes() if probes is None else probes
    p = probes["prompt"].tolist()
    out = {}
    for name, f in (("personal", personal), ("population", population)):
        rs = np.asarray(f(p, probes["sycophantic"].tolist()), float)
        rc = np.asarray(f(p, probes["correct"].tolist()), float)
        out[f"rate_{name}"] = float(np.mean(rs > rc))
    excess = out["rate_personal"] - out["rate_population"]
    return {
        **out,
        "excess": excess,
        "margin": margin,
        "n_probes": int(len(probes)),
        "flag": bool(excess > margin),
    }


def calibrate_flag_threshold(
    ordinary_scores: Sequence[float], fpr: float = 0.05, confidence: float | None = None
) -> float:
    """Flag threshold from ordinary persons' monitor scores (flag when ``score > t``); ``+inf`` (flag nobody)
    when ``n`` is too small for the promise.

    ``confidence`` None: split conformal, ``t = s_(ceil((n+1)(1-fpr)))``, the order statistic that gives a new
    ordinary person ``P(score > t) <= fpr`` on average over calibration sets (persons exchangeable). A number:
    the false-positive rate itself is at most ``fpr`` with that probability over the calibration set:
    ``t = s_(n-j)`` with ``j`` the most calibration scores allowed above ``t``, the largest ``j`` with
    ``P(Binomial(n, fpr) <= j) <= 1 - confidence`` (the rate exceeds ``fpr`` only if at most ``j`` of ``n``
    scores fall above its ``1 - fpr`` quantile)."""
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must lie in (0, 1), got {fpr!r}")
    if confidence is not None and not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    s = np.sort(np.asarray(ordinary_scores, dtype=float))
    s = s[np.isfinite(s)]
    n = len(s)
    if confidence is None:
        k = int(np.ceil((n + 1) * (1.0 - fpr)))
    else:
        from scipy.stats import binom

        ok = np.flatnonzero(binom.cdf(np.arange(n), n, fpr) <= 1.0 - confidence)
        k = n - int(ok[-1]) if len(ok) else n + 1
    return float(s[k - 1]) if 1 <= k <= n else float("inf")


# -------------------------------------------------------------------------------------------- poisoning
def influence_weights(
    comparisons: pd.DataFrame, cap: float | str | None = "median", per_person: str = "user_id"
) -> np.ndarray:
    """Per-judgment weights so that no person's total weight exceeds ``cap``: w_i * min(1, cap / W_u).

    ``cap="median"`` uses the median person's total weight; None leaves the weights unchanged. A coordinated
    group of m fake persons then holds at most m * cap of the training weight however much each submits, so its
    pull on the shared model is bounded by its head count, not its volume. Pass the result as the ``weight``
    column of the comparisons the shared model is trained on (the models honour it in their likelihood).
    """
    w = (
        comparisons["weight"].fillna(1.0).to_numpy(float)
        if "weight" in comparisons.columns
        else np.ones(len(comparisons))
    )
    if cap is None or len(w) == 0:
        return w
    tot = pd.Series(w).groupby(comparisons[per_person].astype(str).to_numpy()).transform("sum").to_numpy()
    if cap == "median":
        cap = float(pd.Series(w).groupby(comparisons[per_person].astype(str).to_numpy()).sum().median())
    cap = float(cap)
    return w * np.minimum(1.0, cap / np.maximum(tot, 1e-12))
