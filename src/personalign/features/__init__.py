"""Text features: encoders (MiniLM, hashing, precomputed), an on-disk cache by text hash, pair features phi(x, y)."""

from personalign.features.cache import CachedEncoder, default_cache_dir
from personalign.features.encoders import (
    Encoder,
    HashingEncoder,
    MiniLMEncoder,
    PrecomputedEncoder,
    encoder_from_config,
    get_encoder,
    l2_normalize,
)
from personalign.features.pairs import PairFeaturizer

__all__ = [
    "CachedEncoder",
    "Encoder",
    "HashingEncoder",
    "MiniLMEncoder",
    "PairFeaturizer",
    "PrecomputedEncoder",
    "default_cache_dir",
    "encoder_from_config",
    "get_encoder",
    "l2_normalize",
]
