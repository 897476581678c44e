"""Text features for an evaluation run: every text encoded once, or a synthetic population's true attributes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import KINDS, PreferenceData
from personalign.errors import ConfigError, DataError


class MemoEncoder:
    """Every text of the run encoded once (through the on-disk cache) and then served from memory."""

    def __init__(self, base: Any, texts: Sequence[str], show_progress: bool = True) -> None:
        self.base = base
        self.name = base.name
        self.dim = base.dim
        uniq = sorted({str(t) for t in texts if str(t)})
        mat = base.encode(uniq, show_progress=show_progress) if uniq else np.zeros((0, base.dim), np.float32)
        self.vec = dict(zip(uniq, np.asarray(mat, dtype=np.float32)))

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        missing = [t for t in {str(t) for t in texts} if t not in self.vec]
        if missing:
            for t, v in zip(missing, self.base.encode(missing)):
                self.vec[t] = np.asarray(v, dtype=np.float32)
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.vec[str(t)] for t in texts])

    def config(self) -> dict[str, Any]:
        cfg = getattr(self.base, "config", None)
        return cfg() if callable(cfg) else {"kind": "unknown", "name": self.name, "dim": self.dim}


def make_featurizer(
    encoder: str | Any, texts: Sequence[str], show_progress: bool = True, pair_mode: str = "auto"
) -> Any:
    """A PairFeaturizer over ``encoder`` ("minilm", "hashing" or an Encoder) with ``texts`` pre-encoded.

    ``pair_mode`` is the PairFeaturizer mode; "sentences" also encodes every sentence of every text up front.
    """
    from personalign.features import PairFeaturizer, get_encoder
    from personalign.features.pairs import split_sentences

    base = get_encoder(encoder, cache=True) if isinstance(encoder, str) else encoder
    if pair_mode == "sentences":
        texts = sorted({s for t in texts for s in split_sentences(str(t))} | set(texts))
    return PairFeaturizer(MemoEncoder(base, texts, show_progress), mode=pair_mode)


def attribute_featurizer(data: PreferenceData) -> Any:
    """phi(x, y) = the true attribute vector of response y, for a synthetic population (``--encoder attributes``).

    These are the features the true reward is linear in, so models over them are limited only by what they
    learn about persons, not by what a text encoder recovers: the setting that isolates the personal model.
    Prompts get zero vectors (the pair mode is "response": phi ignores the prompt).
    """
    from personalign.features import PairFeaturizer, PrecomputedEncoder

    truth = data.meta.get("truth")
    if truth is None:
        raise ConfigError(
            "encoder 'attributes' needs a synthetic population (data.meta['truth']); "
            "real data has no true attributes: use minilm or hashing"
        )
    rows = truth.item_index(data.items["item_id"])
    vectors: dict[str, np.ndarray] = {}
    for text, r in zip(data.items["text"].astype(str), rows, strict=True):
        vec = truth.item_attrs[r].astype(np.float32)
        if text in vectors and not np.array_equal(vectors[text], vec):
            raise DataError("two synthetic items share a text but not their attributes", field="text")
        vectors[text] = vec
    A = truth.item_attrs.shape[1]
    for prompt in sorted(set(data.items["prompt"].astype(str)) - set(vectors)):
        vectors[prompt] = np.zeros(A, np.float32)
    return PairFeaturizer(PrecomputedEncoder(vectors, name="true-attributes"), mode="response")


def all_texts(data: PreferenceData, extra: pd.DataFrame | None = None) -> list[str]:
    texts = set(data.items["text"].astype(str)) | set(data.items["prompt"].astype(str))
    for k in KINDS:
        if len(t := getattr(data, k)) and "prompt" in t.columns:
            texts |= set(t["prompt"].astype(str))
    if len(data.comparisons):
        texts |= set(data.comparisons["chosen"].astype(str)) | set(data.comparisons["rejected"].astype(str))
    for k in ("ratings", "votes"):
        if len(t := getattr(data, k)):
            texts |= set(t["response"].astype(str))
    if extra is not None and len(extra):
        for col in ("prompt", "chosen", "rejected"):
            texts |= set(extra[col].astype(str))
    texts.discard("")
    return sorted(texts)
