"""Fine-tuning MiniLM on comparisons (personalign.features.finetune): tiny runs on a dozen short texts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.errors import ConfigError, NotFittedError
from personalign.features import MiniLMEncoder
from personalign.features.cache import CachedEncoder
from personalign.features.finetune import (
    EncoderFineTuner,
    FineTunedEncoder,
    FrozenPrefix,
    load_finetuned_encoder,
)

GOOD = [
    "What a lovely day, thank you!",
    "I really appreciate your help.",
    "This is wonderful news.",
    "Great job, well done.",
    "Thanks so much, friend.",
    "You are kind.",
]
BAD = [
    "You are an idiot.",
    "Shut up, loser.",
    "This is garbage and so are you.",
    "Nobody likes you, moron.",
    "Go away, stupid.",
    "What a pathetic fool.",
]
TEXTS = GOOD + BAD


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    return pd.DataFrame([(g, b) for g in GOOD for b in BAD], columns=["chosen", "rejected"])


@pytest.fixture(scope="module")
def base_vecs() -> np.ndarray:
    return MiniLMEncoder().encode(TEXTS)


@pytest.fixture(scope="module")
def prefix() -> FrozenPrefix:
    return FrozenPrefix(n_frozen=4)


def _tuner(**kw) -> EncoderFineTuner:
    base = dict(
        train_layers=2,
        max_steps=12,
        batch_size=36,
        lr=2e-3,
        head_lr=0.05,
        probe_steps=0,
        validation_fraction=0.0,
        seed=3,
        verbose=False,
    )
    base.update(kw)
    return EncoderFineTuner("lora", **base)


@pytest.fixture(scope="module")
def tuned(pairs, prefix) -> EncoderFineTuner:
    return _tuner().fit(pairs, prefix=prefix)


def test_zero_steps_reproduce_the_base_encoder(pairs, prefix, base_vecs):
    # the cached-prefix + top-layers path must equal sentence-transformers' own encode when nothing trained
    ft = _tuner(max_steps=0).fit(pairs, prefix=prefix)
    np.testing.assert_allclose(ft.encode(TEXTS), base_vecs, atol=1e-5)


def test_loss_decreases_and_vectors_move(tuned, base_vecs):
    loss = tuned.history_["train_loss"]
    assert len(loss) == 12 and tuned.history_["steps"] == 12
    assert loss[0] == pytest.approx(np.log(2), abs=1e-4)  # zero head: every pair at 1/2
    assert np.mean(loss[-3:]) < 0.5 * loss[0]
    r = tuned.reward(TEXTS)
    assert r[: len(GOOD)].min() > r[len(GOOD) :].max()  # the trained head orders the two kinds of text
    moved = np.abs(tuned.encode(TEXTS) - base_vecs).max()
    assert moved > 1e-3


def test_saved_encoder_reloads_with_same_vectors_and_its_own_cache_key(tuned, tmp_path):
    path = tuned.save(tmp_path / "enc")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing half-written left
    enc = FineTunedEncoder(path)
    assert enc.name == tuned.name and enc.name.startswith("minilm-ft-")
    np.testing.assert_allclose(enc.encode(TEXTS), tuned.encode(TEXTS), atol=1e-5)
    cached = load_finetuned_encoder(path)
    assert isinstance(cached, CachedEncoder)
    base = CachedEncoder(MiniLMEncoder())
    assert cached.name != base.name and cached.directory != base.directory
    v1 = cached.encode(TEXTS[:3])
    again = load_finetuned_encoder(path)
    np.testing.assert_allclose(again.encode(TEXTS[:3]), v1, atol=1e-6)
    assert again.n_encoded_ == 0  # served from the disk cache under the fine-tuned name


@pytest.mark.slow  # two more fine-tunings (~20-40 s on a busy 2-core machine)
def test_same_seed_same_encoder_other_seed_other(tuned, pairs, prefix):
    assert _tuner().fit(pairs, prefix=prefix).name == tuned.name
    assert _tuner(seed=4).fit(pairs, prefix=prefix).name != tuned.name


def test_bad_settings_and_unfitted_use_raise(pairs, tmp_path):
    with pytest.raises(ConfigError):
        EncoderFineTuner("adapters").fit(pairs)
    with pytest.raises(ConfigError):
        EncoderFineTuner(train_layers=7).fit(pairs)
    with pytest.raises(ConfigError):
        _tuner(train_layers=3).fit(pairs, prefix=FrozenPrefix(n_frozen=4))
    with pytest.raises(NotFittedError):
        EncoderFineTuner().encode(["x"])
    with pytest.raises(ConfigError):
        FineTunedEncoder(tmp_path)
