"""Low-rank shared basis with a learned hierarchical Gaussian prior (the LoRe / PReF / PAL family)."""

from __future__ import annotations

from typing import Any

import torch

from personalign.features.pairs import PairFeaturizer
from personalign.models.linear import LinearGaussianModel
from personalign.models.objectives import TrainArrays
from personalign.models.posterior import well_conditioned_cov


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
       Frobenius norm), and ``adapt`` for a new person starts from the learned ``N(m, Sigma)``.
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
        **kw: Any,
    ) -> None:
        super().__init__(featurizer, **kw)
        self.rank = rank
        self.em_iters = em_iters
        self.em_tol = em_tol
        self.jitter = jitter

    def _after_fit(self, train: TrainArrays) -> None:
        if self.K_ == 0 or not len(self.units_):
            return
        lap = self._unit_laplace(train)
        n = len(self.units_)
        m = torch.from_numpy(self.prior_mean_)
        Sig = torch.from_numpy(self.prior_cov_)
        W = torch.from_numpy(self.unit_means_)
        eye = torch.eye(self.K_, dtype=torch.float64)
        self.em_rounds_ = 0
        for _ in range(max(1, self.em_iters)):
            W, C = lap.solve(m, torch.linalg.inv(Sig), w0=W, iters=4)
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
        # final E-step under the final prior, so stored posteriors and the prior agree
        W, C = lap.solve(m, torch.linalg.inv(Sig), w0=W, iters=6)
        self.prior_mean_ = m.numpy().copy()
        self.prior_cov_ = Sig.numpy().copy()
        self.unit_means_ = W.numpy().copy()
        self.unit_covs_ = C.numpy().copy()
