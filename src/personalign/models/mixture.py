"""Latent-class mixture of Bradley-Terry rewards fitted by EM (the PAL / MaxMin-RLHF family).

Model: C classes with rewards ``r_c(x, y) = (mu + b_c)^T phi(x, y)``; person u belongs to one class,
``c_u ~ Categorical(pi)``, and all of u's comparisons follow ``P(y1 > y2) = sigmoid(r_c(y1) - r_c(y2))``.
In the shared linear-Gaussian layout this is ``r_u = s(phi) + g(phi)^T w_u`` with ``g = B^T phi`` (B = [b_1..b_C],
K = C) and ``w_u`` restricted to the one-hot vectors: the low-rank model with its prior replaced by a discrete one.
A person's belief is the vector of responsibilities ``rho_u = P(c_u = c | judgments)``; it is reported as a
:class:`Posterior` with ``mean = rho_u`` and ``cov = diag(rho_u) - rho_u rho_u^T`` (the covariance of the one-hot
class indicator), so ``score`` gives the posterior-mean reward ``mu + B rho_u`` and ``adapt``/``update`` are exact
Bayes updates of ``rho`` (no Laplace approximation is needed).

Fitting: EM. E-step: ``rho_uc ∝ pi_c prod_i sigmoid(+-z_ic)`` over the person's comparisons; M-step: ``pi = mean_u
rho_u`` and ``(mu, B)`` by L-BFGS on ``sum_i sum_c rho_{u(i)c} BCE(z_ic, y_i)`` + ``l2`` penalties; stopped on the
validation log loss (predictive ``sum_c rho_uc sigmoid(z_ic)``), best state kept. :meth:`MixtureBT.maxmin_score` gives
the egalitarian (MaxMin-RLHF) reward ``min_c r_c``.

Calibration (``likelihood_power="auto"``): EM's responsibilities trust a person's judgments as if the C class
rewards were the truth, which on held-out items they are not, so a person assigned to one class can be served
worse than by the population mixture. After EM the persons' responsibilities are tempered,
``rho_uc ∝ pi_c prod_i sigmoid(+-z_ic)^eta`` (a power posterior, as in safe Bayesian learning), with ``eta`` in
:data:`LIKELIHOOD_POWERS` chosen by the posterior predictive's log loss on the validation rows of the training
persons (the smallest within ``SCALE_TIE`` of the best). ``eta = 0`` is the collapsed model (everybody at ``pi``);
``adapt`` and ``update`` use the same ``eta``. A number fixes ``eta``; 1 is plain EM.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from personalign.errors import ConfigError
from personalign.features.pairs import PairFeaturizer
from personalign.models.estimator import as_list
from personalign.models.linear import LinearGaussianModel
from personalign.models.lowrank import MIN_CALIBRATION_ROWS, SCALE_TIE
from personalign.models.objectives import LinearBasis, TrainArrays
from personalign.models.posterior import Posterior
from personalign.models.training import TrainingConfig, data_parallel, fit_lbfgs, make_lbfgs, process_options

_EPS = 1e-12
# the tempering exponents of the persons' likelihood that ``likelihood_power="auto"`` compares on held-out rows
LIKELIHOOD_POWERS = (0.0, 0.0625, 0.125, 0.25, 0.5, 1.0)


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -z)


def _onehot_cov(r: np.ndarray) -> np.ndarray:
    """Covariance of a one-hot indicator with probabilities ``r`` (rows: ``(..., C) -> (..., C, C)``)."""
    r = np.asarray(r, float)
    return np.einsum("...i,ij->...ij", r, np.eye(r.shape[-1])) - r[..., :, None] * r[..., None, :]


class MixtureObjective:
    """The M-step's objective: ``sum_i wt_i sum_c rho_{u(i)c} BCE(z_ic, y_i)`` + the basis penalty.

    ``z_ic = r_c(chosen_i) - r_c(rejected_i)`` for every class c; ``rho`` (per unit, the population rows
    weighted by ``pi``) is set before each M-step by :meth:`set_responsibilities`.
    """

    def __init__(self, basis: LinearBasis, rows: TrainArrays, l2_mean: float, l2_basis: float) -> None:
        self.basis, self.l2_mean, self.l2_basis = basis, l2_mean, l2_basis
        self.X = torch.from_numpy(np.ascontiguousarray(rows.X, dtype=np.float32))
        self.ci, self.ri, self.unit = (torch.from_numpy(np.asarray(a)) for a in (rows.ci, rows.ri, rows.unit))
        self.y = torch.from_numpy(rows.y.astype(np.float32))
        self.wt = torch.from_numpy(rows.wt.astype(np.float32))
        self.weight = float(self.wt.sum())
        self.resp = torch.zeros((len(self.ci), basis.K))

    def set_responsibilities(self, R: np.ndarray, pi: np.ndarray) -> None:
        Rt = torch.from_numpy(np.vstack([R, pi[None, :]]).astype(np.float32))
        self.resp = Rt[torch.where(self.unit < 0, torch.full_like(self.unit, len(R)), self.unit)]

    def _data_term(self) -> torch.Tensor:
        P = self.basis(self.X)
        ci, ri = self.ci, self.ri
        z = (P[ci, :1] - P[ri, :1]) + (P[ci, 1:] - P[ri, 1:])  # (n, C)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            z, self.y[:, None].expand_as(z), reduction="none"
        )
        return ((bce * self.resp).sum(1) * self.wt).sum()

    def loss_backward(self, total: float, share: float = 1.0) -> torch.Tensor:
        loss = (self._data_term() + self.basis.penalty(self.l2_mean, self.l2_basis) * share) / total
        loss.backward()
        return loss.detach()

    @torch.no_grad()
    def loss(self) -> float:
        return float(self._data_term())


# EM counts its own rounds (em_iters) and M-step iterations (m_step_iter); patience counts EM rounds
MIXTURE_TRAINING = TrainingConfig(patience=4, min_rounds=0, history_size=10, grad_tol=1e-7, change_tol=1e-9)


class MixtureBT(LinearGaussianModel):
    """C latent classes of Bradley-Terry rewards, ``r_c = (mu + b_c)^T phi``, fitted by EM (see module docstring).

    ``n_classes`` (``rank`` for :func:`make_model`), ``em_iters`` EM rounds (each M-step runs ``m_step_iter``
    L-BFGS iterations through :func:`~personalign.models.training.fit_lbfgs`, continuing one L-BFGS memory),
    ``n_init`` random restarts (best validation loss wins); ``training.patience`` EM rounds without a better
    validation loss stop EM. ``likelihood_power``: "auto" or a number in [0, 1] (see the module docstring);
    fitted ``likelihood_power_`` and ``likelihood_power_losses_``.
    """

    name = "mixture"
    rank_param = "n_classes"
    store_unit_covs = True

    def __init__(
        self,
        n_classes: int = 4,
        featurizer: PairFeaturizer | None = None,
        *,
        em_iters: int = 30,
        m_step_iter: int = 10,
        n_init: int = 1,
        likelihood_power: float | str = "auto",
        l2_mean: float = 1e-3,
        l2_basis: float = 1e-2,
        random_state: int = 0,
        training: TrainingConfig = MIXTURE_TRAINING,
    ) -> None:
        super().__init__(
            featurizer, l2_mean=l2_mean, l2_basis=l2_basis, random_state=random_state, training=training
        )
        self.n_classes = n_classes
        self.em_iters = em_iters
        self.m_step_iter = m_step_iter
        self.n_init = n_init
        self.likelihood_power = likelihood_power

    # ------------------------------------------------------------------ fit (EM)
    def fit_arrays(self, train: TrainArrays, val: TrainArrays | None = None) -> MixtureBT:
        """EM on array-level data (``train.unit`` indexes ``self.units_``; -1 = population rows)."""
        if not hasattr(self, "units_") or self.units_ is None:
            n_units = int(train.unit.max()) + 1 if len(train.unit) else 0
            self.units_ = [str(i) for i in range(n_units)]
            self.user_units_ = {u: i for i, u in enumerate(self.units_)}
        d = train.X.shape[1]
        best: tuple[float, Any] = (float("inf"), None)
        histories = []
        for restart in range(max(1, self.n_init)):
            state, hist = self._em_once(train, val, int(self.random_state) + 1000 * restart)
            histories.append(hist)
            score = hist["best_val_loss"] if hist["best_val_loss"] is not None else hist["train_loss"][-1]
            if score < best[0]:
                best = (score, state)
        mu, B, pi, R = best[1]
        self.n_features_ = d
        self.mu_, self.B_ = mu, B
        self.prior_mean_ = pi
        self.prior_cov_ = _onehot_cov(pi)
        L = self._unit_loglik(train, mu, B, len(self.units_))
        self.likelihood_power_ = self._choose_power(L, val, mu, B, pi)
        R = _tempered(L, pi, self.likelihood_power_)
        self.unit_means_ = R
        self.unit_covs_ = _onehot_cov(R)
        self.added_: dict[str, Posterior] = {}
        self.history_ = {
            **histories[int(np.argmin([h["score"] for h in histories]))],
            "restarts": len(histories),
        }
        self.fitted_ = True
        return self

    def _em_once(
        self, train: TrainArrays, val: TrainArrays | None, seed: int
    ) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
        """One EM run from a random soft start: M-step by L-BFGS, exact E-step, best validation state kept."""
        d, C, U = train.X.shape[1], int(self.n_classes), len(self.units_)
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        basis = LinearBasis(d, C, False, gen, init_scale=0.1)
        par = data_parallel()
        objective = MixtureObjective(basis, train.shard(par), self.l2_mean, self.l2_basis)
        options = process_options(self.training_config())
        m_step = options.replace(max_iter=self.m_step_iter, eval_every=self.m_step_iter, verbose=False)
        opt = make_lbfgs(objective.basis.parameters(), m_step)
        # random soft start: persons lean to one class each, so the first M-step already separates classes
        rng = np.random.default_rng(seed)
        R = rng.dirichlet(np.full(C, 0.5), size=U)
        pi = np.full(C, 1.0 / C)
        hist: dict[str, Any] = {"train_loss": [], "val_loss": [], "stopped_early": False}
        best: tuple[float, Any] = (float("inf"), None)
        bad = 0
        bar = _progress(options.verbose, self.em_iters)
        for _ in range(max(1, self.em_iters)):
            objective.set_responsibilities(R, pi)  # M-step: class rewards given responsibilities
            steps = fit_lbfgs(
                objective, list(basis.parameters()), None, m_step, par.all_reduce, optimizer=opt
            )
            loss = steps["train_loss"][-1]
            hist["train_loss"].append(loss)
            mu = basis.mu.detach().double().numpy().copy()
            B = basis.B.detach().double().numpy().copy()
            pi_new, R = self._responsibilities(train, mu, B, pi, U)  # E-step
            pi = np.clip(pi_new, 1e-6, None)
            pi = pi / pi.sum()
            vl = self._val_loss(val, mu, B, pi, R) if val is not None and len(val) else None
            if vl is not None:
                hist["val_loss"].append(vl)
            crit = vl if vl is not None else loss
            if crit < best[0] - 1e-6:
                best, bad = (crit, (mu, B, pi.copy(), R.copy())), 0
            else:
                bad += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", val=f"{vl:.4f}" if vl is not None else "-")
            if bad >= options.patience:
                hist["stopped_early"] = True
                break
        if bar is not None:
            bar.close()
        hist["best_val_loss"] = best[0] if val is not None and len(val) else None
        hist["score"] = best[0]
        hist["world_size"] = steps["world_size"]
        return best[1], hist

    @staticmethod
    def _class_margins(
        X: np.ndarray, ci: np.ndarray, ri: np.ndarray, mu: np.ndarray, B: np.ndarray
    ) -> np.ndarray:
        S, G = X @ mu, X @ B
        return (S[ci] - S[ri])[:, None] + (G[ci] - G[ri])

    def _unit_loglik(self, t: TrainArrays, mu: np.ndarray, B: np.ndarray, U: int) -> np.ndarray:
        """``(U, C)``: each person's log-likelihood of their judgments under each class."""
        z = self._class_margins(np.asarray(t.X, np.float64), t.ci, t.ri, mu, B)
        y, wt = t.y[:, None].astype(float), t.wt[:, None].astype(float)
        ll = wt * (y * _log_sigmoid(z) + (1 - y) * _log_sigmoid(-z))
        keep = t.unit >= 0
        L = np.zeros((U, z.shape[1]))
        np.add.at(L, t.unit[keep], ll[keep])
        return L

    def _responsibilities(
        self, t: TrainArrays, mu: np.ndarray, B: np.ndarray, pi: np.ndarray, U: int
    ) -> tuple[np.ndarray, np.ndarray]:
        R = _tempered(self._unit_loglik(t, mu, B, U), pi, 1.0)
        return R.mean(0) if U else pi, R

    def _choose_power(
        self, L: np.ndarray, val: TrainArrays | None, mu: np.ndarray, B: np.ndarray, pi: np.ndarray
    ) -> float:
        """The likelihood power in force (see the module docstring); records the held-out losses compared."""
        self.likelihood_power_losses_: dict[str, float] = {}
        if self.likelihood_power != "auto":
            return _checked_power(self.likelihood_power)
        rows = val.subset(val.unit >= 0) if val is not None else None
        if rows is None or len(rows) < MIN_CALIBRATION_ROWS:
            return 1.0  # nothing held out to temper on: plain EM
        losses = {eta: self._val_loss(rows, mu, B, pi, _tempered(L, pi, eta)) for eta in LIKELIHOOD_POWERS}
        self.likelihood_power_losses_ = {str(k): v for k, v in losses.items()}
        best = min(losses.values())
        # the weakest trust in a person's judgments within a hair of the best
        return min(eta for eta, v in losses.items() if v <= best + SCALE_TIE)

    def _val_loss(
        self, v: TrainArrays, mu: np.ndarray, B: np.ndarray, pi: np.ndarray, R: np.ndarray
    ) -> float:
        z = self._class_margins(np.asarray(v.X, np.float64), v.ci, v.ri, mu, B)
        resp = np.vstack([R, pi[None, :]])[np.where(v.unit < 0, len(R), v.unit)]
        p = np.clip((resp / (1 + np.exp(-z))).sum(1), 1e-7, 1 - 1e-7)  # posterior predictive
        y, wt = v.y.astype(float), v.wt.astype(float)
        return float(-(wt * (y * np.log(p) + (1 - y) * np.log1p(-p))).sum() / wt.sum())

    # ------------------------------------------------------------------ persons
    def adapt_arrays(
        self, D: np.ndarray, a: np.ndarray, y: np.ndarray, wt: np.ndarray, prior: Posterior
    ) -> Posterior:
        """Exact Bayes update of the class responsibilities (``D[:, c]`` is class c's margin minus the shared one)."""
        if len(a) == 0:
            return Posterior(prior.mean.copy(), prior.cov.copy(), prior.n)
        z = a[:, None] + D
        ll = (wt[:, None] * (y[:, None] * _log_sigmoid(z) + (1 - y[:, None]) * _log_sigmoid(-z))).sum(0)
        L = np.log(np.maximum(prior.mean, _EPS)) + getattr(self, "likelihood_power_", 1.0) * ll
        r = np.exp(L - L.max())
        r /= r.sum()
        return Posterior(r, _onehot_cov(r), prior.n + len(a))

    def query_scores(self, posterior: Posterior, D: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Mutual information between a pair's answer and the person's class: ``H(E_c p_c) - E_c H(p_c)``."""
        r = posterior.mean
        p = 1.0 / (1.0 + np.exp(-(a[:, None] + D)))

        def h(q: np.ndarray) -> np.ndarray:
            q = np.clip(q, 1e-12, 1 - 1e-12)
            return -(q * np.log(q) + (1 - q) * np.log1p(-q))

        return h(p @ r) - h(p) @ r

    def predict_proba(self, comparisons: pd.DataFrame, *, strict: bool = False) -> np.ndarray:
        """Posterior-predictive P(chosen > rejected) = ``sum_c rho_uc sigmoid(r_c(chosen) - r_c(rejected))``."""
        users, prompts, chosen, rejected = self._pair_rows(comparisons, strict)
        s1, g1 = self.basis(prompts, chosen)
        s2, g2 = self.basis(prompts, rejected)
        z = (s1 - s2)[:, None] + (g1 - g2)
        return (self._weights(users) / (1.0 + np.exp(-z))).sum(1)

    def class_rewards(self, prompts: str | list[str], responses: list[str] | str) -> np.ndarray:
        """``(n, C)`` rewards of every class."""
        s, g = self.basis(prompts, as_list(responses))
        return s[:, None] + g

    def maxmin_score(self, prompts: str | list[str], responses: list[str] | str) -> np.ndarray:
        """The egalitarian reward of MaxMin-RLHF: the worst class's reward ``min_c r_c(x, y)``."""
        return self.class_rewards(prompts, responses).min(1)

    def _artifact_config(self) -> dict[str, Any]:
        return {**super()._artifact_config(), "likelihood_power_": getattr(self, "likelihood_power_", 1.0)}

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Any) -> None:
        super()._load_tensors(t, cfg, d)
        self.likelihood_power_ = float(cfg.get("likelihood_power_", 1.0))  # artifacts before it: plain EM

    def assignments(self) -> pd.Series:
        """Most likely class of every trained person."""
        self._check_fitted()
        rows = {u: int(np.argmax(self.unit_means_[j])) for u, j in self.user_units_.items()}
        return pd.Series(rows, name="class")


def _tempered(L: np.ndarray, pi: np.ndarray, eta: float) -> np.ndarray:
    """Responsibilities ``rho_uc ∝ pi_c exp(eta L_uc)`` (``eta = 1``: Bayes; 0: the class prior)."""
    S = np.log(np.maximum(pi, _EPS))[None, :] + eta * L
    S -= S.max(1, keepdims=True)
    R = np.exp(S)
    return R / R.sum(1, keepdims=True)


def _checked_power(v: Any) -> float:
    try:
        eta = float(v)
    except (TypeError, ValueError):
        eta = float("nan")
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"likelihood_power must be 'auto' or a number in [0, 1], got {v!r}")
    return eta


def _progress(verbose: bool, total: int) -> Any:
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fitting MixtureBT (EM)", unit="round")
