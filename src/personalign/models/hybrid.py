"""A hybrid collaborative + content model: every item is its text plus what everybody's judgments say about it.

Model: ``r_u(i) = (mu + B w_u)^T phi(i) + b_i + v_i^T w_u`` with ``phi(i)`` the item's text features, ``b_i`` (a
scalar) and ``v_i`` (K-dim) parameters of item ``i`` learned from everybody's judgments of it, shrunk toward zero by
the Gaussian prior ``b_i ~ N(0, 1 / l2_item)``, ``v_i ~ N(0, I / l2_item_factors)``: an item nobody judged has
``b_i = 0, v_i = 0`` and falls back to its text. The MAP fit has three stages, each with what came before frozen:
the text part (``mu, B``, with the persons' ``w_u``) as LowRankBT fits it; the item biases ``b_i`` on what it
leaves; the item factors ``v_i`` with ``w_u``. So the text part, all an unseen item gets, is as good as LowRankBT's
whatever ``l2_item`` is (fitted jointly, a weak item prior lets the item biases take its place), and the population's
part (what the collapsed model serves) is settled before ``v_i`` and ``w_u`` can co-adapt (fitted together with the
item biases, they overfit on POPQUORN and dragged the biases with them: 73.5 instead of 78 in two seeds). This is
matrix factorization with side features (LightFM, SVD++ with content), in the personal-weights form of
:class:`~personalign.models.lowrank.LowRankBT`: a person is still one K-dim ``w_u ~ N(m, Sigma)``, so adapt, update,
suggest_query, collapsed, the bounds and the service are unchanged.

Items are (prompt, response) pairs, identified exactly (:func:`~personalign.models.objectives.item_keys`); the
items of the training judgments get a row at fit. Mechanics as in :mod:`~personalign.models.context`:
:meth:`HybridBT.features` appends one column, the item's row (-1: unknown), which the basis module and
:meth:`HybridBT.project` split off.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from personalign.data.core import PreferenceData
from personalign.errors import ConfigError
from personalign.features.pairs import PairFeaturizer
from personalign.models import artifacts
from personalign.models.linear import comparison_prompts
from personalign.models.lowrank import LowRankBT
from personalign.models.objectives import item_keys, ridge


class HybridBasis(torch.nn.Module):
    """``[phi, item] -> (n, 1 + K)``: ``s = mu^T phi + b_i``, ``g = B^T phi + v_i`` (no item part for -1)."""

    def __init__(
        self, d: int, K: int, n_items: int, l2_item: float, l2_factors: float, gen: torch.Generator
    ) -> None:
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(d))
        self.B = torch.nn.Parameter(torch.randn(d, K, generator=gen) * 0.1) if K > 0 else None
        self.b = torch.nn.Parameter(torch.zeros(n_items))
        # small random factors: at exactly zero the gradient of v_i^T w_u vanishes together with W's
        self.V = torch.nn.Parameter(torch.randn(n_items, K, generator=gen) * 0.01) if K > 0 else None
        self.l2_item, self.l2_factors = l2_item, l2_factors
        self.items_on = True  # False: the item parameters are left out (the fit's first, text-only stage)

    def forward(self, Xa: torch.Tensor) -> torch.Tensor:
        X, item = Xa[:, :-1], Xa[:, -1].long()
        known = (item >= 0) & self.items_on
        safe = torch.where(known, item, torch.zeros_like(item))
        mask = known.to(X.dtype)
        s = X @ self.mu + self.b.index_select(0, safe) * mask
        if self.B is None:
            return s[:, None]
        g = X @ self.B + self.V.index_select(0, safe) * mask[:, None]
        return torch.cat([s[:, None], g], 1)

    def penalty(self, l2_mean: float, l2_basis: float) -> torch.Tensor:
        pen = ridge(self.mu, self.B, l2_mean, l2_basis)
        if not self.items_on:
            # the text stage: the item terms are constants there, and leaving them in would make its stopping
            # point (a tolerance on the loss) depend on the item prior
            return pen
        pen = pen + 0.5 * self.l2_item * (self.b**2).sum()
        return pen if self.V is None else pen + 0.5 * self.l2_factors * (self.V**2).sum()


class HybridBT(LowRankBT):
    """LowRankBT plus item parameters learned from everybody's judgments (see the module docstring).

    ``l2_item``: prior precision of the item biases ``b_i``; ``l2_item_factors``: of the item factors ``v_i``
    (large values: the plain LowRankBT). Fitted: ``item_bias_ (n_items,)``, ``item_factors_ (n_items, K)``,
    ``item_index_`` (item key -> row).
    """

    name = "hybrid"
    # an item held out of training gets no parameters: validate on held-out judgments, not held-out items
    validates_on_judgments = True

    def __init__(
        self,
        rank: int = 8,
        featurizer: PairFeaturizer | None = None,
        *,
        l2_item: float = 10.0,
        l2_item_factors: float = 10.0,
        **kw: Any,
    ) -> None:
        super().__init__(rank, featurizer, **kw)
        self.l2_item = l2_item
        self.l2_item_factors = l2_item_factors

    # ------------------------------------------------------------------ items
    def item_rows(self, prompts: str | Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Each (prompt, response)'s row among the items judged in training (-1: an item nobody judged)."""
        responses = [str(r) for r in responses]
        if isinstance(prompts, str):
            prompts = [prompts] * len(responses)
        index = getattr(self, "item_index_", {})
        return np.array([index.get(k, -1) for k in item_keys(prompts, responses)], dtype=np.int64)

    def features(
        self, prompts: str | Sequence[str], responses: Sequence[str], show_progress: bool = False
    ) -> np.ndarray:
        """Pair features with one more column: the item's row (-1: unknown)."""
        responses = [str(r) for r in responses]
        phi = super().features(prompts, responses, show_progress=show_progress)
        rows = self.item_rows(prompts, responses).astype(np.float64)
        return np.concatenate([np.asarray(phi, np.float64), rows[:, None]], axis=1)

    def feature_dim(self) -> int:
        return super().feature_dim() + 1

    def fit(self, data: PreferenceData, val_data: PreferenceData | None = None) -> HybridBT:
        comps = data.to_comparisons() if isinstance(data, PreferenceData) else data
        if len(comps) == 0:
            return super().fit(data, val_data)  # the base class says what is missing
        prompts = comparison_prompts(comps)
        keys = np.concatenate([item_keys(prompts, comps[c].astype(str)) for c in ("chosen", "rejected")])
        self.item_index_ = {k: i for i, k in enumerate(dict.fromkeys(keys.tolist()))}
        if len(self.item_index_) >= 2**24:  # the row travels in a float32 feature column
            raise ConfigError(
                f"HybridBT holds at most {2**24 - 1} items, the data has {len(self.item_index_)}"
            )
        super().fit(data, val_data)
        return self

    def _fit_stages(
        self, basis: torch.nn.Module, W: torch.nn.Parameter | None
    ) -> Iterator[tuple[list[torch.Tensor], str]]:
        # text, then item biases, then item factors, each on what the earlier stages leave (module docstring)
        text = [p for p in (basis.mu, basis.B) if p is not None]
        w = [W] if W is not None else []
        factors = [basis.V] if basis.V is not None else []
        every = text + w + [basis.b] + factors
        basis.items_on = False
        yield text + w, "fitting HybridBT (text)"
        basis.items_on = True
        stages = [("item biases", [basis.b])] + ([("item factors", factors + w)] if factors else [])
        try:
            for stage, params in stages:
                keep = {id(p) for p in params}
                for p in every:
                    p.requires_grad_(id(p) in keep)
                yield params, f"fitting HybridBT ({stage})"
        finally:
            for p in every:
                p.requires_grad_(True)

    def _make_basis_module(self, d: int, K: int, gen: torch.Generator) -> torch.nn.Module:
        n = len(getattr(self, "item_index_", {}))
        return HybridBasis(d - 1, K, n, float(self.l2_item), float(self.l2_item_factors), gen)

    def _store_basis(self, basis: torch.nn.Module) -> None:
        # mu_ and B_ get a zero last row for the item column, so their shapes match the (d + 1)-wide features the
        # base class stores and checks; project() never multiplies that column
        K = 0 if basis.B is None else basis.B.shape[1]
        self.mu_ = np.append(basis.mu.detach().double().numpy(), 0.0)
        B = basis.B.detach().double().numpy() if basis.B is not None else np.zeros((len(self.mu_) - 1, 0))
        self.B_ = np.vstack([B, np.zeros((1, K))])
        self.item_bias_ = basis.b.detach().double().numpy().copy()
        V = basis.V.detach().double().numpy() if basis.V is not None else np.zeros((len(self.item_bias_), 0))
        self.item_factors_ = V.copy()

    def project(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[phi, item]`` rows -> ``s = mu^T phi + b_i`` ``(n,)``, ``g = B^T phi + v_i`` ``(n, K)``."""
        phi = np.asarray(phi, dtype=np.float64)
        X, item = phi[:, :-1], phi[:, -1].astype(np.int64)
        s = X @ self.mu_[:-1]
        g = X @ self.B_[:-1]
        known = item >= 0
        s[known] += self.item_bias_[item[known]]
        g[known] += self.item_factors_[item[known]]
        return s, g

    def _fold_prior_mean(self) -> None:
        # b_i + v_i^T m: each item's share of the population's reward, kept when the personal part goes
        self.item_bias_ = self.item_bias_ + self.item_factors_ @ self.prior_mean_
        self.item_factors_ = self.item_factors_[:, :0]

    # ------------------------------------------------------------------ artifacts
    def _tensors(self) -> dict[str, np.ndarray]:
        return {**super()._tensors(), "item_bias": self.item_bias_, "item_factors": self.item_factors_}

    def _artifact_config(self) -> dict[str, Any]:
        return {**super()._artifact_config(), "item_keys": list(self.item_index_)}

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        if "item_keys" not in cfg:
            raise ConfigError(f"{d / 'config.json'}: a HybridBT artifact needs 'item_keys'")
        self.item_index_ = {str(k): i for i, k in enumerate(cfg["item_keys"])}
        super()._load_tensors(t, cfg, d)
        n, K = len(self.item_index_), self.K_
        self.item_bias_ = artifacts.require(t, "item_bias", (n,), d)
        self.item_factors_ = artifacts.require(t, "item_factors", (n, K), d)
