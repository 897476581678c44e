"""An MLP basis: the population reward and the personal directions become nonlinear in the features.

Model: ``[s(phi), g(phi)] = [mu, B]^T phi + W_2 act(W_1 phi + b_1)`` (a linear path plus a one-hidden-layer
residual), ``r_u = s(phi) + g(phi)^T w_u``, ``w_u ~ N(m, Sigma)``; trained like :class:`LowRankBT` (MAP by
L-BFGS, early stopping, then empirical Bayes for the prior). The personal part stays linear in ``w_u``, so
``adapt``/``update``/``suggest_query`` keep their K-dimensional Laplace algebra; only :meth:`MLPLowRankBT.project` changes.
The linear path is stored as ``mu_``/``B_`` (so code that reads them sees the linear part of the model) and the
residual MLP's weights beside them. ``l2_mlp`` is the weight decay of the residual (large = the linear model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from personalign.errors import ConfigError
from personalign.features.pairs import PairFeaturizer
from personalign.models import artifacts
from personalign.models.lowrank import LowRankBT
from personalign.models.objectives import ridge


class MLPBasis(torch.nn.Module):
    """``(n, d) -> (n, 1 + K)``: linear ``[mu, B]`` plus a residual ``W_2 act(W_1 x + b_1)``."""

    def __init__(
        self, d: int, K: int, hidden: int, l2_mlp: float, gen: torch.Generator, activation: str = "gelu"
    ):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(d))
        self.B = torch.nn.Parameter(torch.randn(d, K, generator=gen) * 0.1)
        self.W1 = torch.nn.Parameter(torch.randn(d, hidden, generator=gen) / np.sqrt(d))
        self.b1 = torch.nn.Parameter(torch.zeros(hidden))
        self.W2 = torch.nn.Parameter(torch.zeros(hidden, 1 + K))  # starts as the linear model
        self.l2_mlp = l2_mlp
        self.act = torch.nn.functional.gelu if activation == "gelu" else torch.relu

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        lin = torch.cat([(X @ self.mu)[:, None], X @ self.B], 1)
        return lin + self.act(X @ self.W1 + self.b1) @ self.W2

    def penalty(self, l2_mean: float, l2_basis: float) -> torch.Tensor:
        residual = (self.W1**2).sum() + (self.W2**2).sum()
        return ridge(self.mu, self.B, l2_mean, l2_basis) + 0.5 * self.l2_mlp * residual


class MLPLowRankBT(LowRankBT):
    """LowRankBT with an MLP basis (see module docstring): ``hidden`` units, ``activation`` gelu or relu."""

    name = "mlp"

    def __init__(
        self,
        rank: int = 8,
        featurizer: PairFeaturizer | None = None,
        *,
        hidden: int = 64,
        activation: str = "gelu",
        l2_mlp: float = 1e-2,
        l2_mean: float = 1e-3,
        l2_basis: float = 1.0,
        **kw: Any,
    ) -> None:
        super().__init__(rank, featurizer, l2_mean=l2_mean, l2_basis=l2_basis, **kw)
        self.hidden = hidden
        self.activation = activation
        self.l2_mlp = l2_mlp

    def _make_basis_module(self, d: int, K: int, gen: torch.Generator) -> torch.nn.Module:
        if self.activation not in ("gelu", "relu"):
            raise ConfigError(f"MLPLowRankBT activation must be 'gelu' or 'relu', got {self.activation!r}")
        return MLPBasis(d, K, int(self.hidden), float(self.l2_mlp), gen, self.activation)

    def _store_basis(self, basis: torch.nn.Module) -> None:
        super()._store_basis(basis)  # mu_, B_: the linear path
        self.mlp_ = {
            "mlp_W1": basis.W1.detach().double().numpy().copy(),
            "mlp_b1": basis.b1.detach().double().numpy().copy(),
            "mlp_W2": basis.W2.detach().double().numpy().copy(),
        }

    def _hidden(self, phi: np.ndarray) -> np.ndarray:
        h = phi @ self.mlp_["mlp_W1"] + self.mlp_["mlp_b1"]
        if self.activation == "relu":
            return np.maximum(h, 0.0)
        return torch.nn.functional.gelu(torch.from_numpy(h)).numpy()

    def project(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``s = mu^T phi + res_0``, ``g = B^T phi + res_{1:}`` with the residual MLP ``res``."""
        phi = np.asarray(phi, dtype=np.float64)
        res = self._hidden(phi) @ self.mlp_["mlp_W2"]
        return phi @ self.mu_ + res[:, 0], phi @ self.B_ + res[:, 1:]

    def _tensors(self) -> dict[str, np.ndarray]:
        return {**super()._tensors(), **self.mlp_}

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        super()._load_tensors(t, cfg, d)
        nf, K, h = self.n_features_, self.K_, int(self.hidden)
        shapes = {"mlp_W1": (nf, h), "mlp_b1": (h,), "mlp_W2": (h, 1 + K)}
        self.mlp_ = {k: artifacts.require(t, k, shp, d) for k, shp in shapes.items()}
