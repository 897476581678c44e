"""Small models fitted to synthetic populations, for the experiments, the demo, the service benchmark and tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personalign.data.core import PreferenceData
from personalign.data.synthetic import generate_population
from personalign.features import HashingEncoder, PairFeaturizer, get_encoder
from personalign.models import LowRankBT, TrainingConfig


def fit_synthetic(
    persons: int = 200,
    comparisons_per_person: int = 40,
    adversarial_frac: float = 0.1,
    rank: int = 4,
    seed: int = 0,
    encoder: str = "minilm",
    data: PreferenceData | None = None,
) -> tuple[PreferenceData, LowRankBT]:
    """A synthetic population with adversarial persons (or ``data``) and a LowRankBT fitted to it."""
    if data is None:
        data = generate_population(
            persons=persons,
            comparisons_per_person=comparisons_per_person,
            adversarial_frac=adversarial_frac,
            seed=seed,
        )
    model = LowRankBT(rank=rank, featurizer=PairFeaturizer(get_encoder(encoder)), random_state=seed)
    model.fit(data)
    return data, model


def train_small_model(
    out: str | Path,
    data: Any = None,
    encoder: str = "hashing",
    rank: int = 4,
    seed: int = 0,
    persons: int = 60,
    comparisons_per_person: int = 30,
) -> Path:
    """Fit a LowRankBT on ``data`` (default: a small synthetic population) and save it to ``out``.

    ``encoder``: ``"hashing"`` (fast, for tests) or ``"minilm"`` (the real sentence encoder, cached on disk).
    """
    if data is None:
        data = generate_population(
            persons=persons, comparisons_per_person=comparisons_per_person, n_prompts=8, seed=seed
        )
    enc = HashingEncoder(dim=128, seed=seed) if encoder == "hashing" else get_encoder(encoder, cache=True)
    model = LowRankBT(
        rank=rank, featurizer=PairFeaturizer(enc), training=TrainingConfig(max_iter=150), random_state=seed
    ).fit(data)
    return Path(model.save_pretrained(out))
