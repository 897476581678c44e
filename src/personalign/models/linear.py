"""The linear-Gaussian personal layer over pair features, which every comparison model shares.

Model: ``r_u(x, y) = s(phi) + g(phi)^T w_u`` with ``phi = phi(x, y)`` from a :class:`PairFeaturizer`,
``s(phi) = mu^T phi`` the population part and ``g(phi) = B^T phi`` a K-dim personal basis, so the linear case is
``r_u = (mu + B w_u)^T phi``; a comparison is Bradley-Terry: ``P(y1 > y2) = sigmoid(r_u(x, y1) - r_u(x, y2))``.
Person weights have a Gaussian prior ``w_u ~ N(m, Sigma)``; with the shared part frozen, a person's posterior is
a Laplace approximation in K dimensions (Newton), which serves ``adapt``, ``update`` and ``suggest_query``.

Extension points (how the other model variants slot in):

- **Basis** (:meth:`LinearGaussianModel.project`): maps features to ``(s, g)``; the default is linear
  (``mu``, ``B`` arrays). An MLP basis overrides ``_make_basis_module`` (a ``torch.nn.Module`` mapping
  ``(n, d) -> (n, 1 + K)``, trained through :func:`~personalign.models.training.fit_lbfgs`), ``_store_basis`` and
  ``project``; everything downstream (adapt, update, queries, bounds) only sees ``(s, g)``.
- **Prior mean from side information** (:meth:`LinearGaussianModel.prior`): override ``_prior_mean(user_row)``.
- **Units**: the per-person parameter rows are "units" (``_units``): persons for LowRankBT/IndependentBT,
  groups for GroupBT, none for AggregatedBT.
- **After the MAP fit** (``_after_fit``): empirical Bayes for the prior, Laplace covariances of the units.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from personalign.data.core import POPULATION_USER, PreferenceData
from personalign.errors import ConfigError, DataError
from personalign.features.pairs import PairFeaturizer
from personalign.models import artifacts
from personalign.models.estimator import PersonalModel, as_list
from personalign.models.objectives import (
    LinearBasis,
    PairwiseObjective,
    TrainArrays,
    index_items,
    pair_labels,
)
from personalign.models.posterior import BatchedLaplace, Posterior, laplace_newton, sigmoid
from personalign.models.training import (
    data_parallel,
    fit_lbfgs,
    hold_out,
    process_options,
    torch_threads,
)

REFERENCE_ITEMS = 200  # training texts a model keeps to name its personal directions by (personalign explain)


def reference_items(comparisons: pd.DataFrame, n: int, seed: int = 0) -> dict[str, list[str]]:
    """Up to ``n`` distinct (prompt, text) items of a comparisons table, drawn without replacement by ``seed``:
    ``{"prompt": [...], "text": [...]}`` (what a model keeps to name its directions by)."""
    prompts = comparison_prompts(comparisons)
    pairs = list(
        dict.fromkeys(
            (p, str(t))
            for side in ("chosen", "rejected")
            for p, t in zip(prompts, comparisons[side], strict=True)
        )
    )
    if len(pairs) > n:
        pick = np.sort(np.random.default_rng(seed).choice(len(pairs), size=n, replace=False))
        pairs = [pairs[i] for i in pick]
    return {"prompt": [p for p, _ in pairs], "text": [t for _, t in pairs]}


def comparison_prompts(comparisons: pd.DataFrame) -> list[str]:
    """The prompt of every row of a comparisons table ("" when the table has no prompt column)."""
    if "prompt" in comparisons.columns:
        return comparisons["prompt"].fillna("").astype(str).tolist()
    return [""] * len(comparisons)


class LinearGaussianModel(PersonalModel):
    """Base of the linear-in-features models: ``r_u = (mu + B w_u)^T phi``, ``w_u ~ N(m, Sigma)``.

    Parameters: ``featurizer`` (None: MiniLM pair features), ``l2_mean``/``l2_basis`` (ridge on ``mu``/``B``),
    ``prior_precision`` (of the person weights during the MAP fit), ``random_state``, ``training``.
    Fitted attributes: ``mu_ (d,)``, ``B_ (d, K)`` (None for the identity basis), ``prior_mean_ (K,)``,
    ``prior_cov_ (K, K)``, ``units_`` (unit names), ``unit_means_ (U, K)``, ``unit_covs_ (U, K, K)`` or None,
    ``user_units_`` (person -> unit row), ``added_`` (persons added after fit), ``history_``, ``train_counts_``
    (training comparisons per person), ``reference_items_`` (up to 200 training items that name the directions).
    """

    identity_basis: ClassVar[bool] = False
    store_unit_covs: ClassVar[bool] = True

    def __init__(
        self,
        featurizer: PairFeaturizer | None = None,
        *,
        l2_mean: float = 30.0,
        l2_basis: float = 30.0,
        prior_precision: float = 1.0,
        **kw: Any,
    ) -> None:
        super().__init__(featurizer, **kw)
        self.l2_mean = l2_mean
        self.l2_basis = l2_basis
        self.prior_precision = prior_precision

    def n_personal(self, d: int) -> int:
        """K, the personal dimension, for ``d``-dim features: ``d`` (identity basis), the rank parameter, or 0."""
        if self.identity_basis:
            return d
        return int(getattr(self, self.rank_param)) if self.rank_param else 0

    def features(self, prompts: str | Sequence[str], responses: Sequence[str], show_progress: bool = False):
        """Pair features ``phi`` as this model reads them (a subclass may append columns)."""
        return self._featurizer().transform(prompts, list(responses), show_progress=show_progress)

    def feature_dim(self) -> int:
        """Columns of :meth:`features`."""
        return self._featurizer().dim_out

    def _has_personal_part(self) -> bool:
        return self.K_ > 0

    # ------------------------------------------------------------------ units (override)
    def _units(self, data: PreferenceData | None, comps: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
        """Unit names and the person -> unit row map. Default: one unit per person (population excluded)."""
        users = sorted(set(comps["user_id"].astype(str)) - {POPULATION_USER})
        return users, {u: i for i, u in enumerate(users)}

    def _unit_rows(self, users: Sequence[str]) -> np.ndarray:
        m = self.user_units_
        return np.array([m.get(str(u), -1) for u in users], dtype=np.int64)

    # ------------------------------------------------------------------ fit
    def fit(self, data: PreferenceData, val_data: PreferenceData | None = None) -> LinearGaussianModel:
        """MAP fit of the shared part and the units' weights on ``data.to_comparisons()``; returns self."""
        self._start_fit()
        self._record_training_data(data)
        comps = _comparisons(data)
        if len(comps) == 0:
            raise DataError("no comparisons to train on (ratings, votes and rankings convert to comparisons)")
        if val_data is not None:
            val = _comparisons(val_data)
        else:
            comps, val = hold_out(comps, self.training_config(), self.random_state)
        self.units_, self.user_units_ = self._units(data if isinstance(data, PreferenceData) else None, comps)
        # per-person training comparisons, so the service can say how much a person's learned posterior rests on
        counts = comps["user_id"].astype(str).value_counts()
        self.train_counts_ = {str(u): int(n) for u, n in counts.items() if u in self.user_units_}
        self.reference_items_ = reference_items(comps, REFERENCE_ITEMS, self.random_state)
        train, va = self._train_arrays(comps, val)
        self.fit_arrays(train, va if len(va) else None)
        self.n_train_ = len(comps)
        return self

    def _train_arrays(self, comps: pd.DataFrame, val: pd.DataFrame) -> tuple[TrainArrays, TrainArrays]:
        """Training and validation comparisons over one table of unique items (featurized once)."""
        par = data_parallel()
        cols = [(f["prompt"], f[side]) for f in (comps, val) for side in ("chosen", "rejected")]
        prompts, texts, codes = index_items(cols)
        show = self.training_config().verbose and par.is_main
        with par.main_process_first():  # the main process fills the feature cache, the others read it
            X = self.features(prompts, texts, show_progress=show)
        tr = TrainArrays(X, codes[0], codes[1], self._unit_rows(comps["user_id"]), *pair_labels(comps))
        va = TrainArrays(X, codes[2], codes[3], self._unit_rows(val["user_id"]), *pair_labels(val))
        return tr, va

    def _init_parameters(self, d: int) -> tuple[torch.nn.Module, torch.nn.Parameter | None]:
        """The starting basis module and unit weights, deterministic by ``random_state``."""
        K = self.n_personal(d)
        gen = torch.Generator().manual_seed(int(self.random_state))
        torch.manual_seed(int(self.random_state))
        basis = self._make_basis_module(d, K, gen)
        W = None
        if K > 0 and len(self.units_) > 0:
            W = torch.nn.Parameter(torch.randn(len(self.units_), K, generator=gen) * 0.01)
        return basis, W

    def fit_arrays(self, train: TrainArrays, val: TrainArrays | None = None) -> LinearGaussianModel:
        """Array-level fit (benchmarks): ``train.unit`` must index ``self.units_`` (set it before calling)."""
        if not hasattr(self, "units_"):
            n_units = int(train.unit.max()) + 1 if len(train.unit) else 0
            self.units_ = [str(i) for i in range(n_units)]
            self.user_units_ = {u: i for i, u in enumerate(self.units_)}
        self.n_features_ = train.X.shape[1]
        basis, W = self._init_parameters(self.n_features_)
        par = data_parallel()
        objective = PairwiseObjective(
            basis,
            W,
            train.shard(par),
            l2_mean=self.l2_mean,
            l2_basis=self.l2_basis,
            prior_precision=self.prior_precision,
            chunk_rows=self.training_config().chunk_rows,
        )
        validation = objective.on(val.shard(par)) if val is not None and len(val) else None
        options = process_options(self.training_config())
        stages = []
        with torch_threads():
            for params, desc in self._fit_stages(basis, W):
                stages.append(fit_lbfgs(objective, params, validation, options, par.all_reduce, desc=desc))
        self.history_ = {**stages[-1], "stages": stages} if len(stages) > 1 else stages[0]
        self._store_basis(basis)
        K = self.B_.shape[1] if self.B_ is not None else (self.n_features_ if self.identity_basis else 0)
        self.prior_mean_ = np.zeros(K)
        self.prior_cov_ = np.eye(K) / self.prior_precision
        self.unit_means_ = W.detach().double().numpy() if W is not None else np.zeros((len(self.units_), K))
        self.unit_covs_ = None
        self.added_: dict[str, Posterior] = {}
        with torch_threads():
            self._after_fit(train, val)
            self._calibrate(train, val)
        self.fitted_ = True
        return self

    def _fit_stages(
        self, basis: torch.nn.Module, W: torch.nn.Parameter | None
    ) -> Iterator[tuple[list[torch.Tensor], str]]:
        """The parameters of each L-BFGS stage of the MAP fit, in order (default: one stage, all of them). A
        subclass may prepare the basis module between stages (the generator resumes after each stage's fit)."""
        yield list(basis.parameters()) + ([W] if W is not None else []), f"fitting {type(self).__name__}"

    def _calibrate(self, train: TrainArrays, val: TrainArrays | None) -> None:
        """Hook after :meth:`_after_fit` that may rescale the person prior on held-out rows (default: none)."""

    def _make_basis_module(self, d: int, K: int, gen: torch.Generator) -> torch.nn.Module:
        return LinearBasis(d, K, self.identity_basis, gen)

    def _store_basis(self, basis: torch.nn.Module) -> None:
        self.mu_ = basis.mu.detach().double().numpy().copy()
        self.B_ = basis.B.detach().double().numpy().copy() if getattr(basis, "B", None) is not None else None

    def _after_fit(self, train: TrainArrays, val: TrainArrays | None = None) -> None:
        """Hook after the MAP fit (default: Laplace covariances of the units under the fixed prior); ``val``: the
        held-out rows of the fit's early stopping, if any."""
        if self.K_ > 0 and self.store_unit_covs and len(self.units_):
            P = torch.from_numpy(np.linalg.inv(self.prior_cov_))
            W, C = self._unit_laplace(train).solve(
                torch.from_numpy(self.prior_mean_), P, w0=torch.from_numpy(self.unit_means_), iters=2
            )
            self.unit_means_, self.unit_covs_ = W.numpy(), C.numpy()

    def _unit_laplace(self, train: TrainArrays) -> BatchedLaplace:
        """Every unit's Laplace problem with the shared part frozen at its fitted value."""
        S, G = self.project(train.X)
        return BatchedLaplace(
            torch.from_numpy(G[train.ci] - G[train.ri]),
            torch.from_numpy(S[train.ci] - S[train.ri]),
            torch.from_numpy(train.y.astype(np.float64)),
            torch.from_numpy(train.wt.astype(np.float64)),
            torch.from_numpy(train.unit),
            len(self.units_),
        )

    # ------------------------------------------------------------------ projection / scoring
    @property
    def K_(self) -> int:
        return int(self.prior_mean_.shape[0])

    def project(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features -> population score ``s = mu^T phi`` ``(n,)`` and personal basis ``g = B^T phi`` ``(n, K)``."""
        phi = np.asarray(phi, dtype=np.float64)
        s = phi @ self.mu_
        if self.identity_basis:
            return s, phi
        if self.B_ is None:
            return s, np.zeros((phi.shape[0], 0))
        return s, phi @ self.B_

    def basis(self, prompts: str | Sequence[str], responses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(s, g)`` for (prompt, response) rows: ``r_u = s + g @ w_u``."""
        self._check_fitted()
        return self.project(self.features(prompts, list(responses)))

    def weights_for(self, user_id: str) -> np.ndarray:
        """Posterior mean of a person's weights (the prior mean for an unknown person)."""
        return self.posterior(user_id).mean

    def _weights(self, users: Sequence[str]) -> np.ndarray:
        return np.stack([self.weights_for(u) for u in users]) if len(users) else np.zeros((0, self.K_))

    def _score(self, users: list[str], prompts: str | Sequence[str], responses: list[str]) -> np.ndarray:
        """Rewards ``r_u(x, y) = s + g^T w_u``, ``w_u`` the person's posterior mean (the prior's if unknown)."""
        s, g = self.basis(prompts, responses)
        if self.K_ == 0:
            return s
        return s + (g * self._weights(users)).sum(1)

    def score_posterior(
        self,
        posterior_or_weights: Posterior | np.ndarray,
        prompts: str | Sequence[str],
        responses: Sequence[str],
    ) -> np.ndarray:
        """Rewards under arbitrary personal weights (a Posterior's mean, or a ``(K,)`` / ``(n, K)`` array)."""
        w = (
            posterior_or_weights.mean
            if isinstance(posterior_or_weights, Posterior)
            else np.asarray(posterior_or_weights)
        )
        s, g = self.basis(prompts, as_list(responses))
        if self.K_ == 0:
            return s
        return s + (g @ w if w.ndim == 1 else (g * w).sum(1))

    def _pair_rows(self, comparisons: pd.DataFrame, strict: bool) -> tuple[list[str], ...]:
        """Persons (checked), prompts, chosen and rejected texts of a comparisons table."""
        self._check_fitted()
        c = comparisons
        users = c["user_id"].astype(str).tolist()
        self._check_persons(users, strict, stacklevel=4)
        texts = (c[col].astype(str).tolist() for col in ("chosen", "rejected"))
        return users, comparison_prompts(c), *texts

    def predict_proba(
        self, comparisons: pd.DataFrame, *, strict: bool = False, predictive: bool = True
    ) -> np.ndarray:
        """P(chosen > rejected) per row of a comparisons table (user_id, prompt, chosen, rejected).

        ``predictive`` (default): the posterior predictive under the person's Gaussian belief, by the probit
        approximation ``P = sigmoid(z / sqrt(1 + pi v / 8))`` with ``z = a + d^T w_u``, ``v = d^T C_u d``: the less
        is known about a person along ``d``, the nearer 0.5 (the winner, the sign of ``z``, is the same).
        ``predictive=False``: the plug-in ``sigmoid(z)`` at the posterior mean.
        """
        users, prompts, chosen, rejected = self._pair_rows(comparisons, strict)
        sc, gc = self.basis(prompts, chosen)
        sr, gr = self.basis(prompts, rejected)
        D = gc - gr
        z = sc - sr
        if self.K_ == 0:
            return sigmoid(z)
        z = z + (D * self._weights(users)).sum(1)
        if not predictive:
            return sigmoid(z)
        return sigmoid(z / np.sqrt(1.0 + np.pi * self._pair_variance(users, D) / 8.0))

    def _pair_variance(self, users: Sequence[str], D: np.ndarray) -> np.ndarray:
        """``d_i^T C_u d_i`` per row, ``C_u`` the covariance of row i's person."""
        var = np.zeros(len(users))
        codes, uniq = pd.factorize(pd.Series(list(users), dtype=str))
        for j, u in enumerate(uniq):
            rows = codes == j
            var[rows] = np.einsum("ij,jk,ik->i", D[rows], self.posterior(u).cov, D[rows])
        return np.clip(var, 0.0, None)

    # ------------------------------------------------------------------ persons
    def _prior_mean(self, user_row: dict | None) -> np.ndarray:
        """Override for side information (demographic prior mean)."""
        return self.prior_mean_

    def prior(self, user_row: dict | None = None) -> Posterior:
        """The population prior ``N(m, Sigma)`` (or the demographic prior for ``user_row``)."""
        self._check_fitted()
        return Posterior(self._prior_mean(user_row).copy(), self.prior_cov_.copy(), 0)

    def _unit_posterior(self, j: int) -> Posterior:
        cov = self.unit_covs_[j] if self.unit_covs_ is not None else self.prior_cov_
        return Posterior(self.unit_means_[j].copy(), np.array(cov, copy=True), 0)

    def example_arrays(self, examples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(D, a, y, wt)`` for Laplace: personal-basis and population differences chosen - rejected."""
        prompts = comparison_prompts(examples)
        n = len(examples)
        phi = self.features(
            prompts + prompts,
            examples["chosen"].astype(str).tolist() + examples["rejected"].astype(str).tolist(),
        )
        s, g = self.project(phi)
        y, wt = pair_labels(examples)
        return g[:n] - g[n:], s[:n] - s[n:], y.astype(np.float64), wt.astype(np.float64)

    def adapt_arrays(
        self, D: np.ndarray, a: np.ndarray, y: np.ndarray, wt: np.ndarray, prior: Posterior
    ) -> Posterior:
        """Laplace posterior from precomputed ``(D, a, y, wt)`` (the milliseconds path)."""
        if len(a) == 0 or prior.dim == 0:
            return Posterior(prior.mean.copy(), prior.cov.copy(), prior.n + len(a))
        P = np.linalg.inv(prior.cov)
        mean, cov = laplace_newton(D, a, y, wt, prior.mean, P, w0=prior.mean)
        return Posterior(mean, cov, prior.n + len(a))

    def _adapt(self, examples: pd.DataFrame, prior: Posterior) -> Posterior:
        """Laplace posterior of the person's weights from k comparisons (Newton in K dimensions)."""
        return self.adapt_arrays(*self.example_arrays(examples), prior)

    def suggest_query(self, posterior: Posterior, candidates: pd.DataFrame) -> int:
        """Row position of the candidate pair whose answer is expected to be most informative.

        Criterion: expected information gain of the Laplace update, ``log(1 + p (1 - p) d^T Sigma d)`` (the drop
        in log det of the covariance), with ``d`` the pair's personal-basis difference and ``p`` the predicted
        probability under the current posterior (moderated by its variance).
        """
        self._check_fitted()
        if len(candidates) == 0:
            raise DataError(
                "no candidate pairs to choose from", field="candidates", expected="at least one row"
            )
        D, a, _, _ = self.example_arrays(candidates)
        return int(np.argmax(self.query_scores(posterior, D, a)))

    def query_scores(self, posterior: Posterior, D: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Information gain of each candidate pair (see :meth:`suggest_query`)."""
        if posterior.dim == 0:
            return np.zeros(len(a))
        var = np.einsum("ij,jk,ik->i", D, posterior.cov, D)
        z = a + D @ posterior.mean
        p = sigmoid(z / np.sqrt(1.0 + np.pi * var / 8.0))
        return np.log1p(p * (1 - p) * var)

    def collapsed(self) -> LinearGaussianModel:
        """A copy in which every person (trained or added) has the population prior mean."""
        self._check_fitted()
        m = self._copy()
        if m.K_ > 0:
            m.unit_means_ = np.tile(m.prior_mean_, (len(m.units_), 1))
            m.unit_covs_ = None if m.unit_covs_ is None else np.tile(m.prior_cov_, (len(m.units_), 1, 1))
            m.added_ = {u: Posterior(m.prior_mean_.copy(), m.prior_cov_.copy(), 0) for u in m.added_}
        return m

    def shared_only(self) -> LinearGaussianModel:
        """The population's reward with no personal part: ``mu <- mu + B m`` and rank 0, so that every person
        (trained, added or new, with any number of judgments) is scored as :meth:`collapsed` scores them and
        adapting changes nothing; what tuning serves when the personal part loses to its own collapsed control."""
        self._check_fitted()
        m = self._copy()
        if m.K_ == 0:
            return m
        m._fold_prior_mean()
        m.mu_ = m.mu_ + (m.prior_mean_ if m.identity_basis else m.B_ @ m.prior_mean_)
        m.B_ = None if m.B_ is None else m.B_[:, :0]
        m.prior_mean_, m.prior_cov_ = np.zeros(0), np.zeros((0, 0))
        m.unit_means_, m.unit_covs_ = np.zeros((len(m.units_), 0)), None
        m.added_ = {u: Posterior(np.zeros(0), np.zeros((0, 0)), p.n) for u, p in m.added_.items()}
        if type(m).rank_param is not None and hasattr(m, type(m).rank_param):
            setattr(m, type(m).rank_param, 0)
        return m

    def _fold_prior_mean(self) -> None:
        """Fold the prior mean's share of any other personal term into shared parameters (override)."""

    @property
    def bytes_per_person(self) -> int:
        return self.prior().nbytes if getattr(self, "fitted_", False) else 0

    # ------------------------------------------------------------------ artifacts
    def _tensors(self) -> dict[str, np.ndarray]:
        t = {
            "mu": self.mu_,
            "prior_mean": self.prior_mean_,
            "prior_cov": self.prior_cov_,
            "unit_means": self.unit_means_,
        }
        if self.B_ is not None:
            t["B"] = self.B_
        if self.unit_covs_ is not None:
            t["unit_covs"] = self.unit_covs_
        if self.added_:
            t["added_means"] = np.stack([p.mean for p in self.added_.values()])
            t["added_covs"] = np.stack([p.cov for p in self.added_.values()])
        return t

    def _artifact_config(self) -> dict[str, Any]:
        return {
            "n_features": int(self.n_features_),
            "K": self.K_,
            "units": list(self.units_),
            "user_units": self.user_units_,
            "added_users": list(self.added_),
            "added_n": [p.n for p in self.added_.values()],
            "history": {k: v for k, v in self.history_.items() if k != "train_loss"},
            **(
                {"train_counts": self.train_counts_}
                if getattr(self, "train_counts_", None) is not None
                else {}
            ),
            **({self.rank_param: int(getattr(self, self.rank_param))} if self.rank_param else {}),
            **(
                {"reference_items": self.reference_items_}
                if getattr(self, "reference_items_", None) is not None
                else {}
            ),
        }

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        nf, K = int(cfg["n_features"]), int(cfg["K"])
        units = list(cfg["units"])
        if self.feature_dim() != nf:
            raise ConfigError(f"{d}: featurizer gives {self.feature_dim()}-d features, model expects {nf}")
        self.n_features_ = nf
        self.mu_ = artifacts.require(t, "mu", (nf,), d)
        has_b = "B" in t or (not self.identity_basis and K > 0)
        self.B_ = artifacts.require(t, "B", (nf, K), d) if has_b else None
        self.prior_mean_ = artifacts.require(t, "prior_mean", (K,), d)
        self.prior_cov_ = artifacts.require(t, "prior_cov", (K, K), d)
        self.units_ = units
        self.unit_means_ = artifacts.require(t, "unit_means", (len(units), K), d)
        self.unit_covs_ = (
            artifacts.require(t, "unit_covs", (len(units), K, K), d) if "unit_covs" in t else None
        )
        self.user_units_ = {str(k): int(v) for k, v in cfg.get("user_units", {}).items()}
        added = cfg.get("added_users", [])
        self.added_ = {}
        if added:
            am = artifacts.require(t, "added_means", (len(added), K), d)
            ac = artifacts.require(t, "added_covs", (len(added), K, K), d)
            ns = cfg.get("added_n", [0] * len(added))
            self.added_ = {u: Posterior(am[i], ac[i], ns[i]) for i, u in enumerate(added)}
        self.history_ = cfg.get("history", {})
        self.train_counts_ = cfg.get("train_counts")  # None in artifacts saved before counts were kept
        self.reference_items_ = cfg.get("reference_items")  # None likewise (before they were kept)
        self.fitted_ = True


def _comparisons(data: PreferenceData | pd.DataFrame) -> pd.DataFrame:
    return data.to_comparisons() if isinstance(data, PreferenceData) else pd.DataFrame(data)
