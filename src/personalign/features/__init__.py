"""Text features: encoders by name or model folder (one registry), an on-disk cache by text hash, pair features.

``get_encoder(spec)`` reaches every encoder (see :mod:`personalign.features.registry` for the spellings);
``encoder_from_config(cfg)`` rebuilds the one a saved model was trained with; ``PairFeaturizer`` turns
(prompt, response) pairs into the features phi(x, y) every reward model reads.
"""

from personalign.features.cache import CachedEncoder, default_cache_dir
from personalign.features.device import resolve_device
from personalign.features.e5 import E5Encoder
from personalign.features.encoders import Encoder, HashingEncoder, PrecomputedEncoder, l2_normalize
from personalign.features.hf import (
    MiniLMEncoder,
    MPNetEncoder,
    SentenceTransformerEncoder,
    SmolLM2Encoder,
    TransformerEncoder,
)
from personalign.features.pairs import PairFeaturizer
from personalign.features.registry import (
    describe_encoders,
    encoder_from_config,
    encoder_names,
    get_encoder,
    register_encoder,
)
from personalign.features.weights import model_cache_dir

__all__ = [
    "CachedEncoder",
    "E5Encoder",
    "Encoder",
    "HashingEncoder",
    "MPNetEncoder",
    "MiniLMEncoder",
    "PairFeaturizer",
    "PrecomputedEncoder",
    "SentenceTransformerEncoder",
    "SmolLM2Encoder",
    "TransformerEncoder",
    "default_cache_dir",
    "describe_encoders",
    "encoder_from_config",
    "encoder_names",
    "get_encoder",
    "l2_normalize",
    "model_cache_dir",
    "register_encoder",
    "resolve_device",
]
