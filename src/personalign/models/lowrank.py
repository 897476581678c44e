"""Low-rank shared basis with a learned hierarchical Gaussian prior (the LoRe / PReF / PAL family)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from personalign.errors import ConfigError
from personalign.features.pairs import PairFeaturizer
from personalign.models.linear import LinearGaussianModel
from personalign.models.objectives import TrainArrays
from personalign.models.posterior import BatchedLaplace, sigmoid, well_conditioned_cov

# the scales of the EM prior's covariance that ``prior_scale="auto"`` compares on held-out rows
PRIOR_SCALES = (0.0, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0)
MIN_SCALE = 1e-4  # what scale 0 is stored as (an invertible prior that is the population in effect)
MIN_CALIBRATION_ROWS = 20
SCALE_TIE = 1e-4  # nats per judgment: held-out losses closer than this count as equal
EM_PATIENCE = 2  # EM rounds without a held-out gain before EM stops


class LowRankBT(LinearGaussianModel):
    """``r_u(x, y) = (mu + B w_u)^T phi(x, y)``, ``w_u ~ N(m, Sigma)``, ``B`` is ``d x K``; Bradley-Terry likelihood.

    Fitting (MAP, then empirical Bayes):

    1. ``mu, B, W`` jointly by full-batch L-BFGS on the comparisons' log loss + ``||w_u||^2 / 2`` (a unit prior:
       ``m`` is absorbed into ``mu`` and ``Sigma^{1/2}`` into ``B``, an identifiable reparametrization of
       ``N(m, Sigma)``) + ``l2_basis ||B||^2 / 2`` + ``l2_mean ||mu||^2 / 2``, early-stopped on held-out comparisons.
    2. With ``mu, B`` frozen, ``em_iters`` rounds of EM for the prior: E-step = batched Laplace posteriors
       ``N(w_u_hat, C_u)`` of every person under ``N(m, Sigma)``; M-step ``m = mean_u w_u_hat``,
       ``Sigma = mean_u [C_u + (w_u_hat - m)(w_u_hat - m)^T]`` (plus ``jitter * I``). The persons' stored
       posteriors are the final E-step's (EM stops early once Sigma moves by less than ``em_tol``, relative
       Frobenius norm), and ``adapt`` for a new person starts from the learned ``N(m, Sigma)``. With held-out
       rows (the validation rows of ``training`` of the training persons), each round's prior is scored by the
       held-out log loss of its posterior predictive, EM stops after ``EM_PATIENCE`` rounds without a gain, and
       the best round's prior is kept: ``mu, B`` were fitted to the same training judgments, so on a direction
       where they separate them EM's fixed point is at infinity (the prior mean and covariance grow each round
       and swamp the population's reward; seen on the synthetic alpha = 10 population, seed 3).
    3. Calibration of the prior's scale (``prior_scale="auto"``): EM fits ``Sigma`` to the training judgments
       that also fitted ``B``, so it overstates how far a person's personal part carries to judgments it has not
       seen. With ``mu, B, m`` frozen, ``Sigma_c = c * Sigma`` for ``c`` in :data:`PRIOR_SCALES` is scored by the
       held-out log loss of the posterior predictive (the training persons' posteriors under ``Sigma_c``, moderated
       by their uncertainty) on the validation rows of ``training`` (``validation_split="items"``: judgments of
       items not trained on); the smallest ``c`` within ``SCALE_TIE`` of the best is kept in ``prior_scale_``. ``c = 0`` is the
       population for everybody (stored as ``1e-4 * Sigma``, which keeps the prior invertible). A number instead
       of "auto" fixes ``c``.
    """

    name = "lowrank"
    rank_param = "rank"

    def __init__(
        self,
        rank: int = 8,
        featurizer: PairFeaturizer | None = None,
        *,
        em_iters: int = 10,
        em_tol: float = 1e-3,
        jitter: float = 1e-4,
        prior_scale: float | str = "auto",
        **kw: Any,
    ) -> None:
        super().__init__(featurizer, **kw)
        self.rank = rank
        self.em_iters = em_iters
        self.em_tol = em_tol
        self.jitter = jitter
        self.prior_scale = prior_scale

    def _after_fit(self, train: TrainArrays, val: TrainArrays | None = None) -> None:
        if self.K_ == 0 or not len(self.units_):
            return
        lap = self._unit_laplace(train)
        heldout = self._calibration_rows(val)
        n = len(self.units_)
        m = torch.from_numpy(self.prior_mean_)
        Sig = torch.from_numpy(self.prior_cov_)
        W = torch.from_numpy(self.unit_means_)
        eye = torch.eye(self.K_, dtype=torch.float64)
        self.em_rounds_, self.em_losses_, self.em_best_round_ = 0, [], None
        best: tuple[float, torch.Tensor, torch.Tensor] | None = None
        iters = max(1, self.em_iters)
        for _ in range(iters + 1):  # iters M-steps, each E-step scored (the last one's too)
            W, C = lap.solve(m, torch.linalg.inv(Sig), w0=W, iters=4)
            if heldout is not None:
                # this round's prior, scored by its persons' posteriors on judgments EM does not see
                loss = self._heldout_loss(W.numpy(), C.numpy(), *heldout)
                self.em_losses_.append(loss)
                if best is None or loss < best[0] - SCALE_TIE:
                    best = (loss, m, Sig)
                    self.em_best_round_ = len(self.em_losses_) - 1
                elif len(self.em_losses_) - 1 - self.em_best_round_ >= EM_PATIENCE:
                    break  # EM is fitting the training judgments, no longer the persons
            if self.em_rounds_ == iters:
                break
            m = W.mean(0)
            R = W - m
            new = C.mean(0) + R.T @ R / n + self.jitter * eye
            # an unidentified direction can make Sigma blow up or collapse: keep it finite and invertible
            new = well_conditioned_cov(new, floor=self.jitter)
            change = float(torch.linalg.norm(new - Sig) / torch.linalg.norm(Sig).clamp_min(1e-12))
            Sig = new
            self.em_rounds_ += 1
            if change < self.em_tol:
                break
        if best is not None:
            _, m, Sig = best
        # final E-step under the kept prior, so stored posteriors and the prior agree
        W, C = lap.solve(m, torch.linalg.inv(Sig), w0=W, iters=6)
        self.prior_mean_ = m.numpy().copy()
        self.prior_cov_ = Sig.numpy().copy()
        self.unit_means_ = W.numpy().copy()
        self.unit_covs_ = C.numpy().copy()

    def _calibration_rows(self, val: TrainArrays | None) -> tuple[np.ndarray, ...] | None:
        """The held-out judgments of training persons that EM and the scale calibration are scored on."""
        rows = val.subset(val.unit >= 0) if val is not None else None
        if rows is None or len(rows) < MIN_CALIBRATION_ROWS:
            return None
        return self._heldout_pairs(rows)

    def _calibrate(self, train: TrainArrays, val: TrainArrays | None) -> None:
        """Choose and apply the prior's scale (see the class docstring, step 3)."""
        self.prior_scale_losses_: dict[str, float] = {}
        if self.prior_scale == "auto":
            self.prior_scale_ = 1.0
        else:
            self.prior_scale_ = _checked_scale(self.prior_scale)
        if self.K_ == 0 or not len(self.units_):
            return
        lap = self._unit_laplace(train)
        if self.prior_scale == "auto":
            heldout = self._calibration_rows(val)
            if heldout is None:
                return  # nothing held out to calibrate on: the EM prior as it is
            losses = {c: self._predictive_loss(lap, c, *heldout) for c in PRIOR_SCALES}
            self.prior_scale_losses_ = {str(c): v for c, v in losses.items()}
            best = min(losses.values())
            # the smallest scale within a hair of the best: no personal spread the held-out rows do not pay for
            self.prior_scale_ = min(c for c, v in losses.items() if v <= best + SCALE_TIE)
        if self.prior_scale_ != 1.0:
            W, C = self._scaled_posteriors(lap, self.prior_scale_)
            self.prior_cov_ = self.prior_cov_ * max(self.prior_scale_, MIN_SCALE)
            self.unit_means_, self.unit_covs_ = W.numpy().copy(), C.numpy().copy()

    def _heldout_pairs(self, rows: TrainArrays) -> tuple[np.ndarray, ...]:
        S, G = self.project(rows.X)
        D = G[rows.ci] - G[rows.ri]
        a = S[rows.ci] - S[rows.ri]
        return D, a, rows.unit, rows.y.astype(np.float64), rows.wt.astype(np.float64)

    def _scaled_posteriors(self, lap: BatchedLaplace, c: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Every person's posterior under ``N(m, c * Sigma)`` (``c = 0``: the prior mean, no uncertainty)."""
        m = torch.from_numpy(self.prior_mean_)
        U, K = len(self.units_), self.K_
        if c == 0:
            eff = MIN_SCALE * torch.from_numpy(self.prior_cov_)
            return m.expand(U, K).clone(), eff.expand(U, K, K).clone()
        P = torch.linalg.inv(torch.from_numpy(self.prior_cov_ * c))
        return lap.solve(m, P, w0=torch.from_numpy(self.unit_means_), iters=6)

    def _predictive_loss(self, lap: BatchedLaplace, c: float, *heldout: np.ndarray) -> float:
        """Held-out log loss of the posterior predictive under ``N(m, c * Sigma)``."""
        W, C = (t.numpy() for t in self._scaled_posteriors(lap, c))
        return self._heldout_loss(W, C, *heldout)

    @staticmethod
    def _heldout_loss(
        W: np.ndarray,
        C: np.ndarray,
        D: np.ndarray,
        a: np.ndarray,
        unit: np.ndarray,
        y: np.ndarray,
        wt: np.ndarray,
    ) -> float:
        """Weighted log loss of the probit posterior predictive ``sigmoid(z / sqrt(1 + pi v / 8))`` of the
        persons' posteriors ``N(W_u, C_u)`` on held-out pairs (``z``, ``v``: the margin's mean and variance)."""
        z = a + np.einsum("ij,ij->i", D, W[unit])
        v = np.einsum("ij,ijk,ik->i", D, C[unit], D)
        p = np.clip(sigmoid(z / np.sqrt(1.0 + np.pi * np.clip(v, 0, None) / 8.0)), 1e-12, 1 - 1e-12)
        ll = y * np.log(p) + (1 - y) * np.log1p(-p)
        return float(-(wt * ll).sum() / max(wt.sum(), 1e-12))

    def _artifact_config(self) -> dict[str, Any]:
        extra = {"prior_scale_": getattr(self, "prior_scale_", None)}
        return {**super()._artifact_config(), **extra}

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Any) -> None:
        super()._load_tensors(t, cfg, d)
        self.prior_scale_ = cfg.get("prior_scale_")


def _checked_scale(v: Any) -> float:
    try:
        c = float(v)
    except (TypeError, ValueError):
        c = float("nan")
    if not np.isfinite(c) or c < 0:
        raise ConfigError(f"prior_scale must be 'auto' or a number >= 0, got {v!r}")
    return c
