"""Personalized reward models sharing one interface and one training loop.

Layout: :mod:`~personalign.models.estimator` (the contract every model keeps), :mod:`~.posterior` (a person's
Gaussian belief, Laplace), :mod:`~.objectives` and :mod:`~.training` (objectives and the one L-BFGS loop, data
parallel as an option), :mod:`~.artifacts` (model folders, the registry), :mod:`~.linear` (the linear-Gaussian
layer), the models (:mod:`~.bt`, :mod:`~.lowrank`, :mod:`~.mlp`, :mod:`~.context`, :mod:`~.hybrid`, :mod:`~.sideinfo`,
:mod:`~.mixture`, :mod:`~.pointwise`) and :mod:`~.selection` (scikit-learn model selection on PreferenceData).
"""

from __future__ import annotations

import os
from typing import Any

from personalign.errors import ConfigError
from personalign.models.artifacts import model_names, registered
from personalign.models.bt import AggregatedBT, GroupBT, IndependentBT
from personalign.models.context import ContextLowRankBT
from personalign.models.estimator import PersonalModel
from personalign.models.hybrid import HybridBT
from personalign.models.linear import LinearGaussianModel
from personalign.models.lowrank import LowRankBT
from personalign.models.mixture import MixtureBT
from personalign.models.mlp import MLPLowRankBT
from personalign.models.objectives import TrainArrays, item_keys
from personalign.models.pointwise import CrowdOffsetReference, OrdinalLowRank
from personalign.models.posterior import BatchedLaplace, Posterior, laplace_newton
from personalign.models.selection import JudgmentKFold, PreferenceSamples, per_person_accuracy_score
from personalign.models.sideinfo import SideInfoLowRankBT
from personalign.models.training import (
    DataParallel,
    TrainingConfig,
    data_parallel,
    fit_lbfgs,
    using_data_parallel,
)

MODEL_NAMES: dict[str, str] = {k: cls.__name__ for k, cls in model_names().items()}
"""Short name (and alias) -> class name of every registered model."""


def make_model(name: str, **kw: Any) -> PersonalModel:
    """A model by short name (``personalign.models.MODEL_NAMES``) or class name.

    ``rank=`` sets the personal dimension of models that have one (``n_classes`` of the mixture) and is dropped
    for the others; training options (``max_iter=``, ``verbose=``, ...) go into the ``training`` config.
    """
    cls = registered(name)
    if cls is None or not issubclass(cls, PersonalModel) or cls.__dict__.get("name") is None:
        raise ConfigError(f"unknown model {name!r} (expected one of {sorted(model_names(aliases=False))})")
    if "rank" in kw:
        rank = kw.pop("rank")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise ConfigError(f"rank must be an integer >= 0, got {rank!r}")
        if cls.rank_param is not None:
            kw.setdefault(cls.rank_param, rank)
    options = {k: kw.pop(k) for k in list(kw) if k in TrainingConfig.field_names()}
    model = cls(**kw)
    if options:
        model.training = model.training_config().replace(**options)
    return model


def load_model(directory: str | os.PathLike, **kw: Any) -> PersonalModel:
    """Load any saved model (a folder, or a Hub repository id ``owner/name``: see
    :meth:`PersonalModel.from_pretrained`), dispatching on ``config.json``'s ``model_class``."""
    return PersonalModel.from_pretrained(directory, **kw)


__all__ = [
    "AggregatedBT",
    "BatchedLaplace",
    "ContextLowRankBT",
    "CrowdOffsetReference",
    "DataParallel",
    "GroupBT",
    "HybridBT",
    "IndependentBT",
    "JudgmentKFold",
    "LinearGaussianModel",
    "LowRankBT",
    "MLPLowRankBT",
    "MODEL_NAMES",
    "MixtureBT",
    "OrdinalLowRank",
    "PersonalModel",
    "Posterior",
    "PreferenceSamples",
    "SideInfoLowRankBT",
    "TrainArrays",
    "TrainingConfig",
    "data_parallel",
    "fit_lbfgs",
    "item_keys",
    "laplace_newton",
    "load_model",
    "make_model",
    "model_names",
    "per_person_accuracy_score",
    "using_data_parallel",
]
