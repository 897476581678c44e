"""The test for personal structure: a planted rank-2 personal signal is detected, pure item + noise data is not."""

from __future__ import annotations

import numpy as np
import pytest

from personalign.audit.structure import permute_within_items, split_half_reliability, structure_test
from personalign.audit.table import Judgments, judgments_from_data


def synthetic_design(n_users: int = 300, n_items: int = 120, per_user: int = 24, seed: int = 0) -> Judgments:
    """A toxicity-like design: every person judges ``per_user`` random items."""
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(n_users), per_user)
    i = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    return Judgments(
        [f"u{k}" for k in range(n_users)],
        [f"i{k}" for k in range(n_items)],
        [""] * n_items,
        u,
        i,
        np.zeros(len(u)),
        "ratings",
        (-10.0, 10.0),
    )


@pytest.fixture(scope="module")
def design() -> Judgments:
    """The toxicity study's design (same persons, items and counts) when the real data is present."""
    import os
    from pathlib import Path

    root = Path(
        os.environ.get("PERSONALIGN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    path = root / "toxicity-perspective-prolific"
    if path.is_dir():
        from personalign.data.io import read_data

        return judgments_from_data(read_data(path, format="toxicity"))
    return synthetic_design()


def plant(j: Judgments, personal: float, seed: int) -> Judgments:
    """y = item effect + personal part (offset + rank-2 interaction, scaled by ``personal``) + noise."""
    rng = np.random.default_rng(seed)
    item = rng.normal(0, 1, len(j.items))
    off = rng.normal(0, 0.5, len(j.users))
    P, Q = rng.normal(0, 0.7, (len(j.users), 2)), rng.normal(0, 0.7, (len(j.items), 2))
    y = item[j.i] + personal * (off[j.u] + (P[j.u] * Q[j.i]).sum(1)) + rng.normal(0, 1, j.n)
    return Judgments(j.users, j.items, j.prompts, j.u, j.i, y, "ratings", (-10.0, 10.0))


def test_permutation_keeps_design_and_item_answers():
    j = plant(synthetic_design(50, 20, 8), 1.0, 0)
    y2 = permute_within_items(j, j.y, np.random.default_rng(1))
    assert not np.allclose(y2, j.y)
    for k in range(len(j.items)):
        assert np.allclose(np.sort(y2[j.i == k]), np.sort(j.y[j.i == k]))


def test_planted_signal_is_detected(design):
    res = structure_test(plant(design, 1.0, seed=3), n_permutations=19, seed=0)
    assert res["verdict"] != "none detected"
    assert res["p_value"] == pytest.approx(0.05)  # the smallest p-value 19 permutations allow
    assert res["effect_size"] > 0.05
    assert res["reliability"]["spearman_brown"] > 0.5 > res["reliability"]["spearman_brown_null_mean"]


def test_no_signal_is_mostly_not_detected(design):
    verdicts = [
        structure_test(plant(design, 0.0, seed=s), n_permutations=19, n_folds=3, seed=s)["verdict"]
        for s in range(5)
    ]
    assert verdicts.count("none detected") >= 4, verdicts


def test_split_half_reliability_tracks_offsets():
    j = synthetic_design(200, 60, 20, seed=1)
    rng = np.random.default_rng(0)
    # offsets only: reliability grows with their size
    rels = []
    for sd in (0.0, 0.5, 2.0):
        off = rng.normal(0, sd, len(j.users))
        y = off[j.u] + rng.normal(0, 1, j.n)
        rels.append(split_half_reliability(j, y)["spearman_brown"])
    assert rels[0] < 0.2 < rels[1] < rels[2]


def _planted_recovery(j: Judgments, seed: int = 3) -> tuple[float, float]:
    """(gain the planted truth allows, held-out gain the person-effect model recovers), both as
    1 - SSE(item + personal part) / SSE(item alone): the truth with its true parts, the model cross-validated."""
    from personalign.audit.structure import PersonEffectModel, cv_gain

    rng = np.random.default_rng(seed)
    item = rng.normal(0, 1, len(j.items))
    off = rng.normal(0, 0.5, len(j.users))
    P, Q = rng.normal(0, 0.7, (len(j.users), 2)), rng.normal(0, 0.7, (len(j.items), 2))
    personal = off[j.u] + (P[j.u] * Q[j.i]).sum(1)
    y = item[j.i] + personal + rng.normal(0, 1, j.n)
    truth = 1 - ((y - item[j.i] - personal) ** 2).sum() / ((y - item[j.i]) ** 2).sum()
    folds = np.random.default_rng(0).integers(0, 5, j.n)
    model = cv_gain(j, y, folds, PersonEffectModel(rank=2, l2_factor=3.0, n_iter=20))
    return float(truth), float(model)


def test_models_recover_the_planted_gain_the_design_allows(design):
    """Rank-2 signal + offsets planted into the real design: with ~24 judgments per person (toxicity) the model
    recovers about two thirds of the truth's gain (measured 0.66-0.76 over seeds); with 100 judgments per person
    it recovers over 90%. The shortfall is the design's (few judgments per person), not the detector's."""
    truth, model = _planted_recovery(design)
    assert model / truth > 0.55, (truth, model)
    dense = synthetic_design(300, 120, 100, seed=0)
    truth, model = _planted_recovery(dense)
    assert model / truth >= 0.90, (truth, model)
