"""Context dependence: a person's preferences shift with the kind of prompt (its domain).

Model: ``r_u(x, y) = (mu + mu_d + (B + Delta_d) w_u)^T phi(x, y)`` with ``d = domain(x)``: every domain has its own
population shift ``mu_d`` and basis shift ``Delta_d`` (``d x K``), shrunk toward zero by ``l2_context``; a person keeps
one K-dim weight vector ``w_u ~ N(m, Sigma)``. Why a domain-specific basis rather than a per-(person, domain) offset:
a person's shift then follows from who they are (their ``w_u``), so it needs no judgments in every domain - with 40
judgments over 8 domains a free offset per (person, domain) would rest on ~5 judgments; this is also exactly the
form of the synthetic population's context dependence, where a person's weights in domain d are
``w_u + c * sum_j pi_uj S_jd`` (a domain-specific linear map of the latent profile mixture).

Domains come from the items table's ``domain_col`` (prompt -> domain, learned at fit; unknown prompts and prompts
without a domain use the shared basis only) or from an explicit ``domains`` mapping given to
:meth:`ContextLowRankBT.set_domains`.
Mechanics: :meth:`ContextLowRankBT.features` appends one column to ``phi``, the domain index (-1: none), and the
basis module / :meth:`ContextLowRankBT.project` split it off - everything downstream (adapt, update, queries, bounds) is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from personalign.data.core import PreferenceData
from personalign.errors import ConfigError
from personalign.features.pairs import PairFeaturizer
from personalign.models import artifacts
from personalign.models.lowrank import LowRankBT
from personalign.models.objectives import ridge


class ContextBasis(torch.nn.Module):
    """``[phi, domain] -> (n, 1 + K)``: ``s = (mu + mu_d)^T phi``, ``g = (B + Delta_d)^T phi`` (no shift for -1)."""

    def __init__(self, d: int, K: int, n_domains: int, l2_context: float, gen: torch.Generator) -> None:
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(d))
        self.B = torch.nn.Parameter(torch.randn(d, K, generator=gen) * 0.1)
        self.mu_dom = torch.nn.Parameter(torch.zeros(n_domains, d))
        self.B_dom = torch.nn.Parameter(torch.zeros(n_domains, d, K))
        self.l2_context = l2_context
        self.n_domains = n_domains

    def forward(self, Xa: torch.Tensor) -> torch.Tensor:
        X, dom = Xa[:, :-1], Xa[:, -1].long()
        s = X @ self.mu
        g = X @ self.B
        for k in range(self.n_domains):  # few domains: a loop over masks beats gathering d x K per row
            idx = (dom == k).nonzero().squeeze(1)
            if len(idx):
                Xk = X[idx]
                s = s.index_add(0, idx, Xk @ self.mu_dom[k])
                g = g.index_add(0, idx, Xk @ self.B_dom[k])
        return torch.cat([s[:, None], g], 1)

    def penalty(self, l2_mean: float, l2_basis: float) -> torch.Tensor:
        shifts = (self.mu_dom**2).sum() + (self.B_dom**2).sum()
        return ridge(self.mu, self.B, l2_mean, l2_basis) + 0.5 * self.l2_context * shifts


class ContextLowRankBT(LowRankBT):
    """LowRankBT with domain-specific shifts of the population reward and of the basis (see module docstring).

    ``domain_col``: items-table column naming each prompt's domain; ``l2_context``: shrinkage of the shifts
    (large = the plain LowRankBT).
    """

    name = "context"

    def __init__(
        self,
        rank: int = 8,
        featurizer: PairFeaturizer | None = None,
        *,
        domain_col: str = "domain",
        l2_context: float = 1.0,
        l2_mean: float = 1e-3,
        l2_basis: float = 1.0,
        **kw: Any,
    ) -> None:
        super().__init__(rank, featurizer, l2_mean=l2_mean, l2_basis=l2_basis, **kw)
        self.domain_col = domain_col
        self.l2_context = l2_context

    # ------------------------------------------------------------------ domains
    def set_domains(self, prompt_domain: Mapping[str, str]) -> ContextLowRankBT:
        """Prompt -> domain name (before fit: defines the domains; after fit: adds prompts of known domains)."""
        known = getattr(self, "domains_", None)
        if known is None:
            self.domains_ = sorted({str(v) for v in prompt_domain.values()})
            known = self.domains_
        idx = {d: i for i, d in enumerate(known)}
        pd_map = dict(getattr(self, "prompt_domain_", {}))
        for p, d in prompt_domain.items():
            if str(d) in idx:
                pd_map[str(p)] = idx[str(d)]
        self.prompt_domain_ = pd_map
        return self

    def features(
        self, prompts: str | Sequence[str], responses: Sequence[str], show_progress: bool = False
    ) -> np.ndarray:
        """Pair features with one more column: the prompt's domain index (-1: none known)."""
        responses = [str(r) for r in responses]
        if isinstance(prompts, str):
            prompts = [prompts] * len(responses)
        phi = super().features(prompts, responses, show_progress=show_progress)
        known = getattr(self, "prompt_domain_", {})
        dom = np.array([known.get("" if p is None else str(p), -1) for p in prompts], np.float32)
        return np.concatenate([phi, dom[:, None]], axis=1)

    def feature_dim(self) -> int:
        return super().feature_dim() + 1

    def fit(self, data: PreferenceData, val_data: PreferenceData | None = None) -> ContextLowRankBT:
        items = data.items if isinstance(data, PreferenceData) else pd.DataFrame()
        if getattr(self, "domains_", None) is None or not getattr(self, "prompt_domain_", None):
            self.domains_ = None
            self.prompt_domain_ = {}
            if self.domain_col in items.columns:
                sub = items[["prompt", self.domain_col]].dropna().drop_duplicates("prompt")
                self.set_domains(dict(zip(sub["prompt"].astype(str), sub[self.domain_col].astype(str))))
            else:
                self.domains_ = []
        super().fit(data, val_data)
        return self

    def _make_basis_module(self, d: int, K: int, gen: torch.Generator) -> torch.nn.Module:
        return ContextBasis(d - 1, K, len(self.domains_ or []), self.l2_context, gen)

    def _store_basis(self, basis: torch.nn.Module) -> None:
        # mu_ and B_ get a zero last row for the domain-index column, so their shapes match the (d + 1)-wide
        # features the base class stores and checks; project() never multiplies that column
        K = basis.B.shape[1]
        self.mu_ = np.append(basis.mu.detach().double().numpy(), 0.0)
        self.B_ = np.vstack([basis.B.detach().double().numpy(), np.zeros((1, K))])
        self.mu_dom_ = basis.mu_dom.detach().double().numpy().copy()
        self.B_dom_ = basis.B_dom.detach().double().numpy().copy()

    def project(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[phi, domain]`` rows -> ``s = (mu + mu_d)^T phi`` ``(n,)``, ``g = (B + Delta_d)^T phi`` ``(n, K)``."""
        phi = np.asarray(phi, dtype=np.float64)
        X, dom = phi[:, :-1], phi[:, -1].astype(int)
        s = X @ self.mu_[:-1]
        g = X @ self.B_[:-1]
        for k in np.unique(dom[dom >= 0]):
            sel = dom == k
            s[sel] += X[sel] @ self.mu_dom_[k]
            g[sel] += X[sel] @ self.B_dom_[k]
        return s, g

    def domain_shift_norms(self) -> pd.Series:
        """Frobenius norm of each domain's basis shift relative to ``||B||`` (how much context matters where)."""
        self._check_fitted()
        nb = np.linalg.norm(self.B_[:-1]) or 1.0
        return pd.Series([np.linalg.norm(x) / nb for x in self.B_dom_], index=self.domains_, name="shift")

    # ------------------------------------------------------------------ artifacts
    def _tensors(self) -> dict[str, np.ndarray]:
        return {**super()._tensors(), "mu_dom": self.mu_dom_, "B_dom": self.B_dom_}

    def _artifact_config(self) -> dict[str, Any]:
        return {
            **super()._artifact_config(),
            "domains": list(self.domains_ or []),
            "prompt_domain": self.prompt_domain_,
        }

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        if "domains" not in cfg or "prompt_domain" not in cfg:
            raise ConfigError(
                f"{d / 'config.json'}: a ContextLowRankBT artifact needs 'domains' and 'prompt_domain'"
            )
        self.domains_ = list(cfg["domains"])
        self.prompt_domain_ = {str(k): int(v) for k, v in cfg["prompt_domain"].items()}
        super()._load_tensors(t, cfg, d)
        nd, nf, K = len(self.domains_), self.n_features_ - 1, self.K_
        self.mu_dom_ = artifacts.require(t, "mu_dom", (nd, nf), d)
        self.B_dom_ = artifacts.require(t, "B_dom", (nd, nf, K), d)
