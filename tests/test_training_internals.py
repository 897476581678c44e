"""Training internals that the 1M-comparison path relies on: batched Laplace, chunked gradients, warm-up."""

from __future__ import annotations

import numpy as np
import torch

from personalign.models.objectives import LinearBasis, PairwiseObjective, TrainArrays
from personalign.models.posterior import BatchedLaplace, laplace_newton
from personalign.models.training import TrainingConfig, fit_lbfgs


def _problem(seed: int = 0, n: int = 3000, U: int = 40, K: int = 4):
    g = torch.Generator().manual_seed(seed)
    unit = torch.randint(-1, U, (n,), generator=g)
    unit[:700] = 5  # one heavy unit lands in its own count bucket
    unit[unit == 9] = -1  # a unit without judgments keeps the prior
    D = torch.randn(n, K, generator=g, dtype=torch.float64)
    a = 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    y = (torch.rand(n, generator=g) < 0.6).double()
    y[:50] = 0.5  # ties
    wt = 0.5 + torch.rand(n, generator=g, dtype=torch.float64)
    A = torch.randn(K, K, generator=g, dtype=torch.float64)
    P = A @ A.T / K + torch.eye(K, dtype=torch.float64)
    m = 0.2 * torch.randn(K, generator=g, dtype=torch.float64)
    return D, a, y, wt, unit, U, m, P


def test_batched_laplace_equals_per_unit_newton():
    D, a, y, wt, unit, U, m, P = _problem()
    W, C = BatchedLaplace(D, a, y, wt, unit, U).solve(m, P, iters=30, tol=1e-12)
    for u in (0, 5, 9, 17, U - 1):
        rows = (unit == u).numpy()
        w, c = laplace_newton(
            D.numpy()[rows],
            a.numpy()[rows],
            y.numpy()[rows],
            wt.numpy()[rows],
            m.numpy(),
            P.numpy(),
            tol=1e-12,
        )
        np.testing.assert_allclose(W[u].numpy(), w, atol=1e-8)
        np.testing.assert_allclose(C[u].numpy(), c, atol=1e-8)
    # no judgments: the posterior is the prior
    np.testing.assert_allclose(W[9].numpy(), m.numpy(), atol=1e-12)
    np.testing.assert_allclose(C[9].numpy(), np.linalg.inv(P.numpy()), atol=1e-8)


def _arrays(seed: int = 0, n: int = 4000, n_items: int = 60, d: int = 6, U: int = 50) -> TrainArrays:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_items, d)).astype(np.float32)
    ci = rng.integers(n_items, size=n)
    ri = (ci + rng.integers(1, n_items, size=n)) % n_items
    unit = rng.integers(-1, U, size=n)
    y = (rng.random(n) < 0.7).astype(np.float32)
    return TrainArrays(X, ci, ri, unit, y, np.ones(n, np.float32))


def _objective(train: TrainArrays, chunk_rows: int = 65536) -> PairwiseObjective:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    basis = LinearBasis(train.X.shape[1], 3, False, g)
    W = torch.nn.Parameter(0.1 * torch.randn(50, 3, generator=g))
    return PairwiseObjective(
        basis, W, train, l2_mean=30.0, l2_basis=30.0, prior_precision=1.0, chunk_rows=chunk_rows
    )


def _fit(train: TrainArrays, chunk_rows: int):
    obj = _objective(train, chunk_rows)
    hist = fit_lbfgs(obj, obj.parameters(), None, TrainingConfig(max_iter=20))
    return obj.basis, obj.W, hist


def test_chunked_gradient_matches_one_chunk():
    train = _arrays()
    b1, W1, h1 = _fit(train, chunk_rows=10**9)
    b2, W2, h2 = _fit(train, chunk_rows=333)
    np.testing.assert_allclose(h1["train_loss"], h2["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(W1.detach().numpy(), W2.detach().numpy(), atol=1e-3)


def test_min_rounds_defers_early_stopping():
    # training labels follow feature 0, validation labels are the opposite: every step worsens validation
    train = _arrays(seed=1)
    y = (train.X[train.ci, 0] > train.X[train.ri, 0]).astype(np.float32)
    train = TrainArrays(train.X, train.ci, train.ri, train.unit, y, train.wt)
    val = TrainArrays(
        train.X, train.ci[:500], train.ri[:500], train.unit[:500], 1.0 - y[:500], train.wt[:500]
    )
    for min_rounds, expect in ((0, 1), (6, 6)):
        obj = _objective(train)
        start = [p.detach().clone() for p in obj.parameters()]
        options = TrainingConfig(max_iter=40, eval_every=2, patience=1, min_rounds=min_rounds, tol=0.0)
        h = fit_lbfgs(obj, obj.parameters(), obj.on(val), options)
        assert h["stopped_early"]
        assert len(h["val_loss"]) == expect
        # no round beats the starting point, so the start is restored whatever the number of rounds
        assert h["kept_start"] and h["best_val_loss"] == h["start_val_loss"] < min(h["val_loss"])
        for p, p0 in zip(obj.parameters(), start, strict=True):
            assert torch.equal(p.detach(), p0)
        np.testing.assert_allclose(obj.on(val).loss() / val.wt.sum(), h["best_val_loss"], rtol=1e-6)


def test_a_round_that_beats_the_start_is_kept():
    train = _arrays(seed=1)
    obj = _objective(train)
    h = fit_lbfgs(obj, obj.parameters(), obj.on(train), TrainingConfig(max_iter=20, eval_every=2, tol=0.0))
    assert not h["kept_start"] and h["best_val_loss"] == min(h["val_loss"]) < h["start_val_loss"]


def test_all_reduce_hook_of_one_process_changes_nothing():
    # one process behind the hook: the flat gradient message and the reduced losses give the same steps
    train = _arrays(seed=2)
    val = train.subset(np.arange(0, len(train), 7))
    ref, hooked = _objective(train), _objective(train)
    calls = []

    def all_reduce(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.numel())
        return t

    options = TrainingConfig(max_iter=20, min_rounds=0)
    h_ref = fit_lbfgs(ref, ref.parameters(), ref.on(val), options)
    h = fit_lbfgs(hooked, hooked.parameters(), hooked.on(val), options, all_reduce)
    assert h["train_loss"] == h_ref["train_loss"] and h["val_loss"] == h_ref["val_loss"]
    for p, q in zip(ref.parameters(), hooked.parameters(), strict=True):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    n_params = sum(p.numel() for p in ref.parameters())
    assert n_params in calls and h["world_size"] == 1
