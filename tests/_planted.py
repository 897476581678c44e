"""A small planted low-rank population for model tests (random item vectors, K true personal directions, BT labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.features import PairFeaturizer, PrecomputedEncoder


def planted(
    n_users: int = 60,
    n_per_user: int = 60,
    n_items: int = 120,
    d: int = 16,
    K: int = 2,
    scale: float = 4.0,
    seed: int = 0,
    n_test: int = 40,
) -> dict:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_items, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    texts = [f"item {i}" for i in range(n_items)]
    mu = rng.normal(size=d) * 0.5
    B = np.linalg.qr(rng.normal(size=(d, K)))[0] * scale
    W = rng.choice([-1.0, 1.0], size=(n_users, K)) + 0.1 * rng.normal(size=(n_users, K))
    R = (X @ mu)[:, None] + (X @ B) @ W.T  # (items, users) true rewards
    users = [f"u{j}" for j in range(n_users)]

    def sample(n: int, rs: np.random.Generator) -> pd.DataFrame:
        rows = []
        for j, u in enumerate(users):
            a = rs.integers(0, n_items, n)
            b = (a + rs.integers(1, n_items, n)) % n_items
            p = 1 / (1 + np.exp(-(R[a, j] - R[b, j])))
            win = rs.random(n) < p
            for ai, bi, w in zip(a, b, win, strict=False):
                c, r = (ai, bi) if w else (bi, ai)
                rows.append((u, "", texts[c], texts[r], R[c, j] - R[r, j]))
        return pd.DataFrame(rows, columns=["user_id", "prompt", "chosen", "rejected", "true_margin"])

    train = sample(n_per_user, rng)
    test = sample(n_test, rng)
    feat = PairFeaturizer(PrecomputedEncoder((texts, X.astype(np.float32))), mode="response")
    return {
        "data": PreferenceData(comparisons=train.drop(columns="true_margin")),
        "test": test,
        "featurizer": feat,
        "X": X,
        "mu": mu,
        "B": B,
        "W": W,
        "R": R,
        "users": users,
        "texts": texts,
    }


def accuracy(p: np.ndarray) -> float:
    return float(np.mean(p > 0.5))
