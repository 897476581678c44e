"""Multi-process training of the shared model under torch DistributedDataParallel (torchrun; gloo on CPU, nccl on GPU).

Same objective as single-process training (:func:`personalign.models.base.train_linear_gaussian`): full-batch
L-BFGS on ``(sum_i wt_i BCE(z_i, y_i) + penalty) / sum_i wt_i``. Comparisons are sharded across ranks (row i goes to
rank ``i % world``); every rank holds the unique items' features and all parameters (``mu``, ``B`` and the person
weights ``W``, deterministic init from ``random_state``). Rank r's local loss is ``(world * nll_r + penalty) / N``,
so DDP's gradient average is exactly the full-batch gradient; the loss value L-BFGS's line search sees is
all-reduced too, so every rank takes the same steps and ends with the same parameters. The empirical-Bayes prior
step that follows the MAP fit (``_after_fit``) runs on every rank over the full arrays (it is cheap and keeps the
ranks identical); rank 0 saves the model.

Run (one machine, 2 processes)::

    torchrun --nproc_per_node 2 -m personalign.integrations.distributed DATA --model lowrank --rank 8 --out DIR

Across machines: the same command on every node with ``--nnodes N --node_rank i --rdzv-backend c10d
--rdzv-endpoint HOST:PORT`` (HOST = a node every other node can reach).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from personalign.data.core import PreferenceData
from personalign.data.splits import split_judgments
from personalign.errors import ConfigError, DataError
from personalign.models.base import LinearGaussianModel, TrainArrays


class _ShardObjective(torch.nn.Module):
    """The model's basis and person weights; ``forward`` is this rank's summed Bradley-Terry log loss."""

    def __init__(self, basis: torch.nn.Module, W: torch.nn.Parameter | None) -> None:
        super().__init__()
        self.basis = basis
        self.W = W

    def margins(
        self, X: torch.Tensor, ci: torch.Tensor, ri: torch.Tensor, unit: torch.Tensor
    ) -> torch.Tensor:
        P = self.basis(X)
        z = P[ci, 0] - P[ri, 0]
        if self.W is not None and P.shape[1] > 1:
            n_units = self.W.shape[0]
            # one extra row of zeros: unit -1 (the population) scores with w = 0
            Wx = torch.cat(
                [self.W, torch.zeros(1, self.W.shape[1], dtype=self.W.dtype, device=self.W.device)], 0
            )
            u = torch.where(unit < 0, torch.full_like(unit, n_units), unit)
            z = z + ((P[ci, 1:] - P[ri, 1:]) * Wx[u]).sum(1)
        return z

    def forward(self, X, ci, ri, unit, y, wt) -> torch.Tensor:  # noqa: ANN001
        z = self.margins(X, ci, ri, unit)
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, weight=wt, reduction="sum")

    def penalty(self, model: LinearGaussianModel) -> torch.Tensor:
        pen = self.basis.penalty(model.l2_mean, model.l2_basis) if hasattr(self.basis, "penalty") else 0.0
        if self.W is not None:
            pen = pen + 0.5 * model.prior_precision * (self.W**2).sum()
        return pen


def _shard(t: TrainArrays, rank: int, world: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    idx = np.arange(rank, len(t), world)
    return (
        torch.from_numpy(t.ci[idx]).to(device),
        torch.from_numpy(t.ri[idx]).to(device),
        torch.from_numpy(t.unit[idx]).to(device),
        torch.from_numpy(t.y[idx].astype(np.float32)).to(device),
        torch.from_numpy(t.wt[idx].astype(np.float32)).to(device),
    )


def _allreduce(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def ddp_fit_arrays(
    model: LinearGaussianModel,
    train: TrainArrays,
    val: TrainArrays | None = None,
    device: str | torch.device = "cpu",
    eval_every: int = 10,
    tol: float = 1e-6,
) -> LinearGaussianModel:
    """:meth:`LinearGaussianModel.fit_arrays` under DDP (the process group must be initialized; world 1 works
    without one). Every rank passes the same full arrays; each trains on its shard and all end identical."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ddp_on = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp_on else (0, 1)
    device = torch.device(device)
    basis, W = model.init_parameters(train)  # the same start as fit_arrays
    obj = _ShardObjective(basis, W).to(device)
    net = DDP(obj, device_ids=[device.index] if device.type == "cuda" else None) if ddp_on else obj
    X = torch.from_numpy(np.ascontiguousarray(train.X, dtype=np.float32)).to(device)
    tr = _shard(train, rank, world, device)
    va = _shard(val, rank, world, device) if val is not None and len(val) else None
    wsum = float(train.wt.astype(np.float32).sum(dtype=np.float64))
    vsum = float(val.wt.astype(np.float32).sum(dtype=np.float64)) if va is not None else 1.0
    params = list(obj.basis.parameters()) + ([obj.W] if obj.W is not None else [])
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
        nll = net(X, *tr)
        pen = obj.penalty(model)
        # DDP averages gradients over ranks: world * nll_r makes the average the full-batch gradient
        (((world * nll) + pen) / wsum).backward()
        total = _allreduce(nll.detach().clone())
        return (total + pen.detach()) / wsum

    @torch.no_grad()
    def val_loss() -> float:
        return float(_allreduce(obj(X, *va).detach().clone()) / vsum)

    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "stopped_early": False, "world_size": world}
    best: tuple[float, list[torch.Tensor] | None] = (float("inf"), None)
    bad, prev = 0, float("inf")
    show = model.verbose and rank == 0
    rounds = max(1, model.max_iter // eval_every)
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=rounds, desc=f"DDP fit ({world} processes)", unit="round")
    for r in range(rounds):
        loss = float(opt.step(closure))
        history["train_loss"].append(loss)
        if va is not None:
            vl = val_loss()
            history["val_loss"].append(vl)
            if vl < best[0] - 1e-6:
                best, bad = (vl, [p.detach().clone() for p in params]), 0
            else:
                bad += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        # as in train_linear_gaussian: no early stop during the first min_rounds rounds
        if va is not None and bad >= model.patience and r + 1 >= getattr(model, "min_rounds", 0):
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
    obj.to("cpu")
    model.history_ = history
    model._store_basis(obj.basis)
    K = model.B_.shape[1] if model.B_ is not None else (model.n_features_ if model.identity_basis else 0)
    model.prior_mean_ = np.zeros(K)
    model.prior_cov_ = np.eye(K) / model.prior_precision
    model.unit_means_ = (
        obj.W.detach().double().numpy() if obj.W is not None else np.zeros((len(model.units_), K))
    )
    model.unit_covs_ = None
    model.added_ = {}
    model._after_fit(train)
    model.fitted_ = True
    return model


def ddp_fit(
    model: LinearGaussianModel,
    data: PreferenceData,
    val_data: PreferenceData | None = None,
    device: str = "cpu",
) -> LinearGaussianModel:
    """:meth:`fit` under DDP: the same validation split and item features as single-process ``fit``."""
    comps = data.to_comparisons()
    if len(comps) == 0:
        raise DataError("no comparisons to train on (ratings, votes and rankings convert to comparisons)")
    if val_data is not None:
        val = val_data.to_comparisons()
    elif model.validation_fraction and model.validation_fraction > 0 and len(comps) >= 20:
        comps, val = split_judgments(comps, model.validation_fraction, seed=model.random_state)
    else:
        val = comps.iloc[:0]
    model.units_, model.user_units_ = model._units(data, comps)
    X, idx = _features_rank0_first(model, comps, val)
    tr = TrainArrays(X, idx[0][0], idx[0][1], model._unit_rows(comps["user_id"]), *model._labels(comps))
    va = TrainArrays(X, idx[1][0], idx[1][1], model._unit_rows(val["user_id"]), *model._labels(val))
    ddp_fit_arrays(model, tr, va if len(va) else None, device=device)
    model.n_train_ = len(comps)
    return model


def _features_rank0_first(model: LinearGaussianModel, comps: Any, val: Any) -> tuple[np.ndarray, list]:
    """Item features; rank 0 encodes first (filling the on-disk cache) so the other ranks only read it."""
    ddp_on = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if ddp_on else 0
    if ddp_on and rank != 0:
        dist.barrier()
    out = model._items_features([comps, val])
    if ddp_on and rank == 0:
        dist.barrier()
    return out


# ------------------------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc_per_node N -m personalign.integrations.distributed DATA --out DIR [...]``."""
    ap = argparse.ArgumentParser(
        prog="python -m personalign.integrations.distributed",
        description="Train a personalign model under DistributedDataParallel (launch with torchrun).",
    )
    ap.add_argument("data", help="preference data (any format personalign reads, or a `data synth` folder)")
    ap.add_argument("--out", required=True, help="folder for the trained model (written by rank 0)")
    ap.add_argument("--model", default="lowrank", help="bt, group, independent or lowrank")
    ap.add_argument("--rank", type=int, default=8, help="K, the low-rank dimension (lowrank)")
    ap.add_argument("--encoder", default="minilm", help="minilm (default) or hashing")
    ap.add_argument("--format", default=None, help="input format if not inferred from the name")
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default=None, help="gloo or nccl (default: nccl when CUDA is available)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    from personalign.features import PairFeaturizer, get_encoder
    from personalign.models import make_model

    backend = a.backend or ("nccl" if torch.cuda.is_available() else "gloo")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    device = f"cuda:{local_rank}" if backend == "nccl" else "cpu"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        data = _read(a.data, a.format)
        model = make_model(
            a.model,
            rank=a.rank,
            featurizer=PairFeaturizer(get_encoder(a.encoder)),
            random_state=a.seed,
            max_iter=a.max_iter,
            verbose=not a.quiet,
        )
        if not isinstance(model, LinearGaussianModel):
            raise ConfigError(f"model {a.model!r} is not trained by the shared full-batch loop")
        ddp_fit(model, data, device=device)
        if rank == 0:
            model.save_pretrained(a.out)
            h = model.history_
            print(
                f"trained {type(model).__name__} on {model.n_train_} comparisons with {h['world_size']} process(es) "
                f"({backend}); final loss {h['train_loss'][-1]:.6f}; saved to {a.out}"
            )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _read(path: str, fmt: str | None) -> PreferenceData:
    p = Path(path)
    if p.is_dir() and (p / "population.parquet").is_file():
        from personalign.data.synthetic import read_population

        return read_population(p)[0]
    from personalign.data.io import read_data

    return read_data(p, format=fmt)


if __name__ == "__main__":
    sys.exit(main())
