"""A linear-Gaussian model's personal directions as axes people can be placed on.

The K personal weights of a low-rank model are identified only up to a rotation, so the directions explained to
a person are the principal axes of the population prior ``N(m, Sigma)``: ``Sigma = V diag(lam) V^T``, the first
axis the one along which people differ most. On axis k a person sits at ``z_k = v_k^T (w - m) / sqrt(lam_k)``
(population standard deviations from the average person) with posterior sd ``sqrt(v_k^T C v_k / lam_k)``; a text
x loads ``t_k(x) = sqrt(lam_k) g(x)^T v_k`` on it: the reward a person one sd along the axis gives x on top of
what the average person gives it. The sign of each axis is fixed by making its largest component positive
(scikit-learn's ``svd_flip`` convention), so a model always names its axes the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from personalign.errors import ConfigError
from personalign.models.posterior import Posterior


@dataclass(frozen=True)
class PrincipalAxes:
    """The prior's principal axes: ``vectors`` (K, n) columns, ``variances`` (n,) descending, ``mean`` (K,)."""

    vectors: np.ndarray
    variances: np.ndarray
    mean: np.ndarray

    def __len__(self) -> int:
        return int(self.variances.shape[0])

    def position(self, posterior: Posterior) -> tuple[np.ndarray, np.ndarray]:
        """``(z, sd)``: the person's place on each axis and its posterior sd, in population sds."""
        scale = np.sqrt(self.variances)
        z = self.vectors.T @ (np.asarray(posterior.mean) - self.mean) / scale
        var = np.einsum("ki,kl,li->i", self.vectors, np.asarray(posterior.cov), self.vectors)
        return z, np.sqrt(np.maximum(var, 0.0)) / scale

    def loadings(self, g: np.ndarray) -> np.ndarray:
        """``t (n_texts, n_axes)`` from the personal basis ``g (n_texts, K)`` of some texts."""
        return np.asarray(g, dtype=np.float64) @ self.vectors * np.sqrt(self.variances)


def principal_axes(prior: Posterior, max_axes: int | None = None, rel_tol: float = 1e-8) -> PrincipalAxes:
    """The principal axes of a prior (variances below ``rel_tol`` of the largest dropped, at most ``max_axes``)."""
    cov = np.asarray(prior.cov, dtype=np.float64)
    if cov.size == 0:
        return PrincipalAxes(np.zeros((0, 0)), np.zeros(0), np.zeros(0))
    lam, V = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(lam)[::-1]
    lam, V = lam[order], V[:, order]
    keep = lam > rel_tol * max(float(lam[0]), 0.0)
    if max_axes is not None:
        keep &= np.arange(len(lam)) < max_axes
    lam, V = lam[keep], V[:, keep]
    flip = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(V.shape[1])])
    return PrincipalAxes(V * np.where(flip == 0, 1.0, flip), lam, np.asarray(prior.mean, dtype=np.float64))


def text_loadings(
    model: object, axes: PrincipalAxes, prompts: str | Sequence[str], texts: Sequence[str]
) -> np.ndarray:
    """Each text's loading on each axis (see the module docstring); the model needs ``basis(prompts, texts)``."""
    basis = getattr(model, "basis", None)
    if basis is None:
        raise ConfigError(f"{type(model).__name__} has no linear personal basis (basis()) to explain")
    if not len(texts):
        return np.zeros((0, len(axes)))
    _, g = basis(prompts, list(texts))
    return axes.loadings(g)
