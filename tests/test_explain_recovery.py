"""On the synthetic population the explanation's named directions recover the planted value profiles (issue 17),
and a model whose basis is shuffled does not."""

from __future__ import annotations

import numpy as np
import pytest

from personalign.data.synthetic import STYLE, generate_population
from personalign.experiments.recovery import match_profiles, recovery
from personalign.features import HashingEncoder, PairFeaturizer
from personalign.models import LowRankBT, TrainingConfig


@pytest.fixture(scope="module")
def result() -> dict:
    # benchmarks/explain_recovery.py --seeds 0 reports the same figures
    data = generate_population(persons=200, comparisons_per_person=40, n_prompts=8, seed=0)
    model = LowRankBT(
        rank=4,
        featurizer=PairFeaturizer(HashingEncoder(dim=256, seed=0)),
        training=TrainingConfig(max_iter=150),
        random_state=0,
    ).fit(data)
    return recovery(model, data, seed=0)


def test_each_planted_profile_is_matched_by_a_direction_end(result):
    found, control = result["model"]["profiles"], result["shuffled"]["profiles"]
    assert {m["profile"] for m in found} == {"pragmatist", "companion", "scholar", "entertainer"}
    assert min(m["cosine"] for m in found) > 0.7
    assert sum(m["top_match"] for m in found) >= 3  # the end's two strongest attributes are the profile's
    assert np.mean([m["cosine"] for m in found]) > np.mean([m["cosine"] for m in control]) + 0.2


def test_directions_correlate_with_the_true_attributes_far_more_than_random_ones(result):
    best, control = result["model"]["best_abs_corr"], result["shuffled"]["best_abs_corr"]
    assert set(best) == set(STYLE)
    assert np.mean(list(best.values())) > 2 * np.mean(list(control.values()))
    assert sum(best[a] > control[a] for a in STYLE) >= 5


def test_match_profiles_finds_a_planted_direction_at_either_end():
    profiles = np.eye(len(STYLE))[:3] * 3.0  # detail-, formality- and warmth-lovers (centred: contrasts)
    C = np.zeros((3, len(STYLE)))
    C[0, 1], C[1, 0], C[2, 2] = -0.9, 0.8, 0.7  # formality at the - end of direction 0, ...
    got = match_profiles(C, profiles, ["detail", "formal", "warm"])
    assert [(m["direction"], m["end"]) for m in got] == [(1, "+"), (0, "-"), (2, "+")]
    assert [m["direction_top"][0] for m in got] == ["detail", "formality", "warmth"]
    assert all(m["cosine"] == pytest.approx(np.sqrt(2 / 3)) for m in got)
