"""The estimator contract every personalign model keeps, in scikit-learn's conventions.

Hyper-parameters are ``__init__`` arguments stored unchanged (``get_params``/``set_params``/``clone`` work, so do
``GridSearchCV`` and pipelines); ``fit(data)`` returns self; fitted attributes end in ``_``; ``score``,
``predict_proba`` and friends serve the population to persons the model does not know, with a warning that names
them (or a DataError with ``strict=True``); ``save_pretrained``/``from_pretrained`` write and read a model folder
(:mod:`personalign.models.artifacts`).

A subclass declares its own parameters and passes the rest on (``**kw``) to its base, so every parameter is
declared once; ``get_params`` follows that chain (as XGBoost's scikit-learn classes do). The training options are
one parameter, ``training`` (:class:`~personalign.models.training.TrainingConfig`), reached by
``training__max_iter`` and so on.
"""

from __future__ import annotations

import copy
import inspect
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.base import clone as sk_clone

from personalign.data.core import POPULATION_USER
from personalign.errors import ConfigError, DataError, NotFittedError
from personalign.features.pairs import PairFeaturizer
from personalign.models import artifacts
from personalign.models.posterior import Posterior
from personalign.models.training import TrainingConfig

DEFAULT_TRAINING = TrainingConfig()


class PersonalModel(BaseEstimator):
    """Base of every model: parameters, persons, artifacts (see the module docstring).

    Class attributes: ``name`` (short name for ``make_model`` and the CLI; None for an abstract base),
    ``aliases``, ``rank_param`` (the parameter that sets the personal dimension, None if there is none) and
    ``predicts_pairs`` (``predict_proba`` gives P(chosen > rejected) of a comparisons table) and
    ``validates_on_judgments`` (its validation rows must be held-out judgments, never held-out items: it learns
    parameters per item, which an item missing from training would lack).
    """

    name: ClassVar[str | None] = None
    aliases: ClassVar[tuple[str, ...]] = ()
    rank_param: ClassVar[str | None] = None
    predicts_pairs: ClassVar[bool] = True
    validates_on_judgments: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        artifacts.register(cls)

    def __init__(
        self,
        featurizer: PairFeaturizer | None = None,
        *,
        random_state: int = 0,
        training: TrainingConfig = DEFAULT_TRAINING,
    ) -> None:
        self.featurizer, self.random_state, self.training = featurizer, random_state, training

    # ------------------------------------------------------------------ parameters
    @classmethod
    def constructor_params(cls) -> dict[str, inspect.Parameter]:
        """Every constructor parameter, following ``**kw`` from a class's ``__init__`` to its base's."""
        out: dict[str, inspect.Parameter] = {}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            forwards = False
            for p in inspect.signature(init).parameters.values():
                if p.kind is p.VAR_KEYWORD:
                    forwards = True
                elif p.name != "self" and p.kind is not p.VAR_POSITIONAL:
                    out.setdefault(p.name, p)
            if not forwards:
                break
        return out

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters by name; with ``deep``, the training options as ``training__<option>`` too."""
        out: dict[str, Any] = {}
        for k in self.constructor_params():
            v = getattr(self, k)
            out[k] = v
            if deep and hasattr(v, "get_params") and not isinstance(v, type):
                out.update({f"{k}__{sk}": sv for sk, sv in v.get_params().items()})
        return out

    def set_params(self, **params: Any) -> PersonalModel:
        """Set parameters by name (``training__max_iter=50`` replaces the training options with a changed copy)."""
        names = self.constructor_params()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            head, _, sub = key.partition("__")
            if head not in names:
                raise ConfigError(
                    f"invalid parameter {head!r} for {type(self).__name__}; expected one of {sorted(names)}"
                )
            if sub:
                nested.setdefault(head, {})[sub] = value
            else:
                setattr(self, head, value)
        for head, sub in nested.items():
            current = getattr(self, head)
            if head == "training" and current is None:
                current = self.training_config()
            if hasattr(current, "replace"):
                setattr(self, head, current.replace(**sub))
            elif hasattr(current, "set_params"):
                current.set_params(**sub)
            else:
                raise ConfigError(
                    f"parameter {head!r} of {type(self).__name__} has no parameters {sorted(sub)}"
                )
        return self

    def training_config(self) -> TrainingConfig:
        """The training options in force (``training``, or the class's default when it is None)."""
        t = getattr(self, "training", None)
        if t is None:
            default = self.constructor_params().get("training")
            t = default.default if default is not None and default.default is not None else DEFAULT_TRAINING
        if not isinstance(t, TrainingConfig):
            raise ConfigError(f"training must be a TrainingConfig, got {type(t).__name__}")
        return t

    def __sklearn_clone__(self) -> PersonalModel:
        # the featurizer (an encoder, maybe its cache) and the frozen training options are shared, not copied
        shared = ("featurizer", "training")
        params = {
            k: v if k in shared else sk_clone(v, safe=False) for k, v in self.get_params(deep=False).items()
        }
        return type(self)(**params)

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        shown = []
        for k, p in self.constructor_params().items():
            v = getattr(self, k)
            default = p.default
            if default is not inspect.Parameter.empty and _same(v, default):
                continue
            shown.append(f"{k}={_short_repr(v)}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # ------------------------------------------------------------------ fitted state
    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(data) first")

    def _featurizer(self) -> PairFeaturizer:
        """The featurizer in use: fixed at fit (or load) as ``featurizer_``; the parameter, or the default."""
        f = getattr(self, "featurizer_", None)
        if f is None:
            f = self.featurizer_ = self.featurizer if self.featurizer is not None else PairFeaturizer()
        return f

    def _start_fit(self) -> None:
        """Forget an earlier fit's featurizer choice (the parameter may have changed)."""
        self.featurizer_ = self.featurizer if self.featurizer is not None else PairFeaturizer()

    def _copy(self) -> PersonalModel:
        """A deep copy that shares the featurizer (its encoder is not state of the fit)."""
        memo = {id(f): f for f in (self.featurizer, getattr(self, "featurizer_", None)) if f is not None}
        return copy.deepcopy(self, memo)

    # ------------------------------------------------------------------ persons
    def _has_personal_part(self) -> bool:
        """Whether persons get parameters of their own (override; a model without them knows nobody apart)."""
        return True

    def unknown_persons(self, users: str | Iterable[str]) -> list[str]:
        """Person ids among ``users`` the model has no parameters for (the population id is not unknown)."""
        self._check_fitted()
        if not self._has_personal_part():
            return []
        users = [users] if isinstance(users, str) else users
        known, added = getattr(self, "user_units_", {}), getattr(self, "added_", {})
        uniq = pd.unique(np.asarray([str(u) for u in users], dtype=object))
        return sorted(u for u in uniq if u != POPULATION_USER and u not in known and u not in added)

    def _check_persons(self, users: str | Iterable[str], strict: bool, stacklevel: int = 3) -> None:
        """Warn once per call about unknown persons (they get the population), or raise with ``strict``."""
        unknown = self.unknown_persons(users)
        if not unknown:
            return
        shown = ", ".join(repr(u) for u in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        msg = (
            f"{type(self).__name__} does not know the person(s) {shown}: they are served the population's "
            "reward (a new person: adapt() and add_user())"
        )
        if strict:
            raise DataError(msg, field="user_id", expected="persons the model was trained on or added")
        warnings.warn(msg + "; pass strict=True to raise instead", UserWarning, stacklevel=stacklevel)

    def score(
        self,
        users: str | Sequence[str],
        prompts: str | Sequence[str],
        responses: Sequence[str] | str,
        *,
        strict: bool = False,
    ) -> np.ndarray:
        """Rewards per row (a single user or prompt is broadcast); persons the model does not know are served
        the population, with a warning naming them (a DataError with ``strict``)."""
        self._check_fitted()
        responses = as_list(responses)
        users = as_list(users, len(responses))
        if len(users) != len(responses):
            raise DataError(
                f"{len(users)} users for {len(responses)} responses",
                field="user_id",
                expected="one per response",
            )
        self._check_persons(users, strict)
        return self._score(users, prompts, responses)

    def _score(self, users: list[str], prompts: str | Sequence[str], responses: list[str]) -> np.ndarray:
        raise NotImplementedError

    def prior(self, user_row: dict | None = None) -> Posterior:
        """The population prior over a person's parameters (with side information, the prior of a person with
        this users-table row)."""
        raise NotImplementedError

    def _unit_posterior(self, j: int) -> Posterior:
        raise NotImplementedError

    def posterior(self, user_id: str) -> Posterior:
        """A trained (or added) person's posterior; the prior for an unknown person."""
        self._check_fitted()
        uid = str(user_id)
        if uid in self.added_:
            return self.added_[uid]
        j = self.user_units_.get(uid, -1)
        return self.prior() if j < 0 else self._unit_posterior(j)

    def add_user(self, user_id: str, posterior: Posterior) -> None:
        """Register an adapted person so that ``score`` and friends use their posterior."""
        self._check_fitted()
        dim = self.prior().dim
        if posterior.dim != dim:
            raise ConfigError(f"posterior has {posterior.dim} dims, the model {dim}")
        self.added_[str(user_id)] = posterior

    def adapt(
        self, examples: pd.DataFrame, prior: Posterior | None = None, user_row: dict | None = None
    ) -> Posterior:
        """Posterior of a new person from k judgments, the shared part frozen (k = 0: the prior itself).

        ``prior``: start from this belief (default: the population prior, or the one for ``user_row``).
        """
        self._check_fitted()
        prior = prior if prior is not None else self.prior(user_row)
        if examples is None or len(examples) == 0:
            return Posterior(prior.mean.copy(), prior.cov.copy(), prior.n)
        return self._adapt(examples, prior)

    def _adapt(self, examples: pd.DataFrame, prior: Posterior) -> Posterior:
        raise NotImplementedError

    def update(self, posterior: Posterior, examples: pd.DataFrame) -> Posterior:
        """Fold new judgment(s) into a posterior (pure: the model is not changed)."""
        return self.adapt(examples, prior=posterior)

    # ------------------------------------------------------------------ artifacts (override the parts)
    def _tensors(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _artifact_config(self) -> dict[str, Any]:
        return {}

    def _load_tensors(self, t: dict[str, np.ndarray], cfg: dict[str, Any], d: Path) -> None:
        raise NotImplementedError

    def _record_training_data(self, data: Any) -> None:
        """Keep the size and content hash of the data a fit is given (``training_data_``: model card, manifest)."""
        from personalign.data.manifest import data_summary

        self.training_data_ = data_summary(data)

    def save_pretrained(
        self, directory: str | os.PathLike, *, policy: Any = None, repo_id: str | None = None
    ) -> Path:
        """Write ``model.safetensors``, ``config.json``, the model card ``README.md`` and ``manifest.json`` into
        ``directory`` (atomically: temp folder, rename). ``policy`` (a bounds Policy or BoundedPolicy) is the one
        the card names as in force; without it the card says that none is attached."""
        from personalign.data.files import dumps_json
        from personalign.data.manifest import MANIFEST_FILE, build_manifest
        from personalign.models.card import CARD_FILE, render_card

        self._check_fitted()
        params = artifacts.params_to_config(self.get_params(deep=False))
        featurizer = self._featurizer().config()
        data = getattr(self, "training_data_", None)
        cfg = {
            "model_class": type(self).__name__,
            "params": params,
            "featurizer": featurizer,
            **({"training_data": data} if data else {}),
            **self._artifact_config(),
        }
        manifest = build_manifest(
            kind="model",
            seeds=getattr(self, "random_state", None),
            data=data,
            extra={"model_class": cfg["model_class"]},
        )
        card = render_card(
            model_class=type(self).__name__,
            short_name=type(self).__dict__.get("name"),
            params=params,
            featurizer=featurizer,
            personal_dims=int(self.prior().dim),
            persons=list(getattr(self, "units_", []) if self._has_personal_part() else []),
            history=getattr(self, "history_", None),
            manifest=manifest,
            policy=policy,
            repo_id=repo_id,
        )
        files = {CARD_FILE: card, MANIFEST_FILE: dumps_json(manifest) + "\n"}
        return artifacts.write_model_folder(directory, self._tensors(), cfg, files=files)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        hub_dir: str | os.PathLike | None = None,
        policy: Any = None,
        token: str | bool | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload personalign model",
    ) -> str:
        """Publish the model as the repository ``repo_id`` (``owner/name``): to the Hugging Face Hub, or into a
        local hub folder (``hub_dir``, or ``$PERSONALIGN_HUB_DIR``) of repositories in the Hub's layout. Returns
        the repository's URL or folder. See :mod:`personalign.models.hub`."""
        from personalign.models import hub

        self._check_fitted()
        return hub.push(
            lambda folder: self.save_pretrained(folder, policy=policy, repo_id=repo_id),
            repo_id,
            hub=hub_dir,
            token=token,
            private=private,
            revision=revision,
            commit_message=commit_message,
        )

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        featurizer: PairFeaturizer | None = None,
        *,
        hub_dir: str | os.PathLike | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
    ) -> PersonalModel:
        """Load a saved model from a folder or a Hub repository id ``owner/name`` (the local hub ``hub_dir`` /
        ``$PERSONALIGN_HUB_DIR``, else the Hugging Face Hub); ConfigError when there is none, or when the artifact
        does not match this class or its own config."""
        from personalign.models import hub

        d = hub.resolve(
            directory, hub=hub_dir, revision=revision, token=token, local_files_only=local_files_only
        )
        cfg = artifacts.read_config(d)
        name = cfg.get("model_class")
        klass = artifacts.registered(name)
        if klass is None or klass.__name__ != name:
            raise ConfigError(f"{d / 'config.json'}: unknown model_class {name!r}")
        if not issubclass(klass, cls):
            raise ConfigError(f"{d}: holds a {name}, not a {cls.__name__}")
        default = klass.constructor_params().get("training")
        try:
            params = artifacts.params_from_config(cfg.get("params", {}), default.default or DEFAULT_TRAINING)
            model = klass(**params)
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"{d / 'config.json'}: parameters do not match {name}: {exc}") from exc
        fcfg = cfg.get("featurizer", {})
        if featurizer is None:
            featurizer = PairFeaturizer.from_config(fcfg)
        featurizer.compatible_with(fcfg)
        model.featurizer = model.featurizer_ = featurizer
        model._load_tensors(artifacts.read_tensors(d), cfg, d)
        if cfg.get("training_data"):
            model.training_data_ = cfg["training_data"]
        return model


def as_list(x: str | Iterable[str], n: int | None = None) -> list[str]:
    """A list of strings; a single string is repeated ``n`` times (once by default)."""
    if isinstance(x, str):
        return [x] * (n if n is not None else 1)
    return [str(v) for v in x]


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a is b or (type(a) is type(b) and a == b))
    except (TypeError, ValueError):  # arrays and the like
        return False


def _short_repr(v: Any) -> str:
    if type(v).__repr__ is object.__repr__:
        return f"{type(v).__name__}(...)"
    return repr(v)
