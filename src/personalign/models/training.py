"""The one training loop: full-batch L-BFGS with early stopping, for every model, in one process or many.

Kept apart from the objectives as scikit-learn and choix keep the solver apart from the loss: a model builds an
objective (:mod:`personalign.models.objectives`) over its rows and parameters and hands it to :func:`fit_lbfgs`,
which owns the rounds, the early stopping on a validation objective, the tolerance stop and the best state.

Several processes (data parallel, e.g. launched by torchrun) are an option of the same loop: every process holds
all parameters and a shard of the rows, and an ``all_reduce`` hook sums the data term's gradient and value over
the processes (what DistributedDataParallel does), so every process takes the same steps and ends with the same
parameters. :func:`using_data_parallel` puts a :class:`DataParallel` in force for the fits it encloses (as
scikit-learn's ``parallel_backend``); models read it with :func:`data_parallel` to shard their rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from personalign.data.splits import split_by_items, split_judgments
from personalign.errors import ConfigError

AllReduce = Callable[[torch.Tensor], torch.Tensor]
"""Sums a tensor over the processes in place and returns it (``torch.distributed.all_reduce`` with SUM)."""

VALIDATION_SPLITS = ("judgments", "items")


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


@dataclass(frozen=True, repr=False)
class TrainingConfig:
    """How a model is trained (not what it is): the solver's and the validation split's options.

    Every model takes one as its ``training`` parameter (TRL's ``RewardConfig`` in spirit), so the options are
    declared once; ``GridSearchCV`` reaches them as ``training__max_iter`` and so on. Frozen: a changed copy is
    ``config.replace(max_iter=50)``.

    - ``max_iter``: L-BFGS iterations at most, in rounds of ``eval_every``; after each round the validation
      loss is measured, the best state kept, and training stops after ``patience`` rounds without improvement
      (never before ``min_rounds`` rounds: with many persons the validation loss can first rise while the
      personal weights fit a still-random basis, measured at 1M comparisons) or once the training loss changes
      by less than ``tol`` (relative).
    - ``validation_fraction`` of the judgments is held out for that (0: none), chosen per person
      (``validation_split="judgments"``) or by prompts/items (``"items"``: what matters for new items).
    - ``history_size``, ``grad_tol``, ``change_tol``: L-BFGS's memory and inner stopping tolerances.
    - ``chunk_rows``: rows per chunk of the gradient (memory, not results); ``verbose``: a progress bar.
    """

    max_iter: int = 300
    eval_every: int = 10
    patience: int = 3
    min_rounds: int = 10
    tol: float = 1e-6
    validation_fraction: float = 0.1
    validation_split: str = "judgments"
    history_size: int = 20
    grad_tol: float = 1e-9
    change_tol: float = 1e-12
    chunk_rows: int = 65536
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.validation_split not in VALIDATION_SPLITS:
            raise ConfigError(
                f"validation_split must be one of {VALIDATION_SPLITS}, got {self.validation_split!r}"
            )
        if not 0.0 <= float(self.validation_fraction) < 1.0:
            raise ConfigError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        for name in ("max_iter", "eval_every", "history_size", "chunk_rows"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"TrainingConfig.{name} must be at least 1, got {getattr(self, name)!r}")

    def __repr__(self) -> str:
        changed = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return f"TrainingConfig({', '.join(changed)})"

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with some options changed (ConfigError for an unknown name)."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; expected some of {self.field_names()}")
        return dataclasses.replace(self, **changes)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The options as a dict (scikit-learn's protocol, so ``training__max_iter`` is a grid parameter)."""
        return {f: getattr(self, f) for f in self.field_names()}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))


def hold_out(table: pd.DataFrame, options: TrainingConfig, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation rows of a judgments table, as ``options`` says (none below 20 rows)."""
    if options.validation_fraction > 0 and len(table) >= 20:
        split = split_by_items if options.validation_split == "items" else split_judgments
        return split(table, options.validation_fraction, seed=seed)
    return table, table.iloc[:0]


# ------------------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class DataParallel:
    """Which shard of the rows this process trains on, and how processes combine their sums.

    The default is one process (no hook). ``all_reduce`` sums a tensor over the processes in place;
    ``barrier`` waits for all of them.
    """

    rank: int = 0
    world: int = 1
    all_reduce: AllReduce | None = None
    barrier: Callable[[], None] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        """Row positions of this process among ``n`` rows (row i goes to process ``i % world``)."""
        return np.arange(self.rank, n, self.world)

    @contextlib.contextmanager
    def main_process_first(self) -> Iterator[None]:
        """The main process runs the block first (e.g. filling a feature cache), the others after it."""
        if self.barrier is not None and not self.is_main:
            self.barrier()
        yield
        if self.barrier is not None and self.is_main:
            self.barrier()


ONE_PROCESS = DataParallel()
_DATA_PARALLEL: ContextVar[DataParallel | None] = ContextVar("personalign_data_parallel", default=None)


def data_parallel() -> DataParallel:
    """The :class:`DataParallel` in force (one process unless :func:`using_data_parallel` says otherwise)."""
    return _DATA_PARALLEL.get() or ONE_PROCESS


@contextlib.contextmanager
def using_data_parallel(parallel: DataParallel) -> Iterator[DataParallel]:
    """Train every model fitted inside the block on this process's shard, combining through ``parallel``."""
    token = _DATA_PARALLEL.set(parallel)
    try:
        yield parallel
    finally:
        _DATA_PARALLEL.reset(token)


def process_options(options: TrainingConfig) -> TrainingConfig:
    """``options`` for this process: progress bars only on the main one."""
    return options if data_parallel().is_main or not options.verbose else options.replace(verbose=False)


# ------------------------------------------------------------------------------------------- the loop
class Objective(Protocol):
    """What :func:`fit_lbfgs` minimizes: ``(sum_i wt_i loss_i + penalty) / sum_i wt_i`` over a model's rows.

    ``weight`` is the summed row weight this objective holds; ``loss_backward(total, share)`` accumulates the
    gradient of ``(sum_i wt_i loss_i + share * penalty) / total`` into the parameters and returns its value
    (``share`` is this process's part of the penalty, 1 in one process); ``loss()`` is ``sum_i wt_i loss_i``
    without gradients (the validation criterion).
    """

    weight: float

    def loss_backward(self, total: float, share: float = 1.0) -> torch.Tensor: ...

    def loss(self) -> float: ...


def make_lbfgs(params: Sequence[torch.Tensor], options: TrainingConfig) -> torch.optim.LBFGS:
    """The L-BFGS optimizer of one round (``eval_every`` iterations, strong Wolfe line search)."""
    return torch.optim.LBFGS(
        list(params),
        lr=1.0,
        max_iter=options.eval_every,
        history_size=options.history_size,
        line_search_fn="strong_wolfe",
        tolerance_grad=options.grad_tol,
        tolerance_change=options.change_tol,
    )


def fit_lbfgs(
    objective: Objective,
    params: Sequence[torch.Tensor],
    validation: Objective | None = None,
    options: TrainingConfig | None = None,
    all_reduce: AllReduce | None = None,
    *,
    optimizer: torch.optim.LBFGS | None = None,
    desc: str = "training",
) -> dict[str, Any]:
    """Minimize ``objective`` over ``params`` by full-batch L-BFGS; early-stopped on ``validation``'s mean loss.

    Rounds of ``options.eval_every`` iterations, at most ``options.max_iter`` in all (see
    :class:`TrainingConfig`); the parameters of the best validation round, the starting point included, are
    restored at the end (``kept_start`` in the history: no round beat where the fit began).
    ``all_reduce`` (several processes) sums the data term's value and gradient over the processes;
    ``optimizer`` continues an earlier L-BFGS (its memory), e.g. across the M-steps of EM. Returns the history:
    ``train_loss`` and ``val_loss`` per round, ``start_val_loss``, ``best_val_loss``, ``kept_start``,
    ``stopped_early``, ``world_size``.
    torch's thread count is the caller's (the comparison models train inside :func:`torch_threads`; float sums,
    and so the last digits of a fit, depend on it).
    """
    options = options or TrainingConfig()
    params = list(params)
    world = 1 if all_reduce is None else int(round(_reduced(1.0, all_reduce)))
    total = _reduced(objective.weight, all_reduce)
    opt = optimizer if optimizer is not None else make_lbfgs(params, options)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective.loss_backward(total, 1.0 / world)
        if all_reduce is not None:
            _reduce_grads(params, all_reduce)
            loss = all_reduce(loss.detach().clone())
        return loss

    val_loss = None
    if validation is not None:
        vtotal = _reduced(validation.weight, all_reduce)
        if vtotal > 0:

            def val_loss() -> float:
                return _reduced(validation.loss(), all_reduce) / vtotal

    history = _rounds(opt, closure, val_loss, params, options, desc)
    history["world_size"] = world
    return history


def _rounds(
    opt: torch.optim.LBFGS,
    closure: Callable[[], torch.Tensor],
    val_loss: Callable[[], float] | None,
    params: list[torch.Tensor],
    options: TrainingConfig,
    desc: str,
) -> dict[str, Any]:
    """The rounds of :func:`fit_lbfgs`: step, validate, keep the best state, stop early; restore the best."""
    history: dict[str, Any] = {"train_loss": [], "val_loss": [], "stopped_early": False}
    best_loss, best_state, best_round, bad, prev = math.inf, None, None, 0, math.inf
    if val_loss is not None:
        # the starting point is a candidate too: a stage that starts from an earlier stage's fit (the hybrid's
        # item factors) must not end worse on held-out judgments than it began
        best_loss, best_state, best_round = val_loss(), [p.detach().clone() for p in params], -1
        history["start_val_loss"] = best_loss
    rounds = max(1, options.max_iter // options.eval_every)
    bar = None
    if options.verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=rounds, desc=desc, unit="round")
    for r in range(rounds):
        loss = float(opt.step(closure))
        history["train_loss"].append(loss)
        if val_loss is not None:
            vl = val_loss()
            history["val_loss"].append(vl)
            if vl < best_loss - 1e-6:
                best_loss, best_state, best_round, bad = vl, [p.detach().clone() for p in params], r, 0
            else:
                bad += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", val=f"{history['val_loss'][-1]:.4f}" if val_loss else "-")
        if val_loss is not None and bad >= options.patience and r + 1 >= options.min_rounds:
            history["stopped_early"] = True
            break
        if abs(prev - loss) < options.tol * max(1.0, abs(loss)):
            break
        prev = loss
    if bar is not None:
        bar.close()
    if best_state is not None:
        with torch.no_grad():
            for p, b in zip(params, best_state, strict=True):
                p.copy_(b)
    history["best_val_loss"] = best_loss if best_state is not None else None
    history["kept_start"] = best_round == -1  # no round beat the starting point
    return history


def _reduced(x: float, all_reduce: AllReduce | None) -> float:
    if all_reduce is None:
        return float(x)
    return float(all_reduce(torch.tensor(float(x), dtype=torch.float64)))


def _reduce_grads(params: list[torch.Tensor], all_reduce: AllReduce) -> None:
    """Sum every parameter's gradient over the processes in one flat message."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = all_reduce(torch.cat([g.reshape(-1) for g in grads]))
    pos = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[pos : pos + n].view_as(p).clone()
        pos += n
