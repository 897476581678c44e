"""Personalized reward models sharing one interface (see :mod:`personalign.models.base`)."""

from __future__ import annotations

import inspect
import os
from typing import Any

from personalign.errors import ConfigError
from personalign.models.base import (
    LinearGaussianModel,
    PersonalModel,
    Posterior,
    TrainArrays,
    batched_laplace,
    laplace_newton,
    read_config,
    registered,
)
from personalign.models.bt import AggregatedBT, GroupBT, IndependentBT
from personalign.models.context import ContextLowRankBT
from personalign.models.lowrank import LowRankBT
from personalign.models.mixture import MixtureBT  # variants (helper-owned files)
from personalign.models.mlp import MLPLowRankBT
from personalign.models.pointwise import CrowdOffsetReference, OrdinalLowRank
from personalign.models.sideinfo import SideInfoLowRankBT

MODEL_NAMES: dict[str, str] = {
    "bt": "AggregatedBT",
    "aggregated": "AggregatedBT",
    "group": "GroupBT",
    "independent": "IndependentBT",
    "lowrank": "LowRankBT",
    "mixture": "MixtureBT",
    "sideinfo": "SideInfoLowRankBT",
    "lowrank-side": "SideInfoLowRankBT",
    "context": "ContextLowRankBT",
    "mlp": "MLPLowRankBT",
    "ordinal": "OrdinalLowRank",
}


def make_model(name: str, **kw: Any) -> PersonalModel:
    """A model by short name: bt, group, independent, lowrank, mixture (``rank=`` is accepted by lowrank)."""
    key = name.lower()
    cls_name = MODEL_NAMES.get(key, name)
    if cls_name == "MixtureBT" and registered("MixtureBT") is None:
        try:
            import personalign.models.mixture  # noqa: F401
        except ModuleNotFoundError as exc:
            raise ConfigError("the mixture model is not available in this version") from exc
    cls = registered(cls_name)
    if cls is None:
        raise ConfigError(
            f"unknown model {name!r} (expected one of {sorted(set(MODEL_NAMES) - {'aggregated'})})"
        )
    if "rank" in kw and "rank" not in inspect.signature(cls.__init__).parameters:
        kw.pop("rank")
    return cls(**kw)


def load_model(directory: str | os.PathLike, **kw: Any) -> PersonalModel:
    """Load any saved model, dispatching on ``config.json``'s ``model_class``."""
    cfg = read_config(directory)
    name = cfg.get("model_class")
    if registered(name) is None and name == "MixtureBT":
        import personalign.models.mixture  # noqa: F401
    return LinearGaussianModel.from_pretrained(directory, **kw)


__all__ = [
    "AggregatedBT",
    "ContextLowRankBT",
    "GroupBT",
    "IndependentBT",
    "LinearGaussianModel",
    "LowRankBT",
    "MLPLowRankBT",
    "MODEL_NAMES",
    "MixtureBT",
    "OrdinalLowRank",
    "CrowdOffsetReference",
    "PersonalModel",
    "Posterior",
    "SideInfoLowRankBT",
    "TrainArrays",
    "batched_laplace",
    "laplace_newton",
    "load_model",
    "make_model",
]
