"""The knobs of one evaluation run (:class:`EvalConfig`, recorded in results.json) and the default model list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from personalign.errors import ConfigError

BASE_MODELS = ("majority", "choix", "crowd", "bt", "group", "independent", "lowrank", "mixture")
CELLS = ("collaborative", "unseen_items")
TRANSFER_CELLS = ("transfer_seen",)


def default_models() -> tuple[str, ...]:
    """The default model list: the base models, the recommender baseline ``svd`` when scikit-surprise is installed
    and the ``hybrid`` model once ``personalign.models`` registers it."""
    models = list(BASE_MODELS)
    try:
        import surprise  # noqa: F401

        models.insert(3, "svd")
    except ImportError:  # an optional dependency: the baseline is simply not in the default list
        pass
    from personalign.models import registered

    if registered("hybrid") is not None:
        models.append("hybrid")
    return tuple(models)


@dataclass
class EvalConfig:
    """Every knob of one evaluation run (recorded in results.json); :meth:`check` says what is out of range."""

    models: Sequence[str] = field(default_factory=default_models)
    seeds: int = 5
    first_seed: int = 0
    ks: Sequence[int] = (0, 1, 2, 5, 10, 20, 50)
    unseen_user_frac: float = 0.2
    unseen_item_frac: float = 0.2
    collab_frac: float = 0.2
    max_train_pairs: int = 200
    max_test_pairs: int = 100
    max_persons: int | None = None
    active: bool = True
    active_max_k: int = 20
    group_col: str | None = None
    min_group_persons: int = 5
    unit: str | None = None
    rank: int = 8
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    harmless_pairs: int = 300
    harmless_persons: int = 50
    # personal-part selection for the models in ``tuned_models``, per seed, by log-loss on an inner split of the
    # training pairs grouped by item (prompt); see personalign.evaluate.tuning. () keeps a model's default.
    tune_l2_basis: tuple[float, ...] = (30.0, 300.0, 3000.0)
    tune_ranks: tuple[int, ...] = (0, 2)  # tried beside ``rank`` (ranks above ``rank`` are left out)
    tuned_models: tuple[str, ...] = ("lowrank", "hybrid")
    # the item prior's precision of a tuned model with item parameters (the hybrid), chosen first on a
    # collaborative inner split (personalign.evaluate.tuning.tune_item_prior); () keeps the model's default
    tune_l2_item: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"], d["ks"] = list(self.models), list(self.ks)
        return d

    def check(self) -> EvalConfig:
        """Raise ConfigError naming the first knob out of range (before any data is read or encoded)."""
        ints = {
            "seeds": (self.seeds, 1),
            "first_seed": (self.first_seed, 0),
            "max_train_pairs": (self.max_train_pairs, 1),
            "max_test_pairs": (self.max_test_pairs, 1),
            "rank": (self.rank, 0),
            "active_max_k": (self.active_max_k, 0),
            "min_group_persons": (self.min_group_persons, 1),
            "harmless_pairs": (self.harmless_pairs, 0),
            "harmless_persons": (self.harmless_persons, 1),
        }
        if self.max_persons is not None:
            ints["max_persons"] = (self.max_persons, 2)
        for name, (v, lo) in ints.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
        for name in ("unseen_user_frac", "unseen_item_frac", "collab_frac"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
                raise ConfigError(f"{name} must be a fraction in [0, 1), got {v!r}")
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in self.ks):
            raise ConfigError(f"k-shot sizes must be integers >= 0, got {list(self.ks)!r}")
        for name in ("tune_l2_basis", "tune_l2_item"):
            if any(not (float(x) > 0) for x in getattr(self, name)):
                raise ConfigError(f"{name} must hold positive numbers, got {list(getattr(self, name))!r}")
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in self.tune_ranks):
            raise ConfigError(f"tune_ranks must hold integers >= 0, got {list(self.tune_ranks)!r}")
        if self.unit not in (None, "item", "prompt"):
            raise ConfigError(f"unit must be 'item', 'prompt' or None, got {self.unit!r}")
        if not list(self.models):
            raise ConfigError("no models to evaluate")
        return self

    def rank_grid(self) -> list[int]:
        """The personal ranks tried for a tuned model: ``tune_ranks`` up to ``rank``, and ``rank``."""
        return sorted({int(r) for r in self.tune_ranks if r <= self.rank} | {int(self.rank)})
