"""Multi-process (data-parallel) training under torchrun: gloo on CPU, nccl on GPU.

Every model trains through one loop, :func:`personalign.models.training.fit_lbfgs`; several processes are an option
of it. This module sets up the process group, and :func:`ddp_fit` runs the model's own ``fit`` (its validation
split, its side information, domains or EM) with this process's shard of the rows in force: each process holds all
parameters and the rows ``i % world == rank``, and an all-reduce hook sums the data term's value and gradient over
the processes (what DistributedDataParallel does), so the loss L-BFGS's line search sees and the steps it takes
are the same on every process and all end with the same parameters. What follows the L-BFGS fit (empirical Bayes,
E-steps) runs on every process over all rows. Rank 0 saves the model.

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
from typing import TypeVar

import torch
import torch.distributed as dist

from personalign.data.core import PreferenceData
from personalign.models import PersonalModel, make_model, model_names
from personalign.models.training import DataParallel, using_data_parallel

M = TypeVar("M", bound=PersonalModel)


def process_group_parallel() -> DataParallel:
    """The :class:`DataParallel` of the initialized process group (one process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DataParallel()
    nccl = dist.get_backend() == "nccl"
    comm = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def all_reduce(t: torch.Tensor) -> torch.Tensor:
        x = t.to(comm)  # nccl sums CUDA tensors; the training itself stays where the tensors are
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        if x is not t:
            t.copy_(x)
        return t

    return DataParallel(dist.get_rank(), dist.get_world_size(), all_reduce, dist.barrier)


def ddp_fit(model: M, data: PreferenceData, val_data: PreferenceData | None = None) -> M:
    """``model.fit(data, val_data)`` on this process's shard, combined over the process group (world 1: fit)."""
    with using_data_parallel(process_group_parallel()):
        return model.fit(data, val_data)


def init_process_group(backend: str | None = None) -> str:
    """Join torchrun's process group (from its environment) when there are several processes; the backend."""
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return backend


# ------------------------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc_per_node N -m personalign.integrations.distributed DATA --out DIR [...]``."""
    names = sorted(model_names(aliases=False))
    ap = argparse.ArgumentParser(
        prog="python -m personalign.integrations.distributed",
        description="Train a personalign model on several processes (launch with torchrun).",
    )
    ap.add_argument("data", help="preference data (any format personalign reads, or a `data synth` folder)")
    ap.add_argument("--out", required=True, help="folder for the trained model (written by rank 0)")
    ap.add_argument("--model", default="lowrank", choices=names, help="the model (default lowrank)")
    ap.add_argument(
        "--rank", type=int, default=8, help="K, the personal dimension (or the mixture's classes)"
    )
    ap.add_argument("--encoder", default="minilm", help="minilm (default) or hashing")
    ap.add_argument("--format", default=None, help="input format if not inferred from the name")
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default=None, help="gloo or nccl (default: nccl when CUDA is available)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    from personalign.features import PairFeaturizer, get_encoder

    backend = init_process_group(a.backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        model = make_model(
            a.model,
            rank=a.rank,
            featurizer=PairFeaturizer(get_encoder(a.encoder)),
            random_state=a.seed,
            max_iter=a.max_iter,
            verbose=not a.quiet,
        )
        ddp_fit(model, _read(a.data, a.format))
        if rank == 0:
            model.save_pretrained(a.out)
            h = model.history_
            print(
                f"trained {type(model).__name__} on {model.n_train_} judgments with {h['world_size']} process(es) "
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
