"""Objectives the training loop minimizes, and the arrays they read.

The comparison objective (:class:`PairwiseObjective`) is the Bradley-Terry MAP objective of every linear-Gaussian
model: ``(sum_i wt_i BCE(z_i, y_i) + penalty) / sum_i wt_i`` with
``z_i = s(ci) - s(ri) + (g(ci) - g(ri))^T w_unit(i)`` and ``(s, g) = basis(X)`` on the unique items only (features
are projected once per item, not once per pair). Other models (the mixture's M-step, the ordinal model) bring their
own objective with the same three members (:class:`~personalign.models.training.Objective`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from personalign.models.training import DataParallel

# joins prompt and text into one item key (numpy strips a trailing NUL, so not "\x00")
ITEM_KEY_SEP = "\x1f"


def item_keys(prompts: Sequence[str] | pd.Series, texts: Sequence[str] | pd.Series) -> np.ndarray:
    """One string per (prompt, text) item, equal exactly when both are (fast: no hashing)."""
    p = pd.Series(prompts).fillna("").astype(str).to_numpy(object)
    return p + ITEM_KEY_SEP + pd.Series(texts).astype(str).to_numpy(object)


def index_items(
    columns: Sequence[tuple[Sequence[str], Sequence[str]]],
) -> tuple[list[str], list[str], list[np.ndarray]]:
    """Unique items over several (prompts, texts) columns: their prompts, texts, and each column's item rows."""
    keys = [item_keys(p, t) for p, t in columns]
    allk = pd.Series(np.concatenate(keys) if keys else [], dtype=object)
    codes, uniq = pd.factorize(allk, sort=False)
    parts = [u.split(ITEM_KEY_SEP, 1) for u in uniq]
    out, pos = [], 0
    for k in keys:
        out.append(codes[pos : pos + len(k)].astype(np.int64))
        pos += len(k)
    return [q[0] for q in parts], [q[1] for q in parts], out


def pair_labels(comparisons: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(y, wt)`` float32 of a comparisons table: 1 = chosen won, 0.5 = tie; the rows' weights (default 1)."""
    df = comparisons
    tie = df["tie"].fillna(False).astype(bool).to_numpy() if "tie" in df.columns else np.zeros(len(df), bool)
    y = np.where(tie, 0.5, 1.0).astype(np.float32)
    if "weight" in df.columns:
        return y, df["weight"].fillna(1.0).astype(float).to_numpy(np.float32)
    return y, np.ones(len(df), np.float32)


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
        """The rows selected by a boolean mask or an array of positions (same item table)."""
        return TrainArrays(self.X, self.ci[mask], self.ri[mask], self.unit[mask], self.y[mask], self.wt[mask])

    def __len__(self) -> int:
        return len(self.ci)

    def shard(self, parallel: DataParallel) -> TrainArrays:
        """This process's rows (all of them in one process)."""
        return self if parallel.world == 1 else self.subset(parallel.shard(len(self)))


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
        return ridge(self.mu, self.B, l2_mean, l2_basis)


def ridge(mu: torch.Tensor, B: torch.Tensor | None, l2_mean: float, l2_basis: float) -> torch.Tensor:
    """``l2_mean / 2 ||mu||^2 + l2_basis / 2 ||B||^2``: the penalty of every basis's linear part."""
    pen = 0.5 * l2_mean * (mu**2).sum()
    return pen if B is None else pen + 0.5 * l2_basis * (B**2).sum()


class PairwiseObjective:
    """Bradley-Terry MAP objective over comparisons (module docstring); rows with unit -1 use ``w = 0``.

    Penalty: ``basis.penalty(l2_mean, l2_basis) + prior_precision / 2 * ||W||^2``. The gradient is accumulated
    chunk by chunk of ``chunk_rows`` rows, through the detached item projection: every temporary stays a few MB
    (temporaries of hundreds of MB are mmap-ed and page-faulted afresh at every step, which at 1M comparisons
    cost more system time than the arithmetic).
    """

    def __init__(
        self,
        basis: torch.nn.Module,
        W: torch.nn.Parameter | None,
        rows: TrainArrays,
        *,
        l2_mean: float,
        l2_basis: float,
        prior_precision: float,
        chunk_rows: int = 65536,
    ) -> None:
        self.basis, self.W, self.rows = basis, W, rows
        self.l2_mean, self.l2_basis, self.prior_precision = l2_mean, l2_basis, prior_precision
        self.chunk_rows = int(chunk_rows)
        self.X = torch.from_numpy(np.ascontiguousarray(rows.X, dtype=np.float32))
        self.ci, self.ri, self.unit = (torch.from_numpy(np.asarray(a)) for a in (rows.ci, rows.ri, rows.unit))
        self.y = torch.from_numpy(rows.y.astype(np.float32))
        self.wt = torch.from_numpy(rows.wt.astype(np.float32))
        self.weight = float(self.wt.sum())
        self.chunks = [slice(s, s + self.chunk_rows) for s in range(0, len(self.ci), self.chunk_rows)]

    def on(self, rows: TrainArrays) -> PairwiseObjective:
        """The same parameters and penalties over other rows (e.g. the validation rows)."""
        return PairwiseObjective(
            self.basis,
            self.W,
            rows,
            l2_mean=self.l2_mean,
            l2_basis=self.l2_basis,
            prior_precision=self.prior_precision,
            chunk_rows=self.chunk_rows,
        )

    def parameters(self) -> list[torch.Tensor]:
        return list(self.basis.parameters()) + ([self.W] if self.W is not None else [])

    def with_population(self) -> torch.Tensor | None:
        """``W`` plus a last row of zeros: the population (w = 0), used by rows with unit -1."""
        W = self.W
        return None if W is None else torch.cat([W, torch.zeros(1, W.shape[1], dtype=W.dtype)], 0)

    def margins(self, P: torch.Tensor, Wx: torch.Tensor | None, sl: slice) -> torch.Tensor:
        """``z`` of the rows in ``sl`` from the item projection ``P = basis(X)`` and ``Wx``."""
        ci, ri, unit = self.ci[sl], self.ri[sl], self.unit[sl]
        Dp = P.index_select(0, ci) - P.index_select(0, ri)
        z = Dp[:, 0]
        if Wx is not None and P.shape[1] > 1:
            u = torch.where(unit < 0, torch.full_like(unit, Wx.shape[0] - 1), unit)
            z = z + (Dp[:, 1:] * Wx.index_select(0, u)).sum(1)
        return z

    def _bce(self, z: torch.Tensor, sl: slice) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            z, self.y[sl], weight=self.wt[sl], reduction="sum"
        )

    def penalty(self) -> torch.Tensor:
        pen = (
            self.basis.penalty(self.l2_mean, self.l2_basis)
            if hasattr(self.basis, "penalty")
            else torch.zeros(())
        )
        if self.W is not None:
            pen = pen + 0.5 * self.prior_precision * (self.W**2).sum()
        return pen

    def loss_backward(self, total: float, share: float = 1.0) -> torch.Tensor:
        P = self.basis(self.X)
        Pd = P.detach().requires_grad_(True)
        nll = torch.zeros(())
        for sl in self.chunks:
            part = self._bce(self.margins(Pd, self.with_population(), sl), sl)
            (part / total).backward()
            nll = nll + part.detach()
        pen = self.penalty() * share
        if isinstance(pen, torch.Tensor) and pen.requires_grad:
            (pen / total).backward()
        if Pd.grad is not None:
            P.backward(Pd.grad)
        return (nll + pen.detach()) / total

    @torch.no_grad()
    def loss(self) -> float:
        P = self.basis(self.X)
        Wx = self.with_population()
        return sum(float(self._bce(self.margins(P, Wx, sl), sl)) for sl in self.chunks)
