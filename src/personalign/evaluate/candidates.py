"""The models an evaluation compares: personalign's registered models, item-level baselines, the true-reward oracle.

A name is a baseline of :mod:`personalign.evaluate.baselines` (``majority``, ``choix``, ``crowd``, ``svd``),
``oracle`` (synthetic data only) or any model ``personalign.models`` registers (``bt``, ``lowrank``, ``hybrid``, ...).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

import personalign.evaluate.metrics as M
from personalign.data.core import PreferenceData
from personalign.errors import ConfigError
from personalign.evaluate.baselines import BASELINES, POINTWISE_ONLY
from personalign.evaluate.config import EvalConfig


class TrueRewardOracle:
    """Synthetic data only: P(chosen > rejected) under each person's true reward (the best any model can do)."""

    personal = True
    name = "oracle"

    def __init__(self, truth: Any) -> None:
        self.truth = truth

    def fit(self, *args: Any, **kw: Any) -> TrueRewardOracle:
        return self

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        u = pairs["user_id"].to_numpy()
        return self.truth.preference_prob(u, pairs["chosen_id"].to_numpy(), pairs["rejected_id"].to_numpy())

    def collapsed(self) -> TrueRewardOracle:
        return self


def is_text_model(name: str) -> bool:
    """A model of ``personalign.models`` (text features, adapt, score), not a baseline or the oracle."""
    if name in BASELINES or name == "oracle":
        return False
    from personalign.models import registered

    return registered(name) is not None


def build_model(
    name: str, featurizer: Any, seed: int, cfg: EvalConfig, data: PreferenceData, **params: Any
) -> Any:
    """A fresh, unfitted model (text model from personalign.models, or a baseline) for one seed; ``params``
    override the configured ones (``rank=``, ``l2_basis=``, ...)."""
    if name == "svd":
        return BASELINES[name](n_factors=max(cfg.rank, 1), random_state=seed)
    if name in BASELINES:
        return BASELINES[name]()
    if name == "oracle":
        return TrueRewardOracle(data.meta["truth"])
    from personalign.models import make_model, registered

    kw: dict[str, Any] = {"featurizer": featurizer, "random_state": seed, "rank": cfg.rank}
    if not getattr(registered(name), "validates_on_judgments", False):
        # early stopping and the prior's scale are tuned on held-out items, as every tuning split here is:
        # held-out judgments of seen items would reward a personal part that only memorizes its items
        kw["validation_split"] = "items"
    if name == "group":
        kw["group_col"] = cfg.group_col
    kw.update(cfg.model_params.get(name, {}))
    kw.update(params)
    return make_model(name, **kw)


def is_personal(model: Any) -> bool:
    if hasattr(model, "personal"):
        return bool(model.personal)
    return getattr(model, "K_", 0) > 0


def default_group_col(data: PreferenceData) -> str | None:
    """The demographic column GroupBT uses by default: the first with 2-12 values, each held by >= 5 persons."""
    side = data.meta.get("side_information_columns")
    for c in side if side else M.group_columns(data.users, 12):
        if c not in data.users.columns:
            continue
        vc = data.users[c].dropna().astype(str).value_counts()
        if 2 <= len(vc) <= 12 and (vc >= 5).sum() >= 2:
            return c
    return None


def available_models(cfg: EvalConfig, data: PreferenceData) -> tuple[tuple[str, ...], dict[str, str]]:
    """The models of ``cfg`` that can run on ``data``, and why each other one was left out.

    GroupBT needs a demographic column (it picks one); ``svd`` needs ratings or votes; unknown names are a
    ConfigError; a model that cannot be built in this version is left out with a warning.
    """
    skipped: dict[str, str] = {}
    if "group" in cfg.models and cfg.group_col is None:
        cfg.group_col = default_group_col(data)
        if cfg.group_col is None:
            warnings.warn("no demographic column for GroupBT: it is left out", stacklevel=3)
            skipped["group"] = "skipped: no demographic column with 2-12 values held by >= 5 persons each"
    unknown = [m for m in cfg.models if m not in BASELINES and m != "oracle" and not is_text_model(m)]
    if unknown:
        from personalign.models import MODEL_NAMES

        raise ConfigError(
            f"unknown model(s) {unknown}; expected some of {sorted(set(BASELINES) | set(MODEL_NAMES))}"
        )
    pointwise = len(data.pointwise(passes=False)) > 0
    avail = []
    for m in cfg.models:
        if m in skipped:
            continue
        if m in POINTWISE_ONLY and not pointwise:
            skipped[m] = POINTWISE_ONLY[m]
            continue
        if m == "svd":
            try:
                import surprise  # noqa: F401
            except ImportError:
                skipped[m] = "skipped: scikit-surprise is not installed (pip install scikit-surprise)"
                continue
        if is_text_model(m):
            try:
                from personalign.models import make_model

                make_model(m)
            except Exception as exc:  # a model that cannot be built here: reported, not fatal
                warnings.warn(f"the {m} model is not available: left out ({exc})", stacklevel=3)
                skipped[m] = f"skipped: cannot be built ({exc})"
                continue
        avail.append(m)
    return tuple(avail), skipped
