"""Fit every registered model class on this process's shard (run under torchrun) and save each from rank 0.

    torchrun --nproc_per_node 2 tests/_ddp_worker.py OUT

The test that launches it (tests/test_integrations_ddp.py) fits the same models in one process and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist

from personalign.data.synthetic import generate_population, sample_ratings
from personalign.features import HashingEncoder, PairFeaturizer
from personalign.integrations.distributed import ddp_fit, init_process_group
from personalign.models import PersonalModel, make_model, model_names

# constructor arguments beyond the shared ones, per model (what each needs from the data, and a small size).
# The mixture and the MLP get penalties that make their fits well posed: with their defaults (l2_mean 1e-3) on
# sparse hashed features the objective is nearly flat in many directions, and float noise of the summation order
# alone (the same rows in another order, in one process) moves where L-BFGS stops along them.
WELL_POSED = {"l2_mean": 1.0, "l2_basis": 1.0}
EXTRA: dict[str, dict] = {
    "group": {"group_col": "age_band"},
    # with l2_mlp 1 the MLP overfits from its first round and the two summation orders part ways there (0.05 in
    # validation loss on some machines): a firm residual penalty keeps the comparison about the all-reduce
    "mlp": {"hidden": 8, "l2_mlp": 30.0, "l2_mean": 30.0, "l2_basis": 30.0},
    "mixture": {"em_iters": 10, **WELL_POSED},
    # one bias and K factors per item, each resting on a few judgments: a firmer item prior keeps it well posed
    "hybrid": {"l2_item": 100.0, "l2_item_factors": 100.0},
}


def datasets():
    data = generate_population(persons=40, comparisons_per_person=30, seed=3)
    return data, sample_ratings(data, 15, seed=2)


def build(name: str) -> PersonalModel:
    return make_model(
        name,
        rank=3,
        featurizer=PairFeaturizer(HashingEncoder(256)),
        random_state=0,
        max_iter=100,  # into each model's own training config
        **EXTRA.get(name, {}),
    )


def fit_one(name: str, fit=None) -> PersonalModel:
    data, ratings = datasets()
    model = build(name)
    fit = fit or (lambda m, d: m.fit(d))
    return fit(model, ratings if name == "ordinal" else data)


def main(out: str) -> int:
    init_process_group("gloo")
    try:
        for name in sorted(model_names(aliases=False)):
            model = fit_one(name, ddp_fit)
            if dist.get_rank() == 0:
                model.save_pretrained(Path(out) / name)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
