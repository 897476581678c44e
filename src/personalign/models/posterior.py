"""A person's belief and the Laplace approximation behind ``adapt``, ``update`` and empirical Bayes.

Model: with the shared part frozen, a comparison is ``P(first wins) = sigmoid(a_i + D_i^T w)`` for a person's
K-dim weights ``w ~ N(m, P^{-1})``; the posterior is approximated by a Gaussian at its mode (Newton's method on a
strictly convex objective), for one person (:func:`laplace_newton`, milliseconds) or many at once
(:class:`BatchedLaplace`, the E-step of empirical Bayes over every trained person).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


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
        """Mean, covariance and count as JSON-safe lists."""
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist(), "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Posterior:
        """The posterior :meth:`to_dict` wrote."""
        return cls(np.asarray(d["mean"], float), np.asarray(d["cov"], float), int(d.get("n", 0)))

    def entropy(self) -> float:
        """Differential entropy (nats): ``0.5 * logdet(2 pi e cov)``."""
        if self.dim == 0:
            return 0.0
        sign, logdet = np.linalg.slogdet(self.cov)
        return float(0.5 * (logdet + self.dim * np.log(2 * np.pi * np.e)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, computed through tanh (no overflow for large ``|z|``)."""
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
        p = sigmoid(a + D @ w)
        g = P @ (w - m) + D.T @ (wt * (p - y))
        s = wt * p * (1.0 - p)
        H = P + (D.T * s) @ D
        step = np.linalg.solve(H, g)
        w = w - step
        if np.max(np.abs(step)) < tol:
            break
    p = sigmoid(a + D @ w)
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


def well_conditioned_cov(S: np.ndarray | torch.Tensor, floor: float = 1e-4, ceil: float = 1e4):
    """A symmetric covariance with eigenvalues clipped into ``[floor, ceil]`` (finite, invertible)."""
    is_t = isinstance(S, torch.Tensor)
    A = S.detach().cpu().numpy() if is_t else np.asarray(S, dtype=np.float64)
    A = np.nan_to_num(0.5 * (A + A.T), nan=0.0, posinf=ceil, neginf=0.0)
    vals, vecs = np.linalg.eigh(A)
    A = (vecs * np.clip(vals, floor, ceil)) @ vecs.T
    A = 0.5 * (A + A.T)
    return torch.from_numpy(A) if is_t else A
