"""The shared model layer: every reward model is a linear-Gaussian personal layer over pair features.

Model: ``r_u(x, y) = s(phi) + g(phi)^T w_u`` with ``phi = phi(x, y)`` from a :class:`PairFeaturizer`,
``s(phi) = mu^T phi`` the population part and ``g(phi) = B^T phi`` a K-dim personal basis, so the linear case is
``r_u = (mu + B w_u)^T phi``; a comparison is Bradley-Terry: ``P(y1 > y2) = sigmoid(r_u(x, y1) - r_u(x, y2))``.
Person weights have a Gaussian prior ``w_u ~ N(m, Sigma)``; with the shared part frozen, a person's posterior is
a Laplace approximation in K dimensions (Newton), which serves ``adapt``, ``update`` and ``suggest_query``.

Extension points (how the other model variants slot in):

- **Basis** (:meth:`LinearGaussianModel.project`): maps features to ``(s, g)``; the default is linear
  (``mu``, ``B`` arrays). An MLP basis overrides ``_make_basis_module`` (a ``torch.nn.Module`` mapping
  ``(n, d) -> (n, 1 + K)``, trained by :func:`train_linear_gaussian`) and ``project``; everything downstream
  (adapt, update, queries, bounds) only sees ``(s, g)``.
- **Prior mean from side information** (:meth:`LinearGaussianModel.prior`): override ``_prior_mean(user_row)``
  (e.g. a linear map from demographic columns fitted to the trained persons' posterior means) - cold start
  then uses ``prior(user_row)`` and ``adapt(..., user_row=...)`` starts from it.
- **Likelihood** (:meth:`LinearGaussianModel._nll_torch` / ``_nll_terms``): Bradley-Terry on comparisons by default
  (ties as half a win); an ordinal likelihood for ratings replaces both and the ``_arrays`` preparation.
- **Units**: the per-person parameter rows are "units" (``unit_of_user``): persons for LowRankBT/IndependentBT,
  groups for GroupBT, none for AggregatedBT; a context-dependent variant maps (person, prompt domain) to units
  or adds a domain offset to ``g``; a mixture fixes ``w_u`` to one of C class vectors and fits by EM.

Artifacts: ``save_pretrained(dir)`` writes ``model.safetensors`` and ``config.json`` (class, hyper-parameters,
featurizer, dimensions, format version) through a temporary folder renamed into place; ``from_pretrained``
raises :class:`ConfigError` on any mismatch.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from personalign.data.core import POPULATION_USER, PreferenceData
from personalign.data.splits import split_judgments
from personalign.errors import ConfigError, DataError, NotFittedError
from personalign.features.pairs import PairFeaturizer

FORMAT_VERSION = 1
# joins prompt and text into one item key (numpy strips a trailing NUL, so not "\x00")
_SEP = "\x1f"
_REGISTRY: dict[str, type[PersonalModel]] = {}


# --------------------------------------------------------------------------------------------- posterior
@dataclass
class Posterior:
    """Gaussian belief over one person's weights: ``w ~ N(mean, cov)``, after ``n`` judgments."""

    mean: np.ndarray
    cov: np.ndarray
    n: int = 0

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64).ravel()
        k = self.mean.shape[0]
        self.cov = np.asarray(self.cov, dtype=np.float64).reshape(k, k)
        self.n = int(self.n)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes to store it as float32 (mean plus the upper triangle of the covariance) plus the count."""
        k = self.dim
        return 4 * (k + k * (k + 1) // 2) + 4

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist(), "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Posterior:
        return cls(np.asarray(d["mean"], float), np.asarray(d["cov"], float), int(d.get("n", 0)))

    def entropy(self) -> float:
        """Differential entropy (nats): ``0.5 * logdet(2 pi e cov)``."""
        if self.dim == 0:
            return 0.0
        sign, logdet = np.linalg.slogdet(self.cov)
        return float(0.5 * (logdet + self.dim * np.log(2 * np.pi * np.e)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def laplace_newton(
    D: np.ndarray,
    a: np.ndarray,
    y: np.ndarray,
    wt: np.ndarray,
    m: np.ndarray,
    P: np.ndarray,
    w0: np.ndarray | None = None,
    max_iter: int = 25,
    tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray]:
    """MAP and Laplace covariance of ``w`` for Bradley-Terry judgments with a Gaussian prior, by Newton's method.

    ``z_i = a_i + D_i^T w``, ``y_i`` in [0, 1] (1 = first option won, 0.5 = tie), weights ``wt``;
    prior ``N(m, P^{-1})``. The objective is strictly convex, so Newton converges in a few steps.
    Returns ``(mean, cov)`` with ``cov = (P + D^T diag(wt p (1 - p)) D)^{-1}`` at the mode.
    """
    w = m.copy() if w0 is None else np.array(w0, dtype=np.float64)
    H = P
    for _ in range(max_iter):
        p = _sigmoid(a + D @ w)
        g = P @ (w - m) + D.T @ (wt * (p - y))
        s = wt * p * (1.0 - p)
        H = P + (D.T * s) @ D
        step = np.linalg.solve(H, g)
        w = w - step
        if np.max(np.abs(step)) < tol:
            break
    p = _sigmoid(a + D @ w)
    H = P + (D.T * (wt * p * (1.0 - p))) @ D
    cov = np.linalg.inv(H)
    return w, 0.5 * (cov + cov.T)


def _unit_blocks(
    unit: torch.Tensor, n_units: int, block_rows: int = 65536
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Group rows by unit into padded blocks: ``[(units_b, rows_b)]`` with ``rows_b`` of shape ``(len(units_b), L_b)``.

    Units are bucketed by their row count rounded up to a power of two (padding at most doubles the rows), and
    each bucket is cut into blocks of about ``block_rows`` padded rows, so that every temporary stays a few MB
    (large temporaries are mmap-ed and page-faulted afresh on every call). Padded slots hold ``len(unit)``.
    """
    n = len(unit)
    counts = torch.bincount(unit, minlength=n_units)
    order = torch.argsort(unit, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.empty(n, dtype=torch.long)
    pos[order] = torch.arange(n) - starts[unit[order]]
    cap = torch.where(counts > 0, 2 ** torch.ceil(torch.log2(counts.clamp_min(1).double())).long(), 0)
    out = []
    for c in torch.unique(cap[cap > 0]).tolist():
        units_c = torch.nonzero(cap == c).squeeze(1)
        local = torch.full((n_units,), -1, dtype=torch.long)
        local[units_c] = torch.arange(len(units_c))
        rows = torch.nonzero(local[unit] >= 0).squeeze(1)
        idx = torch.full((len(units_c), int(c)), n, dtype=torch.long)
        idx[local[unit[rows]], pos[rows]] = rows
        per = max(1, block_rows // int(c))
        out.extend((units_c[s : s + per], idx[s : s + per]) for s in range(0, len(units_c), per))
    return out


class BatchedLaplace:
    """Laplace posteriors of many units' weights under one Gaussian prior, for fixed judgments.

    ``z_i = a_i + D_i^T w_{unit_i}``; the row layout (units padded into blocks of similar counts) is built once,
    so an EM loop that re-solves under a changing prior pays for it once. Each unit's Hessian
    ``P + D_u^T diag(wt p (1 - p)) D_u`` is one batched matrix product, which avoids materializing an
    ``n x K x K`` tensor of outer products (2 GB at 1M comparisons and K = 16). Rows with ``unit < 0`` are ignored.
    """

    def __init__(
        self,
        D: torch.Tensor,
        a: torch.Tensor,
        y: torch.Tensor,
        wt: torch.Tensor,
        unit: torch.Tensor,
        n_units: int,
    ) -> None:
        keep = unit >= 0
        D, a, y, wt, unit = D[keep], a[keep], y[keep], wt[keep], unit[keep]
        self.n_units = n_units
        self.K = D.shape[1]

        # one extra zero row that padded slots point at: weight 0, so it adds nothing to gradients or Hessians
        D, a, y, wt = (torch.cat([t, t.new_zeros((1, *t.shape[1:]))], 0) for t in (D, a, y, wt))
        self.blocks = [
            (units_b, D[idx], a[idx], y[idx], wt[idx]) for units_b, idx in _unit_blocks(unit, n_units)
        ]

    def grad_hess(
        self, W: torch.Tensor, m: torch.Tensor, P: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient ``(U, K)`` and Hessian ``(U, K, K)`` of every unit's negative log posterior at ``W``."""
        G = (W - m) @ P.T
        H = P.unsqueeze(0).repeat(self.n_units, 1, 1)
        for units_b, Db, ab, yb, wb in self.blocks:
            p = torch.sigmoid(ab + torch.bmm(Db, W[units_b].unsqueeze(-1)).squeeze(-1))
            Dt = Db.transpose(1, 2)
            G[units_b] += torch.bmm(Dt, (wb * (p - yb)).unsqueeze(-1)).squeeze(-1)
            H[units_b] += torch.bmm(Dt * (wb * p * (1 - p)).unsqueeze(1), Db)
        return G, H

    def solve(
        self,
        m: torch.Tensor,
        P: torch.Tensor,
        w0: torch.Tensor | None = None,
        iters: int = 8,
        tol: float = 1e-7,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Newton's method from ``w0`` (default ``m``): posterior means ``(U, K)`` and covariances ``(U, K, K)``."""
        W = m.expand(self.n_units, self.K).clone() if w0 is None else w0.clone()
        for _ in range(iters):
            G, H = self.grad_hess(W, m, P)
            step = torch.linalg.solve(_ridged(H), G.unsqueeze(-1)).squeeze(-1)
            step = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
            W = W - step
            if step.abs().max() < tol:
                break
        _, H = self.grad_hess(W, m, P)
        C = torch.linalg.inv(_ridged(H))
        return W, 0.5 * (C + C.transpose(1, 2))


def _ridged(H: torch.Tensor) -> torch.Tensor:
    # a tiny relative ridge keeps H invertible when the prior is nearly flat in a direction no judgment informs
    scale = H.diagonal(dim1=1, dim2=2).abs().mean(1).clamp_min(1.0)
    return H + 1e-9 * scale[:, None, None] * torch.eye(H.shape[-1], dtype=H.dtype).unsqueeze(0)


def batched_laplace(
    D: torch.Tensor,
    a: torch.Tensor,
    y: torch.Tensor,
    wt: torch.Tensor,
    unit: torch.Tensor,
    n_units: int,
    m: torch.Tensor,
    P: torch.Tensor,
    w0: torch.Tensor | None = None,
    iters: int = 8,
    tol: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`laplace_newton` for many units at once (float64 torch): means ``(U, K)`` and covariances ``(U, K, K)``.

    Comparisons with ``unit < 0`` are ignored (see :class:`BatchedLaplace`).
    """
    return BatchedLaplace(D, a, y, wt, unit, n_units).solve(m, P, w0=w0, iters=iters, tol=tol)


def well_conditioned_cov(S: np.ndarray | torch.Tensor, floor: float = 1e-4, ceil: float = 1e4):
    """A symmetric covariance with eigenvalues clipped into ``[floor, ceil]`` (finite, invertible)."""
    is_t = isinstance(S, torch.Tensor)
    A = S.detach().cpu().numpy() if is_t else np.asarray(S, dtype=np.float64)
    A = np.nan_to_num(0.5 * (A + A.T), nan=0.0, posinf=ceil, neginf=0.0)
    vals, vecs = np.linalg.eigh(A)
    A = (vecs * np.clip(vals, floor, ceil)) @ vecs.T
    A = 0.5 * (A + A.T)
    return torch.from_numpy(A) if is_t else A


# ------------------------------------------------------------------------------------------- training
@contextlib.contextmanager
def torch_threads() -> Iterator[None]:
    """Run torch on ``$PERSONALIGN_THREADS`` threads (default 1), restoring the caller's setting after.

    Small gathers and reductions lose badly to OpenMP overhead (x100 measured on a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(os.environ.get("PERSONALIGN_THREADS", "1"))))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class TrainArrays:
    """Comparisons as indices into a table of unique items (features are projected once per item, not per pair)."""

    X: np.ndarray  # (n_items, d) float32 pair features of unique (prompt, response) items
    ci: np.ndarray  # (n,) int64 chosen item rows
    ri: np.ndarray  # (n,) int64 rejected item rows
    unit: np.ndarray  # (n,) int64 unit rows, -1 = population (prior mean)
    y: np.ndarray  # (n,) float32, 1 = chosen won, 0.5 = tie
    wt: np.ndarray  # (n,) float32 weights

    def subset(self, mask: np.ndarray) -> TrainArrays:
        return TrainArrays(self.X, self.ci[mask], self.ri[mask], self.unit[mask], self.y[mask], self.wt[mask])

    def __len__(self) -> int:
        return len(self.ci)


class LinearBasis(torch.nn.Module):
    """``(n, d) -> (n, 1 + K)``: column 0 is ``mu^T phi``, the rest ``B^T phi`` (``B = I`` when ``identity``)."""

    def __init__(
        self, d: int, K: int, identity: bool, generator: torch.Generator, init_scale: float = 0.1
    ) -> None:
        super().__init__()
        self.identity = identity
        self.mu = torch.nn.Parameter(torch.zeros(d, dtype=torch.float32))
        if not identity and K > 0:
            self.B = torch.nn.Parameter(torch.randn(d, K, generator=generator) * init_scale)
        else:
            self.register_parameter("B", None)
        self.K = d if identity else K

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        s = (X @ self.mu)[:, None]
        if self.identity:
            return torch.cat([s, X], 1)
        if self.B is None:
            return s
        return torch.cat([s, X @ self.B], 1)

    def penalty(self, l2_mean: float, l2_basis: float) -> torch.Tensor:
        pen = 0.5 * l2_mean * (self.mu**2).sum()
        if self.B is not None:
            pen = pen + 0.5 * l2_basis * (self.B**2).sum()
        return pen


def train_linear_gaussian(
    basis: torch.nn.Module,
    W: torch.Tensor | None,
    train: TrainArrays,
    val: TrainArrays | None,
    *,
    prior_precision: float = 1.0,
    l2_mean: float = 30.0,
    l2_basis: float = 30.0,
    max_iter: int = 300,
    eval_every: int = 10,
    patience: int = 3,
    min_rounds: int = 0,
    tol: float = 1e-6,
    chunk_rows: int = 65536,
    verbose: bool = False,
    desc: str = "training",
) -> dict[str, Any]:
    """Full-batch L-BFGS on the MAP objective, early-stopped on validation log loss (best state restored).

    Objective / N: ``sum_i wt_i * BCE(z_i, y_i) + prior_precision/2 * ||W||^2 + penalty(basis)``, with
    ``z_i = s(ci) - s(ri) + (g(ci) - g(ri))^T w_unit(i)`` and ``(s, g) = basis(X)`` evaluated once per step on
    the unique items only. Rows with unit -1 use ``w = 0`` (the population). Returns a history dict.

    Every round is ``eval_every`` L-BFGS iterations followed by one validation loss; training stops after
    ``patience`` rounds without improvement, but not before ``min_rounds`` rounds: with many persons the
    validation loss can first rise while the personal weights fit a still-random basis and fall once the basis
    aligns (measured at 1M comparisons: up for two rounds, then down to well below the start).
    """
    with torch_threads():
        return _train_linear_gaussian(
            basis,
            W,
            train,
            val,
            prior_precision=prior_precision,
            l2_mean=l2_mean,
            l2_basis=l2_basis,
            max_iter=max_iter,
            eval_every=eval_every,
            patience=patience,
            min_rounds=min_rounds,
            tol=tol,
            chunk_rows=chunk_rows,
            verbose=verbose,
            desc=desc,
        )


def _train_linear_gaussian(
    basis: torch.nn.Module,
    W: torch.Tensor | None,
    train: TrainArrays,
    val: TrainArrays | None,
    *,
    prior_precision: float,
    l2_mean: float,
    l2_basis: float,
    max_iter: int,
    eval_every: int,
    patience: int,
    min_rounds: int,
    tol: float,
    chunk_rows: int,
    verbose: bool,
    desc: str,
) -> dict[str, Any]:
    X = torch.from_numpy(np.ascontiguousarray(train.X, dtype=np.float32))

    def tensors(t: TrainArrays) -> tuple[torch.Tensor, ...]:
        return (
            torch.from_numpy(t.ci),
            torch.from_numpy(t.ri),
            torch.from_numpy(t.unit),
            torch.from_numpy(t.y.astype(np.float32)),
            torch.from_numpy(t.wt.astype(np.float32)),
        )

    tr = tensors(train)
    va = tensors(val) if val is not None and len(val) else None
    n_units = 0 if W is None else W.shape[0]
    wsum = float(tr[4].sum())
    params = list(basis.parameters()) + ([W] if W is not None else [])

    def margins(P: torch.Tensor, Wx: torch.Tensor | None, ci, ri, unit) -> torch.Tensor:
        Dp = P.index_select(0, ci) - P.index_select(0, ri)
        z = Dp[:, 0]
        if Wx is not None and P.shape[1] > 1:
            u = torch.where(unit < 0, torch.full_like(unit, n_units), unit)
            z = z + (Dp[:, 1:] * Wx.index_select(0, u)).sum(1)
        return z

    def with_population(W: torch.Tensor | None) -> torch.Tensor | None:
        # row n_units = the population (w = 0), used by rows with unit -1
        return None if W is None else torch.cat([W, torch.zeros(1, W.shape[1])], 0)

    # Rows are processed in chunks, the gradient accumulated chunk by chunk: every temporary stays a few MB
    # (temporaries of hundreds of MB are mmap-ed and page-faulted afresh at every step, which at 1M comparisons
    # cost more system time than the arithmetic).
    chunks = [slice(s, s + chunk_rows) for s in range(0, len(tr[0]), chunk_rows)]

    def objective_backward() -> torch.Tensor:
        P = basis(X)
        Pd = P.detach().requires_grad_(True)
        nll = torch.zeros(())
        for sl in chunks:
            z = margins(Pd, with_population(W), tr[0][sl], tr[1][sl], tr[2][sl])
            part = torch.nn.functional.binary_cross_entropy_with_logits(
                z, tr[3][sl], weight=tr[4][sl], reduction="sum"
            )
            (part / wsum).backward()
            nll = nll + part.detach()
        pen = basis.penalty(l2_mean, l2_basis) if hasattr(basis, "penalty") else torch.zeros(())
        if W is not None:
            pen = pen + 0.5 * prior_precision * (W**2).sum()
        if isinstance(pen, torch.Tensor) and pen.requires_grad:
            (pen / wsum).backward()
        P.backward(Pd.grad)
        return (nll + pen.detach()) / wsum

    @torch.no_grad()
    def val_loss() -> float:
        P = basis(X)
        Wx = with_population(W)
        total = 0.0
        for s in range(0, len(va[0]), chunk_rows):
            sl = slice(s, s + chunk_rows)
            z = margins(P, Wx, va[0][sl], va[1][sl], va[2][sl])
            total += float(
                torch.nn.functional.binary_cross_entropy_with_logits(
                    z, va[3][sl], weight=va[4][sl], reduction="sum"
                )
            )
        return total / float(va[4].sum())

    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=eval_every,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        return objective_backward()

    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "stopped_early": False}
    best = (float("inf"), None)
    bad = 0
    prev = float("inf")
    rounds = max(1, max_iter // eval_every)
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=rounds, desc=desc, unit="round")
    for r in range(rounds):
        loss = float(opt.step(closure).detach())
        history["train_loss"].append(loss)
        if va is not None:
            vl = val_loss()
            history["val_loss"].append(vl)
            if vl < best[0] - 1e-6:
                best = (vl, [p.detach().clone() for p in params])
                bad = 0
            else:
                bad += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.4f}", val=f"{history['val_loss'][-1]:.4f}" if va is not None else "-"
            )
        if va is not None and bad >= patience and r + 1 >= min_rounds:
            history["stopped_early"] = True
            break
        if abs(prev - loss) < tol * max(1.0, abs(loss)):
            break
        prev = loss
    if bar is not None:
        bar.close()
    if best[1] is not None:
        with torch.no_grad():
            for p, b in zip(params, best[1], strict=False):
                p.copy_(b)
    history["best_val_loss"] = best[0] if best[1] is not None else None
    return history


# ------------------------------------------------------------------------------------------ base class
def split_by_items(comps: pd.DataFrame, frac: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the comparisons that touch a random ``frac`` of the prompts (or, without prompts, of the items).

    Early stopping on such a split measures what matters for new items: a personal part that memorizes the
    training items stops improving it, while a random split of judgments keeps rewarding that memorization.
    """
    rng = np.random.default_rng(seed)
    if (comps["prompt"] != "").any():
        units = np.array(sorted(comps["prompt"].unique()))
        held = set(rng.choice(units, size=max(1, int(round(frac * len(units)))), replace=False))
        mask = comps["prompt"].isin(held).to_numpy()
    else:
        units = np.array(sorted(set(comps["chosen_id"]) | set(comps["rejected_id"])))
        # an item is held out with probability p so that about ``frac`` of the pairs touch one: 1-(1-p)^2 = frac
        p = 1.0 - np.sqrt(1.0 - frac)
        held = set(units[rng.random(len(units)) < p])
        mask = (comps["chosen_id"].isin(held) | comps["rejected_id"].isin(held)).to_numpy()
    if mask.all() or not mask.any():
        return split_judgments(comps, frac, seed=seed)
    return comps[~mask].reset_index(drop=True), comps[mask].reset_index(drop=True)


def _as_list(x: str | Sequence[str], n: int | None = None) -> list[str]:
    if isinstance(x, str):
        return [x] * (n if n is not None else 1)
    return [str(v) for v in x]


class PersonalModel:
    """Estimator contract shared by every model (scikit-learn style; see the module docstring)."""

    name: ClassVar[str] = "base"

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _REGISTRY[cls.__name__] = cls

    # -- params
    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k not in ("self", "featurizer", "kwargs")}

    def _json_params(self) -> dict[str, Any]:
        out = {}
        for k, v in self.get_params().items():
            if isinstance(v, np.generic):
                v = v.item()
            try:
                json.dumps(v)
            except TypeError:
                continue  # callables etc. are not part of the artifact
            out[k] = v
        return out

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({ps})"

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(data) first")


class LinearGaussianModel(PersonalModel):
    """Base of the linear-in-features models: ``r_u = (mu + B w_u)^T phi``, ``w_u ~ N(m, Sigma)``.

    Subclasses set how units are defined (``_units``), whether ``B`` is learned, the identity or 0, and what
    happens after the MAP fit (``_after_fit``: e.g. empirical Bayes for the prior). Fitted attributes:
    ``mu_ (d,)``, ``B_ (d, K)`` (None for the identity basis), ``prior_mean_ (K,)``, ``prior_cov_ (K, K)``,
    ``units_`` (unit names), ``unit_means_ (U, K)``, ``unit_covs_ (U, K, K)`` or None, ``user_units_``
    (person -> unit row), ``history_``.
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
        max_iter: int = 300,
        validation_fraction: float = 0.1,
        patience: int = 3,
        random_state: int = 0,
        verbose: bool = False,
        validation_split: str = "judgments",
        min_rounds: int = 10,
    ) -> None:
        self.featurizer = featurizer
        self.min_rounds = min_rounds
        self.validation_split = validation_split
        self.l2_mean = l2_mean
        self.l2_basis = l2_basis
        self.prior_precision = prior_precision
        self.max_iter = max_iter
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ featurization
    def _featurizer(self) -> PairFeaturizer:
        if self.featurizer is None:
            self.featurizer = PairFeaturizer()
        return self.featurizer

    @property
    def rank(self) -> int:
        return 0

    def _K(self, d: int) -> int:
        return d if self.identity_basis else self.rank

    def _items_features(
        self, frames: Sequence[pd.DataFrame]
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """Unique (prompt, text) items over several comparison tables: features and per-table (ci, ri)."""
        keys = []
        for f in frames:
            p = f["prompt"].fillna("").astype(str).to_numpy(object)
            keys.append(pd.Series(p + _SEP + f["chosen"].astype(str).to_numpy(object)))
            keys.append(pd.Series(p + _SEP + f["rejected"].astype(str).to_numpy(object)))
        allk = pd.concat(keys, ignore_index=True) if keys else pd.Series([], dtype=object)
        codes, uniq = pd.factorize(allk, sort=False)
        parts = [u.split(_SEP, 1) for u in uniq]
        X = self._featurizer().transform(
            [q[0] for q in parts], [q[1] for q in parts], show_progress=self.verbose
        )
        out, pos = [], 0
        for f in frames:
            n = len(f)
            out.append((codes[pos : pos + n].astype(np.int64), codes[pos + n : pos + 2 * n].astype(np.int64)))
            pos += 2 * n
        return X, out

    @staticmethod
    def _labels(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        tie = (
            df["tie"].fillna(False).astype(bool).to_numpy()
            if "tie" in df.columns
            else np.zeros(len(df), bool)
        )
        y = np.where(tie, 0.5, 1.0).astype(np.float32)
        wt = (
            df["weight"].fillna(1.0).astype(float).to_numpy(np.float32)
            if "weight" in df.columns
            else np.ones(len(df), np.float32)
        )
        return y, wt

    # ------------------------------------------------------------------ units (override)
    def _units(self, data: PreferenceData, comps: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
        """Unit names and the person -> unit row map. Default: one unit per person (population excluded)."""
        users = sorted(set(comps["user_id"].astype(str)) - {POPULATION_USER})
        return users, {u: i for i, u in enumerate(users)}

    def _unit_rows(self, users: Sequence[str]) -> np.ndarray:
        m = self.user_units_
        return np.array([m.get(str(u), -1) for u in users], dtype=np.int64)

    # ------------------------------------------------------------------ fit
    def fit(self, data: PreferenceData, val_data: PreferenceData | None = None) -> LinearGaussianModel:
        """MAP fit of the shared part and the units' weights on ``data.to_comparisons()``; returns self."""
        comps = data.to_comparisons() if isinstance(data, PreferenceData) else pd.DataFrame(data)
        if len(comps) == 0:
            raise DataError("no comparisons to train on (ratings, votes and rankings convert to comparisons)")
        if val_data is not None:
            val = (
                val_data.to_comparisons() if isinstance(val_data, PreferenceData) else pd.DataFrame(val_data)
            )
        elif self.validation_fraction and self.validation_fraction > 0 and len(comps) >= 20:
            if getattr(self, "validation_split", "judgments") == "items":
                comps, val = split_by_items(comps, self.validation_fraction, seed=self.random_state)
            else:
                comps, val = split_judgments(comps, self.validation_fraction, seed=self.random_state)
        else:
            val = comps.iloc[:0]
        self.units_, self.user_units_ = self._units(data if isinstance(data, PreferenceData) else None, comps)
        X, idx = self._items_features([comps, val])
        tr = TrainArrays(X, idx[0][0], idx[0][1], self._unit_rows(comps["user_id"]), *self._labels(comps))
        va = TrainArrays(X, idx[1][0], idx[1][1], self._unit_rows(val["user_id"]), *self._labels(val))
        self.fit_arrays(tr, va if len(va) else None)
        self.n_train_ = len(comps)
        return self

    def init_parameters(self, train: TrainArrays) -> tuple[torch.nn.Module, torch.nn.Parameter | None]:
        """The starting basis module and unit weights, deterministic by ``random_state`` (shared by ``fit_arrays``
        and the distributed trainer, so both start from the same point)."""
        if not hasattr(self, "units_"):
            n_units = int(train.unit.max()) + 1 if len(train.unit) else 0
            self.units_ = [str(i) for i in range(n_units)]
            self.user_units_ = {u: i for i, u in enumerate(self.units_)}
        d = train.X.shape[1]
        K = self._K(d)
        self.n_features_ = d
        gen = torch.Generator().manual_seed(int(self.random_state))
        torch.manual_seed(int(self.random_state))
        basis = self._make_basis_module(d, K, gen)
        W = None
        if K > 0 and len(self.units_) > 0:
            W = torch.nn.Parameter(torch.randn(len(self.units_), K, generator=gen) * 0.01)
        return basis, W

    def fit_arrays(self, train: TrainArrays, val: TrainArrays | None = None) -> LinearGaussianModel:
        """Array-level fit (benchmarks): ``train.unit`` must index ``self.units_`` (set it before calling)."""
        basis, W = self.init_parameters(train)
        self.history_ = train_linear_gaussian(
            basis,
            W,
            train,
            val,
            prior_precision=self.prior_precision,
            l2_mean=self.l2_mean,
            l2_basis=self.l2_basis,
            max_iter=self.max_iter,
            patience=self.patience,
            min_rounds=self.min_rounds,
            verbose=self.verbose,
            desc=f"fitting {type(self).__name__}",
        )
        self._store_basis(basis)
        K = self.B_.shape[1] if self.B_ is not None else (self.n_features_ if self.identity_basis else 0)
        self.prior_mean_ = np.zeros(K)
        self.prior_cov_ = np.eye(K) / self.prior_precision
        self.unit_means_ = W.detach().double().numpy() if W is not None else np.zeros((len(self.units_), K))
        self.unit_covs_ = None
        self.added_: dict[str, Posterior] = {}
        with torch_threads():
            self._after_fit(train)
        self.fitted_ = True
        return self

    def _make_basis_module(self, d: int, K: int, gen: torch.Generator) -> torch.nn.Module:
        return LinearBasis(d, K, self.identity_basis, gen)

    def _store_basis(self, basis: torch.nn.Module) -> None:
        self.mu_ = basis.mu.detach().double().numpy().copy()
        self.B_ = basis.B.detach().double().numpy().copy() if getattr(basis, "B", None) is not None else None

    def _after_fit(self, train: TrainArrays) -> None:
        """Hook after the MAP fit (default: Laplace covariances of the units under the fixed prior)."""
        if self.K_ > 0 and self.store_unit_covs and len(self.units_):
            self._laplace_units(train, iters=2)

    def _laplace_units(self, train: TrainArrays, iters: int = 8) -> None:
        S, G = self.project(train.X)
        D = torch.from_numpy(G[train.ci] - G[train.ri])
        a = torch.from_numpy(S[train.ci] - S[train.ri])
        P = torch.from_numpy(np.linalg.inv(self.prior_cov_))
        W, C = batched_laplace(
            D,
            a,
            torch.from_numpy(train.y.astype(np.float64)),
            torch.from_numpy(train.wt.astype(np.float64)),
            torch.from_numpy(train.unit),
            len(self.units_),
            torch.from_numpy(self.prior_mean_),
            P,
            w0=torch.from_numpy(self.unit_means_),
            iters=iters,
        )
        self.unit_means_ = W.numpy()
        self.unit_covs_ = C.numpy()

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
        return self.project(self._featurizer().transform(prompts, list(responses)))

    def weights_for(self, user_id: str) -> np.ndarray:
        """Posterior mean of a person's weights (the prior mean for an unknown person)."""
        return self.posterior(user_id).mean

    def score(
        self, users: str | Sequence[str], prompts: str | Sequence[str], responses: Sequence[str] | str
    ) -> np.ndarray:
        """Rewards ``r_u(x, y)`` per row; a single user or prompt is broadcast; unknown persons get the prior mean."""
        self._check_fitted()
        responses = _as_list(responses)
        n = len(responses)
        users = _as_list(users, n)
        if len(users) != n:
            raise DataError(
                f"{len(users)} users for {n} responses", field="user_id", expected="one per response"
            )
        s, g = self.basis(prompts, responses)
        if self.K_ == 0:
            return s
        W = np.stack([self.weights_for(u) for u in users]) if n else np.zeros((0, self.K_))
        return s + (g * W).sum(1)

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
        s, g = self.basis(prompts, _as_list(responses))
        if self.K_ == 0:
            return s
        return s + (g @ w if w.ndim == 1 else (g * w).sum(1))

    def predict_proba(self, comparisons: pd.DataFrame) -> np.ndarray:
        """P(chosen > rejected) per row of a comparisons table (user_id, prompt, chosen, rejected)."""
        self._check_fitted()
        c = comparisons
        prompts = c["prompt"].fillna("").astype(str).tolist() if "prompt" in c.columns else [""] * len(c)
        users = c["user_id"].astype(str).tolist()
        rc = self.score(users, prompts, c["chosen"].astype(str).tolist())
        rr = self.score(users, prompts, c["rejected"].astype(str).tolist())
        return _sigmoid(rc - rr)

    # ------------------------------------------------------------------ persons
    def _prior_mean(self, user_row: dict | None) -> np.ndarray:
        """Override for side information (demographic prior mean)."""
        return self.prior_mean_

    def prior(self, user_row: dict | None = None) -> Posterior:
        """The population prior ``N(m, Sigma)`` (or the demographic prior for ``user_row``)."""
        self._check_fitted()
        return Posterior(self._prior_mean(user_row).copy(), self.prior_cov_.copy(), 0)

    def posterior(self, user_id: str) -> Posterior:
        """A trained (or added) person's posterior; the prior for an unknown person."""
        self._check_fitted()
        uid = str(user_id)
        if uid in self.added_:
            return self.added_[uid]
        j = self.user_units_.get(uid, -1)
        if j < 0:
            return self.prior()
        cov = self.unit_covs_[j] if self.unit_covs_ is not None else self.prior_cov_
        return Posterior(self.unit_means_[j].copy(), np.array(cov, copy=True), 0)

    def add_user(self, user_id: str, posterior: Posterior) -> None:
        """Register an adapted person so that ``score`` uses their posterior mean."""
        self._check_fitted()
        if posterior.dim != self.K_:
            raise ConfigError(f"posterior has {posterior.dim} dims, the model {self.K_}")
        self.added_[str(user_id)] = posterior

    def example_arrays(self, examples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(D, a, y, wt)`` for Laplace: personal-basis and population differences chosen - rejected."""
        prompts = examples["prompt"].fillna("").astype(str).tolist() if "prompt" in examples.columns else ""
        n = len(examples)
        if isinstance(prompts, str):
            prompts = [""] * n
        phi = self._featurizer().transform(
            prompts + prompts,
            examples["chosen"].astype(str).tolist() + examples["rejected"].astype(str).tolist(),
        )
        s, g = self.project(phi)
        y, wt = self._labels(examples)
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

    def adapt(
        self, examples: pd.DataFrame, prior: Posterior | None = None, user_row: dict | None = None
    ) -> Posterior:
        """Posterior of a new person's weights from k comparisons, the shared part frozen (k = 0: the prior)."""
        self._check_fitted()
        prior = prior if prior is not None else self.prior(user_row)
        if examples is None or len(examples) == 0:
            return Posterior(prior.mean.copy(), prior.cov.copy(), prior.n)
        return self.adapt_arrays(*self.example_arrays(examples), prior)

    def update(self, posterior: Posterior, examples: pd.DataFrame) -> Posterior:
        """Fold new judgment(s) into a posterior (assumed-density filtering; pure: the model is not changed)."""
        return self.adapt(examples, prior=posterior)

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
        p = _sigmoid(z / np.sqrt(1.0 + np.pi * var / 8.0))
        return np.log1p(p * (1 - p) * var)

    def collapsed(self) -> LinearGaussianModel:
        """A copy in which every person (trained or added) has the population prior mean."""
        self._check_fitted()
        m = copy.deepcopy(self)
        if m.K_ > 0:
            m.unit_means_ = np.tile(m.prior_mean_, (len(m.units_), 1))
            m.unit_covs_ = None if m.unit_covs_ is None else np.tile(m.prior_cov_, (len(m.units_), 1, 1))
            m.added_ = {u: Posterior(m.prior_mean_.copy(), m.prior_cov_.copy(), 0) for u in m.added_}
        return m

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
        # float64 so that a save/load round trip gives bit-identical scores
        return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in t.items()}

    def _extra_config(self) -> dict[str, Any]:
        return {}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``directory`` (atomically: temp folder, rename)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        out = Path(directory)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            save_file(self._tensors(), str(tmp / "model.safetensors"))
            cfg = {
                "format_version": FORMAT_VERSION,
                "model_class": type(self).__name__,
                "params": self._json_params(),
                "featurizer": self._featurizer().config(),
                "n_features": int(self.n_features_),
                "K": self.K_,
                "units": list(self.units_),
                "user_units": self.user_units_,
                "added_users": list(self.added_),
                "added_n": [p.n for p in self.added_.values()],
                "history": {k: v for k, v in self.history_.items() if k != "train_loss"},
                **self._extra_config(),
            }
            (tmp / "config.json").write_text(json.dumps(cfg, indent=2, default=float))
            if out.exists():
                old = out.with_name(f".{out.name}.old")
                if old.exists():
                    shutil.rmtree(old)
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, featurizer: PairFeaturizer | None = None
    ) -> LinearGaussianModel:
        """Load a saved model; ConfigError when the artifact does not match this class or its own config."""
        from safetensors.numpy import load_file

        d = Path(directory)
        cfg = read_config(d)
        name = cfg.get("model_class")
        klass = _REGISTRY.get(name)
        if klass is None:
            raise ConfigError(f"{d / 'config.json'}: unknown model_class {name!r}")
        if cls is not LinearGaussianModel and cls is not PersonalModel and not issubclass(klass, cls):
            raise ConfigError(f"{d}: holds a {name}, not a {cls.__name__}")
        try:
            model = klass(**cfg.get("params", {}))
        except TypeError as exc:
            raise ConfigError(f"{d / 'config.json'}: parameters do not match {name}: {exc}") from exc
        fcfg = cfg.get("featurizer", {})
        if featurizer is None:
            featurizer = PairFeaturizer.from_config(fcfg)
        featurizer.compatible_with(fcfg)
        model.featurizer = featurizer
        try:
            t = load_file(str(d / "model.safetensors"))
        except Exception as exc:  # safetensors raises its own types
            raise ConfigError(f"{d / 'model.safetensors'}: cannot read weights: {exc}") from exc
        model._load_tensors(t, cfg, d)
        return model

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        nf, K = int(cfg["n_features"]), int(cfg["K"])
        units = list(cfg["units"])

        def need(key: str, shape: tuple[int, ...]) -> np.ndarray:
            if key not in t:
                raise ConfigError(f"{d / 'model.safetensors'}: missing tensor {key!r}")
            if tuple(t[key].shape) != shape:
                raise ConfigError(
                    f"{d / 'model.safetensors'}: tensor {key!r} has shape {tuple(t[key].shape)}, "
                    f"config.json says {shape}"
                )
            return t[key].astype(np.float64)

        if self._featurizer().dim_out != nf:
            raise ConfigError(
                f"{d}: featurizer gives {self._featurizer().dim_out}-d features, model expects {nf}"
            )
        self.n_features_ = nf
        self.mu_ = need("mu", (nf,))
        self.B_ = need("B", (nf, K)) if "B" in t or (not self.identity_basis and K > 0) else None
        self.prior_mean_ = need("prior_mean", (K,))
        self.prior_cov_ = need("prior_cov", (K, K))
        self.units_ = units
        self.unit_means_ = need("unit_means", (len(units), K))
        self.unit_covs_ = need("unit_covs", (len(units), K, K)) if "unit_covs" in t else None
        self.user_units_ = {str(k): int(v) for k, v in cfg.get("user_units", {}).items()}
        added = cfg.get("added_users", [])
        self.added_ = {}
        if added:
            am, ac = need("added_means", (len(added), K)), need("added_covs", (len(added), K, K))
            ns = cfg.get("added_n", [0] * len(added))
            self.added_ = {u: Posterior(am[i], ac[i], ns[i]) for i, u in enumerate(added)}
        self.history_ = cfg.get("history", {})
        self.fitted_ = True


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """A model folder's ``config.json``, checked for the format version (ConfigError otherwise)."""
    d = Path(directory)
    f = d / "config.json"
    if not f.is_file():
        raise ConfigError(f"{d}: not a saved model (no config.json)")
    try:
        cfg = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{f}: invalid JSON: {exc}") from exc
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{f}: format_version {cfg.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    return cfg


def registered(name: str) -> type[PersonalModel] | None:
    return _REGISTRY.get(name)
