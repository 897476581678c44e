"""Pointwise personal judgments: labels and ratings per (person, item) with personal cut-points and sensitivity.

Model (ordinal logistic, cumulative link): for person u and item i with pair features ``phi_i``,
``eta_ui = exp(rho_u) * (s(phi_i) + g(phi_i)^T w_u)``, ``P(y_ui <= l) = sigmoid(theta_{u,l} - eta_ui)``, ``l < L``,
where ``s = mu^T phi``, ``g = B^T phi`` (K low-rank personal directions, as in LowRankBT), ``rho_u`` a personal
log-sensitivity (how strongly the person reacts to the content) and ``theta_u`` personal cut-points: the shared
ones shifted by personal offsets ``delta_u`` in an unconstrained parametrization (first cut-point plus log-gaps),
so they stay ordered. Binary labels are the L = 2 case (one threshold: "is this offensive to *you*?").
Priors: ``w_u ~ N(0, I)`` (scale absorbed in B), ``delta_u ~ N(0, diag(tau^2))``, ``rho_u ~ N(0, sigma_rho^2)``;
the prior variances are shared and learned by empirical Bayes (refit once with the variances of the first
fit's person parameters). Fitted by MAP with full-batch L-BFGS in PyTorch, early-stopped on validation NLL.

A person's parameters ``v_u = [w_u, delta_u, rho_u]`` are reported as a :class:`Posterior` (MAP and the inverse
Hessian: Laplace); :meth:`OrdinalLowRank.adapt` fits them for a new person from k labels with the shared part frozen.
:class:`CrowdOffsetReference` is the "crowd + personal offset" reference: the item's leave-one-out crowd mean plus
the person's shrunk mean deviation from it.
"""

from __future__ import annotations

import copy
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
from personalign.models.estimator import PersonalModel
from personalign.models.objectives import LinearBasis, index_items, item_keys
from personalign.models.posterior import Posterior
from personalign.models.training import TrainingConfig, data_parallel, fit_lbfgs, hold_out, process_options

POINT_COLUMNS = ("user_id", "prompt", "response", "rating")


def pointwise_table(data: PreferenceData | pd.DataFrame) -> pd.DataFrame:
    """Ratings (or votes as -1/0/+1 ratings) as a table with columns user_id, prompt, response, rating[, item_id]."""
    if isinstance(data, PreferenceData):
        if len(data.ratings):
            df = data.ratings
        elif len(data.votes):
            df = data.votes.rename(columns={"vote": "rating"})
        else:
            raise DataError("no ratings or votes to learn pointwise judgments from", field="ratings")
    else:
        df = pd.DataFrame(data)
    missing = [c for c in ("user_id", "response", "rating") if c not in df.columns]
    if missing:
        raise DataError(
            f"pointwise table lacks column {missing[0]!r}", field=missing[0], expected=str(POINT_COLUMNS)
        )
    out = df.copy()
    out["prompt"] = out["prompt"].fillna("").astype(str) if "prompt" in out.columns else ""
    out["user_id"] = out["user_id"].astype(str)
    out["response"] = out["response"].astype(str)
    bad = out["rating"].isna().to_numpy()
    if bad.any():
        raise DataError(
            "rating is missing", row=int(np.flatnonzero(bad)[0]), field="rating", expected="a number"
        )
    return out


def _ordinal_nll(eta: torch.Tensor, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log P(y | eta, theta) per row; ``theta`` (n, L-1) ordered cut-points, ``y`` level index in [0, L)."""
    n, L1 = theta.shape
    inf = torch.full((n, 1), 1e4, dtype=eta.dtype)
    cuts = torch.cat([-inf, theta, inf], 1)
    upper = cuts.gather(1, (y + 1)[:, None]).squeeze(1) - eta
    lower = cuts.gather(1, y[:, None]).squeeze(1) - eta
    # log(sigmoid(upper) - sigmoid(lower)), stable: log sigmoid(upper) + log(1 - exp(logsig(lower) - logsig(upper)))
    lu = torch.nn.functional.logsigmoid(upper)
    ll = torch.nn.functional.logsigmoid(lower)
    return -(lu + torch.log(-torch.expm1(torch.clamp(ll - lu, max=-1e-12))))


def _cuts(base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Unconstrained ``(.., L-1)`` -> ordered cut-points: first value, then softplus gaps."""
    raw = base + delta
    if raw.shape[-1] == 1:
        return raw
    gaps = torch.nn.functional.softplus(raw[..., 1:])
    return torch.cat([raw[..., :1], raw[..., :1] + torch.cumsum(gaps, -1)], -1)


class OrdinalObjective:
    """Negative log posterior of the ordinal model over rated rows ``(item, unit, level)``, in float64.

    ``sum_i -log P(y_i | eta_i, theta_u(i))`` + ``basis.penalty`` + ``||W||^2 / 2`` + ``sum delta^2 / (2 var_d)`` +
    ``sum rho^2 / (2 var_r)``; rows of unit -1 (unknown persons in validation) use the population's parameters.
    """

    def __init__(self, model: OrdinalLowRank, X: np.ndarray, var_d: np.ndarray, var_r: float) -> None:
        K, L1, U = int(model.rank), model.L_ - 1, len(model.units_)
        gen = torch.Generator().manual_seed(int(model.random_state))
        torch.manual_seed(int(model.random_state))
        self.basis = LinearBasis(X.shape[1], K, False, gen).double()
        self.Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).double()
        self.W = torch.nn.Parameter(torch.randn(U, K, generator=gen, dtype=torch.float64) * 0.01)
        self.delta = torch.nn.Parameter(torch.zeros(U, L1, dtype=torch.float64))
        self.rho = torch.nn.Parameter(torch.zeros(U, dtype=torch.float64))
        self.theta = torch.nn.Parameter(torch.zeros(L1, dtype=torch.float64))
        self.l2_mean, self.l2_basis, self.K = model.l2_mean, model.l2_basis, K
        self.var_d = torch.from_numpy(np.asarray(var_d, np.float64))
        self.var_r = float(var_r)
        self.rows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def rows(self, items: np.ndarray, units: np.ndarray, levels: np.ndarray) -> OrdinalObjective:
        self.i, self.u, self.y = (torch.from_numpy(np.array(a)) for a in (items, units, levels))
        self.weight = float(len(self.i))
        return self

    def on(self, items: np.ndarray, units: np.ndarray, levels: np.ndarray) -> OrdinalObjective:
        """The same parameters over other rows (e.g. the validation rows)."""
        other = copy.copy(self)
        return other.rows(items, units, levels)

    def parameters(self, personal_cuts: bool, personal_scale: bool) -> list[torch.Tensor]:
        params = [*self.basis.parameters(), self.W, self.theta]
        return params + ([self.delta] if personal_cuts else []) + ([self.rho] if personal_scale else [])

    def nll(self) -> torch.Tensor:
        P = self.basis(self.Xt)
        i, u = self.i, self.u
        known = u >= 0
        uu = torch.where(known, u, torch.zeros_like(u))
        lat = P[i, 0]
        if self.K:
            lat = lat + torch.where(known, (P[i, 1:] * self.W[uu]).sum(1), torch.zeros_like(lat))
        sc = torch.where(known, torch.exp(self.rho[uu]), torch.ones_like(lat))
        dl = torch.where(known[:, None], self.delta[uu], torch.zeros_like(self.delta[uu]))
        return _ordinal_nll(sc * lat, _cuts(self.theta, dl), self.y)

    def penalty(self) -> torch.Tensor:
        pen = self.basis.penalty(self.l2_mean, self.l2_basis) + 0.5 * (self.W**2).sum()
        return pen + 0.5 * (self.delta**2 / self.var_d).sum() + 0.5 * (self.rho**2).sum() / self.var_r

    def loss_backward(self, total: float, share: float = 1.0) -> torch.Tensor:
        loss = (self.nll().sum() + self.penalty() * share) / total
        loss.backward()
        return loss.detach()

    @torch.no_grad()
    def loss(self) -> float:
        return float(self.nll().sum())

    def load(self, state: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            self.basis.mu.copy_(torch.from_numpy(state["mu"]))
            if self.K:
                self.basis.B.copy_(torch.from_numpy(state["B"]))
            for name in ("W", "delta", "rho"):
                getattr(self, name).copy_(torch.from_numpy(state[name]))
            self.theta.copy_(torch.from_numpy(state["theta_raw"]))

    def state(self, d: int) -> dict[str, np.ndarray]:
        out = {n: getattr(self, n).detach().numpy().copy() for n in ("W", "delta", "rho")}
        out["mu"] = self.basis.mu.detach().numpy().copy()
        out["B"] = self.basis.B.detach().numpy().copy() if self.K else np.zeros((d, 0))
        out["theta_raw"] = self.theta.detach().numpy().copy()
        return out


# the loop this model was tuned with: no warm-up rounds, a finer tolerance, L-BFGS's default inner tolerances
ORDINAL_TRAINING = TrainingConfig(min_rounds=0, tol=1e-7, grad_tol=1e-7, change_tol=1e-9)


class OrdinalLowRank(PersonalModel):
    """Ordinal logistic model with personal cut-points, sensitivity and low-rank directions (module docstring).

    ``levels``: the ordered rating values (None: the sorted distinct ratings of the training data).
    ``personal_cuts`` / ``personal_scale``: switch the personal cut-point offsets / sensitivity on or off
    (both off and rank 0 = one shared ordinal model for everybody).
    """

    name = "ordinal"
    validates_on_judgments = True  # its validation rows are rated judgments (cut-points need every item)
    rank_param = "rank"
    predicts_pairs = False  # predict_proba gives the rating levels' probabilities

    def __init__(
        self,
        rank: int = 2,
        featurizer: PairFeaturizer | None = None,
        *,
        levels: list[float] | None = None,
        personal_cuts: bool = True,
        personal_scale: bool = True,
        l2_mean: float = 1e-3,
        l2_basis: float = 1.0,
        offset_var: float = 1.0,
        scale_var: float = 0.25,
        eb_refit: bool = True,
        training: TrainingConfig = ORDINAL_TRAINING,
        **kw: Any,
    ) -> None:
        super().__init__(featurizer, training=training, **kw)
        self.rank, self.levels = rank, levels
        self.personal_cuts, self.personal_scale = personal_cuts, personal_scale
        self.l2_mean, self.l2_basis = l2_mean, l2_basis
        self.offset_var, self.scale_var, self.eb_refit = offset_var, scale_var, eb_refit

    # ------------------------------------------------------------------ helpers
    @property
    def n_person_params_(self) -> int:
        return int(self.rank) + (self.L_ - 1) + 1

    def _has_personal_part(self) -> bool:
        return bool(int(self.rank) or self.personal_cuts or self.personal_scale)

    def _level_index(self, ratings: pd.Series) -> np.ndarray:
        r = ratings.astype(float).to_numpy()
        lv = np.asarray(self.levels_)
        idx = np.abs(r[:, None] - lv[None, :]).argmin(1)
        off = np.abs(lv[idx] - r) > 1e-6
        if off.any():
            i = int(np.flatnonzero(off)[0])
            msg = f"rating {r[i]} is not one of the levels {self.levels_}"
            raise DataError(msg, row=i, field="rating", expected=f"one of {self.levels_}")
        return idx.astype(np.int64)

    def _features(self, t: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            self._featurizer().transform(t["prompt"].tolist(), t["response"].tolist()), np.float64
        )

    def _items(self, frames: Sequence[pd.DataFrame]) -> tuple[np.ndarray, list[np.ndarray]]:
        prompts, texts, codes = index_items([(f["prompt"], f["response"]) for f in frames])
        par = data_parallel()
        with par.main_process_first():  # the main process fills the feature cache, the others read it
            show = self.training_config().verbose and par.is_main
            X = self._featurizer().transform(prompts, texts, show_progress=show)
        return X, codes

    # ------------------------------------------------------------------ fit
    def fit(self, data: PreferenceData | pd.DataFrame, val_data: PreferenceData | pd.DataFrame | None = None):
        """MAP fit on ratings (or votes), then empirical Bayes for the prior variances; returns self."""
        self._start_fit()
        self._record_training_data(data)
        options = self.training_config()
        if options.validation_split != "judgments":
            raise ConfigError(
                "OrdinalLowRank holds out rated judgments: training.validation_split='judgments'"
            )
        tab = pointwise_table(data)
        if val_data is not None:
            val = pointwise_table(val_data)
        else:
            tab, val = hold_out(tab, options, self.random_state)
        self.levels_ = self._fit_levels(pd.concat([tab, val])["rating"])
        self.L_ = len(self.levels_)
        self.units_ = sorted(tab["user_id"].unique())
        self.user_units_ = {u: i for i, u in enumerate(self.units_)}
        X, (it, iv) = self._items([tab, val])
        self.n_features_ = X.shape[1]
        tr = (it, tab["user_id"].map(self.user_units_).to_numpy(np.int64), self._level_index(tab["rating"]))
        va = None
        if len(val):
            vu = val["user_id"].map(self.user_units_).fillna(-1).to_numpy(np.int64)
            va = (iv, vu, self._level_index(val["rating"]))
        var_w = np.ones(int(self.rank))
        var_d = np.full(self.L_ - 1, float(self.offset_var))
        var_r = float(self.scale_var)
        state = None
        for round_ in range(2 if self.eb_refit else 1):
            state = self._fit_once(X, tr, va, var_d, var_r, state)
            if round_ == 0 and self.eb_refit:  # empirical Bayes: shared prior variances from the first fit
                if self.personal_cuts:
                    var_d = np.maximum(state["delta"].var(0) + 1e-3, 1e-3)
                if self.personal_scale:
                    var_r = max(float(state["rho"].var()) + 1e-3, 1e-3)
        self._set_state(state, var_w, var_d, var_r)
        self.added_: dict[str, Posterior] = {}
        self.n_train_ = len(tab)
        self.fitted_ = True
        return self

    def _fit_levels(self, ratings: pd.Series) -> list[float]:
        lv = self.levels if self.levels is not None else sorted(ratings.astype(float).unique())
        if len(lv) < 2:
            raise DataError(
                "pointwise judgments need at least two distinct rating levels",
                field="rating",
                expected="two or more levels",
            )
        return [float(x) for x in lv]

    def _fit_once(self, X, tr, va, var_d, var_r, init) -> dict[str, Any]:
        """One MAP fit through the shared loop, from ``init`` (or a fresh start) under the given prior variances."""
        objective = OrdinalObjective(self, X, var_d, var_r)
        par = data_parallel()
        shard = par.shard(len(tr[0]))
        objective.rows(*(a[shard] for a in tr))
        # shared cut-points start at the empirical cumulative logits of all training rows
        counts = np.bincount(tr[2], minlength=self.L_) + 1.0
        cum = np.cumsum(counts)[:-1] / counts.sum()
        t0 = np.log(cum / (1 - cum))
        raw0 = np.concatenate([t0[:1], np.log(np.expm1(np.maximum(np.diff(t0), 1e-3)))])
        with torch.no_grad():
            objective.theta.copy_(torch.from_numpy(raw0.astype(np.float64)))
        if init is not None:
            objective.load(init)
        validation = None
        if va is not None:
            vshard = par.shard(len(va[0]))
            validation = objective.on(*(a[vshard] for a in va))
        self.history_ = fit_lbfgs(
            objective,
            objective.parameters(self.personal_cuts, self.personal_scale),
            validation,
            process_options(self.training_config()),
            par.all_reduce,
            desc="fitting OrdinalLowRank",
        )
        return objective.state(X.shape[1])

    def _set_state(self, st: dict[str, Any], var_w, var_d, var_r) -> None:
        self.mu_, self.B_ = st["mu"], st["B"]
        self.theta_raw_ = st["theta_raw"]
        self.unit_params_ = np.concatenate([st["W"], st["delta"], st["rho"][:, None]], 1)
        self.prior_var_ = np.concatenate([np.asarray(var_w, float), np.asarray(var_d, float), [float(var_r)]])

    # ------------------------------------------------------------------ predictions
    @property
    def cutpoints_(self) -> np.ndarray:
        """The shared (population) cut-points on the latent scale."""
        return _cuts(torch.from_numpy(self.theta_raw_), torch.zeros(self.L_ - 1, dtype=torch.float64)).numpy()

    def _split(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        K, L1 = int(self.rank), self.L_ - 1
        return v[..., :K], v[..., K : K + L1], v[..., K + L1]

    def prior(self, user_row: dict | None = None) -> Posterior:
        """The population: ``w = 0, delta = 0, rho = 0`` with the shared prior variances."""
        self._check_fitted()
        return Posterior(np.zeros(self.n_person_params_), np.diag(self.prior_var_), 0)

    def _unit_posterior(self, j: int) -> Posterior:
        return Posterior(self.unit_params_[j].copy(), np.diag(self.prior_var_), 0)

    def _params_for(self, users: Sequence[str]) -> np.ndarray:
        return (
            np.stack([self.posterior(u).mean for u in users])
            if len(users)
            else np.zeros((0, self.n_person_params_))
        )

    def _latent(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        w, _, _ = self._split(V)
        s = X @ self.mu_
        return s + (X @ self.B_ * w).sum(1) if self.rank else s

    def _score(self, users: list[str], prompts: str | Sequence[str], responses: list[str]) -> np.ndarray:
        """Personal latent utility ``s + g^T w_u`` (before the personal sensitivity and cut-points)."""
        X = np.asarray(self._featurizer().transform(prompts, responses), np.float64)
        return self._latent(X, self._params_for(users))

    def _proba_arrays(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        _, dl, rho = self._split(V)
        eta = np.exp(rho) * self._latent(X, V)
        theta = _cuts(torch.from_numpy(self.theta_raw_), torch.from_numpy(dl)).numpy()
        cdf = 1.0 / (1.0 + np.exp(-(theta - eta[:, None])))
        cdf = np.concatenate([np.zeros((len(eta), 1)), cdf, np.ones((len(eta), 1))], 1)
        return np.clip(np.diff(cdf, axis=1), 0.0, 1.0)

    def predict_proba(self, table: pd.DataFrame, *, strict: bool = False) -> np.ndarray:
        """``(n, L)`` probabilities of each level for rows (user_id, prompt, response); column l is ``levels_[l]``."""
        self._check_fitted()
        t = pointwise_table(table.assign(rating=0.0) if "rating" not in table.columns else table)
        users = t["user_id"].tolist()
        self._check_persons(users, strict)
        return self._proba_arrays(self._features(t), self._params_for(users))

    def expected_rating(self, table: pd.DataFrame, *, strict: bool = False) -> np.ndarray:
        """The expected level of each row under its person's predicted distribution."""
        return self.predict_proba(table, strict=strict) @ np.asarray(self.levels_)

    def predict(self, table: pd.DataFrame, *, strict: bool = False) -> np.ndarray:
        """Most probable level per row (for binary labels: the label with P > 0.5)."""
        return np.asarray(self.levels_)[self.predict_proba(table, strict=strict).argmax(1)]

    def mae(self, table: pd.DataFrame, by_person: bool = False, *, strict: bool = False) -> float | pd.Series:
        """Mean absolute error of the expected rating (per person with ``by_person``)."""
        t = pointwise_table(table)
        err = np.abs(self.expected_rating(t, strict=strict) - t["rating"].astype(float).to_numpy())
        if by_person:
            return pd.Series(err).groupby(t["user_id"].to_numpy()).mean()
        return float(err.mean())

    # ------------------------------------------------------------------ new persons
    def _adapt(self, examples: pd.DataFrame, prior: Posterior) -> Posterior:
        """MAP + Laplace covariance of a new person's ``[w, delta, rho]`` from k labels, the shared part frozen."""
        t = pointwise_table(examples)
        X = torch.from_numpy(self._features(t))
        y = torch.from_numpy(self._level_index(t["rating"]))
        s = X @ torch.from_numpy(self.mu_)
        G = X @ torch.from_numpy(self.B_)
        theta = torch.from_numpy(self.theta_raw_)
        m = torch.from_numpy(prior.mean)
        Pm = torch.from_numpy(np.linalg.inv(prior.cov))
        K, L1 = int(self.rank), self.L_ - 1
        mask = torch.ones(K + L1 + 1, dtype=torch.float64)
        if not self.personal_cuts:
            mask[K : K + L1] = 0
        if not self.personal_scale:
            mask[-1] = 0

        def f(v: torch.Tensor) -> torch.Tensor:
            v = m + mask * (v - m)
            w, dl, rho = v[:K], v[K : K + L1], v[-1]
            eta = torch.exp(rho) * (s + G @ w)
            r = v - m
            return _ordinal_nll(eta, _cuts(theta, dl.expand(len(eta), L1)), y).sum() + 0.5 * r @ Pm @ r

        v = m.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([v], lr=1.0, max_iter=50, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = f(v)
            loss.backward()
            return loss

        opt.step(closure)
        v = (m + mask * (v.detach() - m)).detach()
        H = torch.autograd.functional.hessian(f, v)
        H = 0.5 * (H + H.T) + 1e-9 * torch.eye(len(v), dtype=torch.float64)
        cov = torch.linalg.inv(H).numpy()
        return Posterior(v.numpy(), 0.5 * (cov + cov.T), prior.n + len(t))

    def collapsed(self) -> OrdinalLowRank:
        """A copy with every person at the population (no personal direction, cut-points or sensitivity)."""
        self._check_fitted()
        m = self._copy()
        m.unit_params_ = np.zeros_like(m.unit_params_)
        m.added_ = {u: m.prior() for u in m.added_}
        return m

    # ------------------------------------------------------------------ artifacts
    def _tensors(self) -> dict[str, np.ndarray]:
        return {
            "mu": self.mu_,
            "B": self.B_,
            "theta_raw": self.theta_raw_,
            "unit_params": self.unit_params_,
            "prior_var": self.prior_var_,
        }

    def _artifact_config(self) -> dict[str, Any]:
        history = {k: v for k, v in self.history_.items() if k != "train_loss"}
        return {
            "n_features": int(self.n_features_),
            "levels": self.levels_,
            "units": self.units_,
            "history": history,
        }

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        try:
            self.levels_ = [float(x) for x in cfg["levels"]]
            self.units_ = list(cfg["units"])
            nf = int(cfg["n_features"])
        except KeyError as exc:
            raise ConfigError(f"{d / 'config.json'}: missing {exc.args[0]!r}") from exc
        self.L_ = len(self.levels_)
        self.user_units_ = {u: i for i, u in enumerate(self.units_)}
        if self._featurizer().dim_out != nf:
            raise ConfigError(
                f"{d}: featurizer gives {self._featurizer().dim_out}-d features, model expects {nf}"
            )
        self.n_features_ = nf
        P = self.n_person_params_
        self.mu_ = artifacts.require(t, "mu", (nf,), d)
        self.B_ = artifacts.require(t, "B", (nf, int(self.rank)), d)
        self.theta_raw_ = artifacts.require(t, "theta_raw", (self.L_ - 1,), d)
        self.unit_params_ = artifacts.require(t, "unit_params", (len(self.units_), P), d)
        self.prior_var_ = artifacts.require(t, "prior_var", (P,), d)
        self.history_ = cfg.get("history", {})
        self.added_ = {}
        self.fitted_ = True


class CrowdOffsetReference:
    """Reference predictor: the item's leave-one-out crowd mean plus the person's shrunk mean offset from it.

    ``pred(u, i) = crowd_{-u}(i) + b_u``, ``b_u = sum_j (y_uj - crowd_{-u}(j)) / (n_u + shrink)`` over the person's
    training items; items nobody else rated use the global mean. For binary 0/1 labels it predicts a rate.
    """

    def __init__(self, shrink: float = 2.0) -> None:
        self.shrink = shrink

    def fit(self, data: PreferenceData | pd.DataFrame) -> CrowdOffsetReference:
        """Learn each item's crowd sums and each person's shrunken mean offset from the crowd."""
        t = pointwise_table(data)
        t["key"] = item_keys(t["prompt"], t["response"])
        y = t["rating"].astype(float)
        self.sum_ = y.groupby(t["key"]).sum()
        self.cnt_ = y.groupby(t["key"]).size()
        self.mean_ = float(y.mean())
        self.own_ = t.assign(y=y).groupby(["user_id", "key"])["y"].agg(["sum", "size"])
        loo = self._crowd(t["user_id"].to_numpy(), t["key"].to_numpy())
        self.offset_ = (y - loo).groupby(t["user_id"]).sum() / (t.groupby("user_id").size() + self.shrink)
        self.lo_, self.hi_ = float(y.min()), float(y.max())
        return self

    def _crowd(self, users: np.ndarray, keys: np.ndarray) -> np.ndarray:
        s = self.sum_.reindex(keys).fillna(0.0).to_numpy()
        c = self.cnt_.reindex(keys).fillna(0).to_numpy().astype(float)
        own = self.own_.reindex(pd.MultiIndex.from_arrays([users, keys])).fillna(0.0)
        s, c = s - own["sum"].to_numpy(), c - own["size"].to_numpy()
        return np.where(c > 0, s / np.maximum(c, 1), self.mean_)

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """The leave-one-out crowd mean of each row's item plus the person's offset, clipped to the observed
        range."""
        t = pointwise_table(table.assign(rating=0.0) if "rating" not in table.columns else table)
        keys = item_keys(t["prompt"], t["response"])
        users = t["user_id"].to_numpy()
        pred = self._crowd(users, keys) + self.offset_.reindex(users).fillna(0.0).to_numpy()
        return np.clip(pred, self.lo_, self.hi_)

    def mae(self, table: pd.DataFrame, by_person: bool = False) -> float | pd.Series:
        """Mean absolute error of :meth:`predict` (per person with ``by_person``)."""
        t = pointwise_table(table)
        err = np.abs(self.predict(t) - t["rating"].astype(float).to_numpy())
        return pd.Series(err).groupby(t["user_id"].to_numpy()).mean() if by_person else float(err.mean())
