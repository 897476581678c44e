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

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from personalign.data.core import PreferenceData
from personalign.data.splits import split_judgments
from personalign.errors import ConfigError, DataError
from personalign.features.pairs import PairFeaturizer
from personalign.models.base import _SEP, FORMAT_VERSION, LinearBasis, PersonalModel, Posterior, _as_list

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


class OrdinalLowRank(PersonalModel):
    """Ordinal logistic model with personal cut-points, sensitivity and low-rank directions (module docstring).

    ``levels``: the ordered rating values (None: the sorted distinct ratings of the training data).
    ``personal_cuts`` / ``personal_scale``: switch the personal cut-point offsets / sensitivity on or off
    (both off and rank 0 = one shared ordinal model for everybody).
    """

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
        max_iter: int = 300,
        validation_fraction: float = 0.1,
        patience: int = 3,
        random_state: int = 0,
        verbose: bool = False,
    ) -> None:
        self.rank = rank
        self.featurizer = featurizer
        self.levels = None if levels is None else [float(x) for x in levels]
        self.personal_cuts = personal_cuts
        self.personal_scale = personal_scale
        self.l2_mean = l2_mean
        self.l2_basis = l2_basis
        self.offset_var = offset_var
        self.scale_var = scale_var
        self.eb_refit = eb_refit
        self.max_iter = max_iter
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ helpers
    def _featurizer(self) -> PairFeaturizer:
        if self.featurizer is None:
            self.featurizer = PairFeaturizer()
        return self.featurizer

    @property
    def n_person_params_(self) -> int:
        return int(self.rank) + (self.L_ - 1) + 1

    def _level_index(self, ratings: pd.Series) -> np.ndarray:
        r = ratings.astype(float).to_numpy()
        lv = np.asarray(self.levels_)
        idx = np.abs(r[:, None] - lv[None, :]).argmin(1)
        off = np.abs(lv[idx] - r) > 1e-6
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise DataError(
                f"rating {r[i]} is not one of the levels {self.levels_}",
                row=i,
                field="rating",
                expected=f"one of {self.levels_}",
            )
        return idx.astype(np.int64)

    def _items(self, frames: Sequence[pd.DataFrame]) -> tuple[np.ndarray, list[np.ndarray]]:
        keys = [f["prompt"].to_numpy(object) + _SEP + f["response"].to_numpy(object) for f in frames]
        allk = pd.Series(np.concatenate(keys) if keys else [], dtype=object)
        codes, uniq = pd.factorize(allk, sort=False)
        parts = [u.split(_SEP, 1) for u in uniq]
        X = self._featurizer().transform(
            [p[0] for p in parts], [p[1] for p in parts], show_progress=self.verbose
        )
        out, pos = [], 0
        for f in frames:
            out.append(codes[pos : pos + len(f)].astype(np.int64))
            pos += len(f)
        return X, out

    # ------------------------------------------------------------------ fit
    def fit(self, data: PreferenceData | pd.DataFrame, val_data: PreferenceData | pd.DataFrame | None = None):
        """MAP fit on ratings (or votes); returns self."""
        tab = pointwise_table(data)
        if val_data is not None:
            val = pointwise_table(val_data)
        elif self.validation_fraction and len(tab) >= 20:
            tab, val = split_judgments(tab, self.validation_fraction, seed=self.random_state)
        else:
            val = tab.iloc[:0]
        lv = (
            self.levels
            if self.levels is not None
            else sorted(pd.concat([tab, val])["rating"].astype(float).unique())
        )
        if len(lv) < 2:
            raise DataError(
                "pointwise judgments need at least two distinct rating levels",
                field="rating",
                expected="two or more levels",
            )
        self.levels_ = [float(x) for x in lv]
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
        self.fitted_ = True
        return self

    def _fit_once(self, X, tr, va, var_d, var_r, init) -> dict[str, Any]:
        K, L1, U = int(self.rank), self.L_ - 1, len(self.units_)
        gen = torch.Generator().manual_seed(int(self.random_state))
        torch.manual_seed(int(self.random_state))
        basis = LinearBasis(X.shape[1], K, False, gen)
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).double()
        basis = basis.double()
        W = torch.nn.Parameter(torch.randn(U, K, generator=gen, dtype=torch.float64) * 0.01)
        delta = torch.nn.Parameter(torch.zeros(U, L1, dtype=torch.float64))
        rho = torch.nn.Parameter(torch.zeros(U, dtype=torch.float64))
        # shared cut-points start at the empirical cumulative logits
        counts = np.bincount(tr[2], minlength=self.L_) + 1.0
        cum = np.cumsum(counts)[:-1] / counts.sum()
        t0 = np.log(cum / (1 - cum))
        raw0 = np.concatenate([t0[:1], np.log(np.expm1(np.maximum(np.diff(t0), 1e-3)))])
        theta = torch.nn.Parameter(torch.from_numpy(raw0.astype(np.float64)))
        if init is not None:
            with torch.no_grad():
                basis.mu.copy_(torch.from_numpy(init["mu"]))
                if K:
                    basis.B.copy_(torch.from_numpy(init["B"]))
                W.copy_(torch.from_numpy(init["W"]))
                delta.copy_(torch.from_numpy(init["delta"]))
                rho.copy_(torch.from_numpy(init["rho"]))
                theta.copy_(torch.from_numpy(init["theta_raw"]))
        params = [*basis.parameters(), W, theta]
        if self.personal_cuts:
            params.append(delta)
        if self.personal_scale:
            params.append(rho)
        vd = torch.from_numpy(np.asarray(var_d, np.float64))
        ti, tu, ty = (torch.from_numpy(np.array(a)) for a in tr)
        n = float(len(ti))

        def nll(i, u, y, pop: bool = False) -> torch.Tensor:
            P = basis(Xt)
            known = u >= 0
            uu = torch.where(known, u, torch.zeros_like(u))
            lat = P[i, 0]
            if K:
                lat = lat + torch.where(known, (P[i, 1:] * W[uu]).sum(1), torch.zeros_like(lat))
            sc = torch.where(known, torch.exp(rho[uu]), torch.ones_like(lat))
            dl = torch.where(known[:, None], delta[uu], torch.zeros_like(delta[uu]))
            return _ordinal_nll(sc * lat, _cuts(theta, dl), y)

        def objective() -> torch.Tensor:
            loss = nll(ti, tu, ty).sum()
            pen = basis.penalty(self.l2_mean, self.l2_basis) + 0.5 * (W**2).sum()
            pen = pen + 0.5 * (delta**2 / vd).sum() + 0.5 * (rho**2).sum() / var_r
            return (loss + pen) / n

        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=10, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        best, bad, prev = (float("inf"), None), 0, float("inf")
        rounds = max(1, int(self.max_iter) // 10)
        hist: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=rounds, desc="fitting OrdinalLowRank", unit="round")
        for _ in range(rounds):
            loss = float(opt.step(closure).detach())
            hist["train_loss"].append(loss)
            if va is not None:
                with torch.no_grad():
                    vl = float(nll(*(torch.from_numpy(np.array(a)) for a in va)).mean())
                hist["val_loss"].append(vl)
                if vl < best[0] - 1e-6:
                    best, bad = (vl, [p.detach().clone() for p in params]), 0
                else:
                    bad += 1
            if bar is not None:
                bar.update(1)
            if va is not None and bad >= self.patience:
                break
            if abs(prev - loss) < 1e-7 * max(1.0, abs(loss)):
                break
            prev = loss
        if bar is not None:
            bar.close()
        if best[1] is not None:
            with torch.no_grad():
                for p, b in zip(params, best[1]):
                    p.copy_(b)
        self.history_ = {**hist, "best_val_loss": best[0] if best[1] is not None else None}
        return {
            "mu": basis.mu.detach().numpy().copy(),
            "B": basis.B.detach().numpy().copy() if K else np.zeros((X.shape[1], 0)),
            "W": W.detach().numpy().copy(),
            "delta": delta.detach().numpy().copy(),
            "rho": rho.detach().numpy().copy(),
            "theta_raw": theta.detach().numpy().copy(),
        }

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

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            from personalign.errors import NotFittedError

            raise NotFittedError("OrdinalLowRank is not fitted; call fit(data) first")

    def _split(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        K, L1 = int(self.rank), self.L_ - 1
        return v[..., :K], v[..., K : K + L1], v[..., K + L1]

    def prior(self, user_row: dict | None = None) -> Posterior:
        """The population: ``w = 0, delta = 0, rho = 0`` with the shared prior variances."""
        self._check_fitted()
        return Posterior(np.zeros(self.n_person_params_), np.diag(self.prior_var_), 0)

    def posterior(self, user_id: str) -> Posterior:
        self._check_fitted()
        uid = str(user_id)
        if uid in self.added_:
            return self.added_[uid]
        j = self.user_units_.get(uid, -1)
        if j < 0:
            return self.prior()
        return Posterior(self.unit_params_[j].copy(), np.diag(self.prior_var_), 0)

    def add_user(self, user_id: str, posterior: Posterior) -> None:
        self._check_fitted()
        if posterior.dim != self.n_person_params_:
            raise ConfigError(f"posterior has {posterior.dim} dims, the model {self.n_person_params_}")
        self.added_[str(user_id)] = posterior

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

    def score(self, users: str | Sequence[str], prompts: str | Sequence[str], responses: Sequence[str] | str):
        """Personal latent utility ``s + g^T w_u`` (before the personal sensitivity and cut-points)."""
        self._check_fitted()
        responses = _as_list(responses)
        users = _as_list(users, len(responses))
        X = np.asarray(self._featurizer().transform(prompts, responses), np.float64)
        return self._latent(X, self._params_for(users))

    def _proba_arrays(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        _, dl, rho = self._split(V)
        eta = np.exp(rho) * self._latent(X, V)
        theta = _cuts(torch.from_numpy(self.theta_raw_), torch.from_numpy(dl)).numpy()
        cdf = 1.0 / (1.0 + np.exp(-(theta - eta[:, None])))
        cdf = np.concatenate([np.zeros((len(eta), 1)), cdf, np.ones((len(eta), 1))], 1)
        return np.clip(np.diff(cdf, axis=1), 0.0, 1.0)

    def predict_proba(self, table: pd.DataFrame) -> np.ndarray:
        """``(n, L)`` probabilities of each level for rows (user_id, prompt, response); column l is ``levels_[l]``."""
        self._check_fitted()
        t = pointwise_table(table.assign(rating=0.0) if "rating" not in table.columns else table)
        X = np.asarray(self._featurizer().transform(t["prompt"].tolist(), t["response"].tolist()), np.float64)
        return self._proba_arrays(X, self._params_for(t["user_id"].tolist()))

    def expected_rating(self, table: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(table) @ np.asarray(self.levels_)

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Most probable level per row (for binary labels: the label with P > 0.5)."""
        return np.asarray(self.levels_)[self.predict_proba(table).argmax(1)]

    def mae(self, table: pd.DataFrame, by_person: bool = False) -> float | pd.Series:
        """Mean absolute error of the expected rating (per person with ``by_person``)."""
        t = pointwise_table(table)
        err = np.abs(self.expected_rating(t) - t["rating"].astype(float).to_numpy())
        if by_person:
            return pd.Series(err).groupby(t["user_id"].to_numpy()).mean()
        return float(err.mean())

    # ------------------------------------------------------------------ new persons
    def adapt(
        self, examples: pd.DataFrame, prior: Posterior | None = None, user_row: dict | None = None
    ) -> Posterior:
        """MAP + Laplace covariance of a new person's ``[w, delta, rho]`` from k labels, the shared part frozen."""
        self._check_fitted()
        prior = prior if prior is not None else self.prior(user_row)
        if examples is None or len(examples) == 0:
            return Posterior(prior.mean.copy(), prior.cov.copy(), prior.n)
        t = pointwise_table(examples)
        X = torch.from_numpy(
            np.asarray(self._featurizer().transform(t["prompt"].tolist(), t["response"].tolist()), np.float64)
        )
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

    def update(self, posterior: Posterior, examples: pd.DataFrame) -> Posterior:
        return self.adapt(examples, prior=posterior)

    def collapsed(self) -> OrdinalLowRank:
        """A copy with every person at the population (no personal direction, cut-points or sensitivity)."""
        import copy

        self._check_fitted()
        m = copy.deepcopy(self)
        m.unit_params_ = np.zeros_like(m.unit_params_)
        m.added_ = {u: m.prior() for u in m.added_}
        return m

    # ------------------------------------------------------------------ artifacts
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """``model.safetensors`` + ``config.json`` (temporary folder renamed into place)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        out = Path(directory)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            t = {
                "mu": self.mu_,
                "B": self.B_,
                "theta_raw": self.theta_raw_,
                "unit_params": self.unit_params_,
                "prior_var": self.prior_var_,
            }
            save_file(
                {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in t.items()},
                str(tmp / "model.safetensors"),
            )
            cfg = {
                "format_version": FORMAT_VERSION,
                "model_class": type(self).__name__,
                "params": self._json_params(),
                "featurizer": self._featurizer().config(),
                "n_features": int(self.n_features_),
                "levels": self.levels_,
                "units": self.units_,
            }
            (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, featurizer: PairFeaturizer | None = None):
        from personalign.models.base import LinearGaussianModel

        return LinearGaussianModel.from_pretrained(directory, featurizer=featurizer)

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        try:
            self.levels_ = [float(x) for x in cfg["levels"]]
            self.units_ = list(cfg["units"])
            nf = int(cfg["n_features"])
        except KeyError as exc:
            raise ConfigError(f"{d / 'config.json'}: missing {exc.args[0]!r}") from exc
        self.L_ = len(self.levels_)
        self.user_units_ = {u: i for i, u in enumerate(self.units_)}
        shapes = {
            "mu": (nf,),
            "B": (nf, int(self.rank)),
            "theta_raw": (self.L_ - 1,),
            "unit_params": (len(self.units_), self.n_person_params_),
            "prior_var": (self.n_person_params_,),
        }
        for k, shp in shapes.items():
            if k not in t or tuple(t[k].shape) != shp:
                raise ConfigError(f"{d / 'model.safetensors'}: tensor {k!r} missing or not of shape {shp}")
        if self._featurizer().dim_out != nf:
            raise ConfigError(
                f"{d}: featurizer gives {self._featurizer().dim_out}-d features, model expects {nf}"
            )
        self.n_features_ = nf
        self.mu_, self.B_ = t["mu"], t["B"]
        self.theta_raw_, self.unit_params_, self.prior_var_ = t["theta_raw"], t["unit_params"], t["prior_var"]
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
        t = pointwise_table(data)
        t["key"] = t["prompt"] + _SEP + t["response"]
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
        t = pointwise_table(table.assign(rating=0.0) if "rating" not in table.columns else table)
        keys = (t["prompt"] + _SEP + t["response"]).to_numpy()
        users = t["user_id"].to_numpy()
        pred = self._crowd(users, keys) + self.offset_.reindex(users).fillna(0.0).to_numpy()
        return np.clip(pred, self.lo_, self.hi_)

    def mae(self, table: pd.DataFrame, by_person: bool = False) -> float | pd.Series:
        t = pointwise_table(table)
        err = np.abs(self.predict(t) - t["rating"].astype(float).to_numpy())
        return pd.Series(err).groupby(t["user_id"].to_numpy()).mean() if by_person else float(err.mean())
