"""Item-level baselines and crowd oracles, evaluated beside the text models in the same run.

- ``ItemMean`` ("majority"): an item's mean rating (or win rate) over the training judgments. It knows nothing of
  items nobody judged in training (it answers 1/2 there): it is the non-text crowd baseline of the collaborative cell.
- ``ChoixBT`` ("choix"): item-level Bradley-Terry fitted by choix's ILSR on the pooled training comparisons,
  an independent reference implementation of aggregated BT (items, not text).
- ``CrowdOracle`` ("crowd"): the item's leave-one-out crowd: the mean (or win rate) of every *other* person's
  judgments of the item, taken from the whole data set, test cells included. An oracle: a text model cannot see
  other people's judgments of an unseen item. Its pairwise accuracy bounds what the shared part could reach.
- ``SurpriseSVD`` ("svd"): a recommender library's matrix factorization, scikit-surprise's SVD (biased MF by
  SGD), ``r_ui = mu + b_u + b_i + p_u^T q_i`` fitted on the training ratings and votes; personal through
  ``p_u^T q_i``, its collapsed control drops that term (the item biases alone). Pointwise data only.
- Crowd plus a personal offset (pointwise only, :func:`crowd_pointwise`): the leave-one-out crowd mean plus the
  person's shrunk mean residual on their training items. For a person's own pairs the offset cancels, so its
  pairwise accuracy is the crowd's; it matters for labels and ratings ("is this offensive to you?").

Probabilities: ``P(a > b) = sigmoid(c * (s_a - s_b))`` with one temperature ``c`` fitted on training pairs.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import POPULATION_USER, PreferenceData
from personalign.data.pairs import pairwise_judgments
from personalign.errors import ConfigError


def _fit_temperature(diff: np.ndarray, iters: int = 50) -> float:
    """Slope c >= 0 of P(chosen) = sigmoid(c * diff) by Newton's method on the training pairs (all y = 1)."""
    diff = diff[np.isfinite(diff) & (diff != 0)]
    if len(diff) == 0:
        return 1.0
    # all outcomes are 1, so the MLE diverges when every diff is positive: symmetrize and add a weak L2 prior
    x = np.concatenate([diff, -diff])
    y = np.concatenate([np.ones(len(diff)), np.zeros(len(diff))])
    c = 1.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-c * x))
        g = np.sum((p - y) * x) + 1e-3 * c
        h = np.sum(p * (1 - p) * x * x) + 1e-3
        step = g / h
        c -= step
        if abs(step) < 1e-8:
            break
    return float(max(c, 1e-6))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


class _ItemScorer:
    """Shared plumbing: item scores -> pair probabilities; no personal part (collapsed is itself)."""

    personal = False
    name = "item"

    def __init__(self) -> None:
        self.scores_: dict[str, float] = {}
        self.temperature_ = 1.0

    def _item_scores(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        return np.array([self.scores_.get(str(i), np.nan) for i in item_ids], dtype=float)

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        u = pairs["user_id"].to_numpy(object)
        a = self._item_scores(u, pairs["chosen_id"].to_numpy(object))
        b = self._item_scores(u, pairs["rejected_id"].to_numpy(object))
        p = _sigmoid(self.temperature_ * (a - b))
        return np.where(np.isfinite(a) & np.isfinite(b), p, 0.5)

    def _calibrate(self, pairs: pd.DataFrame) -> None:
        u = pairs["user_id"].to_numpy(object)
        d = self._item_scores(u, pairs["chosen_id"].to_numpy(object)) - self._item_scores(
            u, pairs["rejected_id"].to_numpy(object)
        )
        self.temperature_ = _fit_temperature(d)

    def collapsed(self) -> _ItemScorer:
        return self


def _win_rates(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per item: wins and games over the given comparisons (ties excluded)."""
    p = pairs[~pairs["tie"].astype(bool)] if "tie" in pairs.columns else pairs
    w = p["chosen_id"].astype(str).value_counts()
    lo = p["rejected_id"].astype(str).value_counts()
    games = w.add(lo, fill_value=0)
    return pd.DataFrame({"wins": w.reindex(games.index).fillna(0), "games": games})


class ItemMean(_ItemScorer):
    """Per-item majority: mean rating (pointwise data) or smoothed win rate (comparisons) on training data."""

    name = "majority"

    def fit(self, data: PreferenceData, pairs: pd.DataFrame) -> ItemMean:
        pt = data.pointwise(passes=False)
        if len(pt):
            self.scores_ = pt.groupby("item_id")["rating"].mean().to_dict()
        else:
            wr = _win_rates(pairs)
            self.scores_ = ((wr["wins"] + 1) / (wr["games"] + 2)).to_dict()
        self._calibrate(pairs)
        return self


class ChoixBT(_ItemScorer):
    """Item-level Bradley-Terry by choix (ILSR with a small ridge), on every training comparison pooled."""

    name = "choix"

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = alpha

    def fit(self, data: PreferenceData, pairs: pd.DataFrame) -> ChoixBT:
        import choix

        p = pairs[~pairs["tie"].astype(bool)] if "tie" in pairs.columns else pairs
        ids = pd.Index(sorted(set(p["chosen_id"].astype(str)) | set(p["rejected_id"].astype(str))))
        if len(ids) < 2:
            self.scores_ = {}
            return self
        a = ids.get_indexer(p["chosen_id"].astype(str))
        b = ids.get_indexer(p["rejected_id"].astype(str))
        theta = choix.ilsr_pairwise(
            len(ids), list(zip(a.tolist(), b.tolist())), alpha=self.alpha, max_iter=200
        )
        self.scores_ = dict(zip(ids, np.asarray(theta, dtype=float)))
        # BT strengths are already on the logit scale
        self.temperature_ = 1.0
        return self


class CrowdOracle(_ItemScorer):
    """Leave-one-out crowd of the item over the *whole* data set (an oracle; see the module docstring)."""

    name = "crowd"

    def fit(
        self, full: PreferenceData, train_pairs: pd.DataFrame, full_pairs: pd.DataFrame | None = None
    ) -> CrowdOracle:
        pt = full.pointwise(passes=False)
        self.pointwise_ = bool(len(pt))
        if self.pointwise_:
            pt = pt[pt["user_id"] != POPULATION_USER]
            g = pt.groupby("item_id")["rating"]
            self.sum_ = g.sum().to_dict()
            self.cnt_ = g.size().to_dict()
            own = pt.groupby(["user_id", "item_id"])["rating"].agg(["sum", "size"])
            self.own_ = {k: (float(s), int(n)) for k, s, n in zip(own.index, own["sum"], own["size"])}
        else:
            # comparisons and the pairs of every ranking: a ranking is read as its pairs, the earlier item winning
            fp = full_pairs if full_pairs is not None else pairwise_judgments(full.comparisons, full.rankings)
            fp = fp[~fp["tie"].astype(bool) & (fp["user_id"] != POPULATION_USER)]
            wr = _win_rates(fp)
            self.sum_, self.cnt_ = wr["wins"].to_dict(), wr["games"].to_dict()
            rows = []
            for col, win in (("chosen_id", 1.0), ("rejected_id", 0.0)):
                rows.append(
                    pd.DataFrame(
                        {"user_id": fp["user_id"].astype(str), "item_id": fp[col].astype(str), "w": win}
                    )
                )
            own = pd.concat(rows).groupby(["user_id", "item_id"])["w"].agg(["sum", "size"])
            self.own_ = {k: (float(s), int(n)) for k, s, n in zip(own.index, own["sum"], own["size"])}
        self._calibrate(train_pairs)
        return self

    def _item_scores(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        out = np.full(len(item_ids), np.nan)
        for j, (u, i) in enumerate(zip(user_ids, item_ids)):
            i = str(i)
            s, n = self.sum_.get(i, 0.0), self.cnt_.get(i, 0)
            os_, on = self.own_.get((str(u), i), (0.0, 0))
            n2 = n - on
            if n2 > 0:
                out[j] = (s - os_) / n2 if self.pointwise_ else (s - os_ + 1) / (n2 + 2)
        return out


class SurpriseSVD(_ItemScorer):
    """scikit-surprise's SVD on the training ratings / votes: ``r_ui = mu + b_u + b_i + p_u^T q_i``; an unknown
    person or item contributes no bias and no factor (what surprise itself does). Pairs compare ``r_u(a)`` and
    ``r_u(b)`` (``mu`` and ``b_u`` cancel) with the temperature fitted on training pairs."""

    name = "svd"
    personal = True

    def __init__(
        self,
        n_factors: int = 8,
        n_epochs: int = 50,
        lr_all: float = 0.01,
        reg_all: float = 0.05,
        random_state: int = 0,
    ) -> None:
        # surprise's defaults (20 epochs at lr 0.005) leave the factors near their initialization with the 10-50
        # ratings per person of these datasets: more epochs at twice the step, a little more shrinkage
        super().__init__()
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.lr_all = lr_all
        self.reg_all = reg_all
        self.random_state = random_state
        self.use_factors = True

    def fit(self, data: PreferenceData, pairs: pd.DataFrame) -> SurpriseSVD:
        from surprise import SVD, Dataset, Reader

        pt = data.pointwise(passes=False)
        pt = pt[pt["user_id"] != POPULATION_USER]
        if not len(pt):
            raise ConfigError(
                "svd needs ratings or votes (it is a matrix factorization of pointwise judgments)"
            )
        lo, hi = float(pt["rating"].min()), float(pt["rating"].max())
        table = pd.DataFrame(
            {"u": pt["user_id"].astype(str), "i": pt["item_id"].astype(str), "r": pt["rating"]}
        )
        trainset = Dataset.load_from_df(
            table, Reader(rating_scale=(lo, hi if hi > lo else lo + 1))
        ).build_full_trainset()
        algo = SVD(
            n_factors=self.n_factors,
            n_epochs=self.n_epochs,
            lr_all=self.lr_all,
            reg_all=self.reg_all,
            random_state=self.random_state,
        )
        algo.fit(trainset)
        self.user_index_ = {trainset.to_raw_uid(k): k for k in trainset.all_users()}
        self.item_index_ = {trainset.to_raw_iid(k): k for k in trainset.all_items()}
        self.bu_, self.bi_ = np.asarray(algo.bu, float), np.asarray(algo.bi, float)
        self.pu_, self.qi_ = np.asarray(algo.pu, float), np.asarray(algo.qi, float)
        self._calibrate(pairs)
        return self

    def _item_scores(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        u = np.array([self.user_index_.get(str(x), -1) for x in user_ids], dtype=np.int64)
        i = np.array([self.item_index_.get(str(x), -1) for x in item_ids], dtype=np.int64)
        s = np.where(i >= 0, self.bi_[np.maximum(i, 0)], 0.0)
        if self.use_factors and len(self.pu_):
            both = (u >= 0) & (i >= 0)
            dot = (self.pu_[np.maximum(u, 0)] * self.qi_[np.maximum(i, 0)]).sum(1)
            s = s + np.where(both, dot, 0.0)
        return s

    def collapsed(self) -> SurpriseSVD:
        """The same factorization with every person's factor at zero (item biases only)."""
        out = copy.copy(self)
        out.use_factors = False
        out.personal = False
        return out


def crowd_pointwise(
    full_pt: pd.DataFrame, train_pt: pd.DataFrame, test_pt: pd.DataFrame, shrink: float = 2.0
) -> dict[str, np.ndarray]:
    """Point predictions for ``test_pt`` rows: item mean (train), leave-one-out crowd, crowd + personal offset.

    The offset of a person is their mean residual against the leave-one-out crowd on their training items,
    shrunk toward 0: ``sum(r - crowd) / (n + shrink)``.
    """
    glob = float(train_pt["rating"].mean()) if len(train_pt) else float(full_pt["rating"].mean())
    item_mean = train_pt.groupby("item_id")["rating"].mean()
    g = full_pt.groupby("item_id")["rating"]
    s, n = g.sum(), g.size()

    def loo(tab: pd.DataFrame) -> np.ndarray:
        si = s.reindex(tab["item_id"]).to_numpy(float)
        ni = n.reindex(tab["item_id"]).to_numpy(float)
        # the row's own judgment is part of the sums: remove it
        with np.errstate(invalid="ignore", divide="ignore"):
            v = (si - tab["rating"].to_numpy(float)) / (ni - 1)
        return np.where(np.isfinite(v), v, glob)

    tr = train_pt.assign(res=train_pt["rating"].to_numpy(float) - loo(train_pt))
    agg = tr.groupby("user_id")["res"].agg(["sum", "size"])
    offset = (agg["sum"] / (agg["size"] + shrink)).to_dict()
    crowd = loo(test_pt)
    off = np.array([offset.get(u, 0.0) for u in test_pt["user_id"]], dtype=float)
    im = item_mean.reindex(test_pt["item_id"]).to_numpy(float)
    return {
        "majority": np.where(np.isfinite(im), im, glob),
        "crowd": crowd,
        "crowd+offset": crowd + off,
    }


BASELINES: dict[str, Any] = {"majority": ItemMean, "choix": ChoixBT, "crowd": CrowdOracle, "svd": SurpriseSVD}
POINTWISE_ONLY = {
    "svd": "skipped: comparison and ranking data have no ratings to factorize (svd is pointwise)"
}
