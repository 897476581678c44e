"""Side information: the prior mean of a person's weights depends on their demographics (cold start).

Model: ``w_u ~ N(A^T x_u, Sigma_x)`` with ``x_u = [1, onehot(demographics_u)]`` (numeric columns standardized),
on top of :class:`~personalign.models.lowrank.LowRankBT` (same basis ``mu, B``). After the low-rank fit, empirical
Bayes alternates ``side_em_iters`` times: ridge regression of the persons' posterior means on ``x_u``
(``A = (X^T X + lambda I)^{-1} X^T W``, intercept unpenalized), residual covariance
``Sigma_x = mean_u [C_u + (w_u - A^T x_u)(w_u - A^T x_u)^T]``, then every person's Laplace posterior under their
own demographic prior. With held-out rows each round is scored by the posterior predictive's held-out log loss
and the best round is kept; round 0 is the population prior for everybody, so demographics that predict nothing
held out are not used. ``prior(user_row)`` returns ``N(A^T x(row), Sigma_x)``: a new person with demographics but no
judgments is scored from the demographic prior, and ``adapt(..., user_row=row)`` starts from it. Without a row the
population prior (marginal over demographics) is used. Unknown categories / missing columns contribute the
training frequency of each category (their expected one-hot), so a missing column means "average person".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from personalign.data.core import PreferenceData
from personalign.errors import ConfigError, DataError
from personalign.features.pairs import PairFeaturizer
from personalign.models import artifacts
from personalign.models.lowrank import EM_PATIENCE, SCALE_TIE, LowRankBT
from personalign.models.objectives import TrainArrays
from personalign.models.posterior import Posterior


class SideInfoEncoder:
    """Demographic columns -> design rows ``[1, onehot...]`` (categorical) / standardized values (numeric)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.spec: dict[str, dict[str, Any]] = {}

    def fit(self, users: pd.DataFrame) -> SideInfoEncoder:
        for c in self.columns:
            if c not in users.columns:
                raise DataError(
                    f"side-information column {c!r} is not in the users table",
                    field=c,
                    expected=f"one of {[x for x in users.columns if x != 'user_id']}",
                )
            col = users[c]
            if (
                pd.api.types.is_numeric_dtype(col)
                and not pd.api.types.is_bool_dtype(col)
                and col.nunique() > 10
            ):
                v = col.astype(float)
                self.spec[c] = {"kind": "numeric", "mean": float(v.mean()), "sd": float(v.std() or 1.0)}
            else:
                vals = col.dropna().astype(str)
                cats = sorted(vals.unique())
                freq = vals.value_counts(normalize=True).reindex(cats).fillna(0).tolist()
                self.spec[c] = {"kind": "categorical", "categories": cats, "freq": freq}
        return self

    @property
    def dim(self) -> int:
        return 1 + sum(1 if s["kind"] == "numeric" else len(s["categories"]) for s in self.spec.values())

    def row(self, user_row: dict | pd.Series | None) -> np.ndarray:
        parts = [np.ones(1)]
        for c, s in self.spec.items():
            v = None if user_row is None else user_row.get(c, None)
            missing = v is None or (isinstance(v, float) and np.isnan(v))
            if s["kind"] == "numeric":
                parts.append(np.array([0.0 if missing else (float(v) - s["mean"]) / s["sd"]]))
            else:
                cats = s["categories"]
                if missing or str(v) not in cats:
                    parts.append(np.asarray(s["freq"], float))
                else:
                    e = np.zeros(len(cats))
                    e[cats.index(str(v))] = 1.0
                    parts.append(e)
        return np.concatenate(parts)

    def matrix(self, users: pd.DataFrame) -> np.ndarray:
        recs = users.to_dict("records")
        return np.stack([self.row(r) for r in recs]) if recs else np.zeros((0, self.dim))

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "spec": self.spec}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SideInfoEncoder:
        enc = cls(d["columns"])
        enc.spec = {c: d["spec"][c] for c in d["columns"]}
        return enc


class SideInfoLowRankBT(LowRankBT):
    """LowRankBT whose prior mean depends on demographics: ``w_u ~ N(A^T x_u, Sigma_x)`` (see module docstring).

    ``side_info``: users-table columns; None = ``data.meta["side_information_columns"]`` or every demographic
    column. ``side_ridge``: ridge penalty of the map ``A``.
    """

    name = "sideinfo"
    aliases = ("lowrank-side",)

    def __init__(
        self,
        rank: int = 8,
        featurizer: PairFeaturizer | None = None,
        *,
        side_info: list[str] | None = None,
        side_ridge: float = 1.0,
        side_em_iters: int = 5,
        l2_mean: float = 1e-3,
        l2_basis: float = 1.0,
        **kw: Any,
    ) -> None:
        super().__init__(rank, featurizer, l2_mean=l2_mean, l2_basis=l2_basis, **kw)
        self.side_info = side_info
        self.side_ridge = side_ridge
        self.side_em_iters = side_em_iters

    def fit(self, data: PreferenceData, val_data: PreferenceData | None = None) -> SideInfoLowRankBT:
        if not isinstance(data, PreferenceData):
            raise DataError("SideInfoLowRankBT needs a PreferenceData with a users table", field="data")
        cols = self.side_info
        if cols is None:
            cols = list(data.meta.get("side_information_columns") or data.demographic_columns)
        if not cols:
            raise DataError(
                "no side-information columns: the users table has no demographic columns",
                field="users",
                expected="users columns such as age_band, region (or pass side_info=[...])",
            )
        self.side_encoder_ = SideInfoEncoder(cols).fit(data.users)
        users = data.users.drop_duplicates("user_id")
        self._users_table = users.set_index(users["user_id"].astype(str))
        try:
            super().fit(data, val_data)
        finally:
            del self._users_table
        return self

    def _after_fit(self, train: TrainArrays, val: TrainArrays | None = None) -> None:
        # low-rank empirical Bayes: mu, B frozen, N(m, Sigma), persons' posteriors
        super()._after_fit(train, val)
        U, K = len(self.units_), self.K_
        Xs = self.side_encoder_.matrix(self._users_table.reindex(self.units_).reset_index(drop=True))
        # round 0 is the population prior for everybody: A's intercept row is m, every demographic row 0
        A = np.zeros((self.side_encoder_.dim, K))
        A[0] = self.prior_mean_
        start = (A, self.prior_cov_.copy(), self.unit_means_, self.unit_covs_)
        self.side_em_losses_: list[float] = []
        self.side_em_best_round_: int | None = None
        if K == 0 or U == 0:
            self.side_map_, self.side_cov_ = start[0], start[1]
            return
        kept = self._side_em(train, Xs, start, self._calibration_rows(val))
        self.side_map_, self.side_cov_, self.unit_means_, self.unit_covs_ = kept
        if kept is not start:
            # the population prior (no demographics known): marginal of the demographic priors
            M = Xs @ kept[0]
            self.prior_mean_ = kept[2].mean(0)
            self.prior_cov_ = kept[1] + np.cov(M.T, bias=True).reshape(K, K)

    def _side_em(
        self,
        train: TrainArrays,
        Xs: np.ndarray,
        start: tuple[np.ndarray, ...],
        heldout: tuple[np.ndarray, ...] | None,
    ) -> tuple[np.ndarray, ...]:
        """EM of the demographic priors from ``start`` = ``(A, Sigma_x, W, C)``; the round kept.

        With held-out rows every round (the start too) is scored by the posterior predictive's held-out log
        loss, EM stops after ``EM_PATIENCE`` rounds without a gain and the best round is kept: demographics
        that do not predict held-out judgments (too many categories for the persons, a weak ridge) leave the
        population prior in place. Without them the last round is kept.
        """
        lap = self._unit_laplace(train)
        pen = self.side_ridge * np.eye(Xs.shape[1])
        pen[0, 0] = 0.0  # the intercept is not shrunk
        eye = np.eye(self.K_)
        state, best, best_loss = start, start, np.inf
        for r in range(max(1, self.side_em_iters) + 1):
            if heldout is not None:
                loss = self._heldout_loss(state[2], state[3], *heldout)
                self.side_em_losses_.append(loss)
                if loss < best_loss - SCALE_TIE:
                    best, best_loss, self.side_em_best_round_ = state, loss, r
                elif r - self.side_em_best_round_ >= EM_PATIENCE:
                    break
            if r == max(1, self.side_em_iters):
                break
            W, C = state[2], state[3]
            A = np.linalg.solve(Xs.T @ Xs + pen, Xs.T @ W)
            M = Xs @ A
            R = W - M
            Sig = C.mean(0) + R.T @ R / len(W) + self.jitter * eye
            Sig = 0.5 * (Sig + Sig.T)
            P = torch.from_numpy(np.linalg.inv(Sig))
            Wt, Ct = lap.solve(torch.from_numpy(M), P, w0=torch.from_numpy(W), iters=4)
            state = (A, Sig, Wt.numpy().copy(), Ct.numpy().copy())
        return best if heldout is not None else state

    def _calibrate(self, train: TrainArrays, val: TrainArrays | None) -> None:
        # the demographic priors' EM above replaces the population prior, so rescaling only it would make the
        # two disagree; the scale calibration of LowRankBT is not applied here (``prior_scale`` is ignored)
        self.prior_scale_, self.prior_scale_losses_ = 1.0, {}

    # ------------------------------------------------------------------ persons
    def _prior_mean(self, user_row: dict | None) -> np.ndarray:
        if user_row is None:
            return self.prior_mean_
        return self.side_encoder_.row(user_row) @ self.side_map_

    def prior(self, user_row: dict | None = None) -> Posterior:
        """``N(A^T x(user_row), Sigma_x)``; the population prior when ``user_row`` is None."""
        self._check_fitted()
        if user_row is None:
            return Posterior(self.prior_mean_.copy(), self.prior_cov_.copy(), 0)
        return Posterior(self._prior_mean(dict(user_row)), self.side_cov_.copy(), 0)

    # ------------------------------------------------------------------ artifacts
    def _tensors(self) -> dict[str, np.ndarray]:
        return {**super()._tensors(), "side_map": self.side_map_, "side_cov": self.side_cov_}

    def _artifact_config(self) -> dict[str, Any]:
        return {**super()._artifact_config(), "side_encoder": self.side_encoder_.to_dict()}

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        super()._load_tensors(t, cfg, d)
        if "side_encoder" not in cfg:
            raise ConfigError(f"{d / 'config.json'}: a SideInfoLowRankBT artifact needs side_encoder")
        self.side_encoder_ = SideInfoEncoder.from_dict(cfg["side_encoder"])
        self.side_map_ = artifacts.require(t, "side_map", (self.side_encoder_.dim, self.K_), d)
        self.side_cov_ = artifacts.require(t, "side_cov", (self.K_, self.K_), d)
