"""Pair features phi(x, y) of a prompt x and a response y, the input of every reward model.

Choice (mode ``"auto"``, the default): ``phi(x, y) = [e(y), e(x) * e(y)]`` (concatenation, ``*`` elementwise),
dimension ``2 * dim``, with ``e("") = 0`` so a response without a prompt (rating data) gets ``[e(y), 0]``: the
same layout, the interaction half empty. Why: rewards are linear in phi and only differences
``phi(x, y1) - phi(x, y2)`` between two responses to the same prompt enter a comparison, so a prompt-only term
``e(x)`` would cancel; ``e(y)`` carries context-free taste (style, length, tone) and ``e(x) * e(y)`` lets a
linear head weigh how a response's content aligns with the prompt's, per embedding direction (a diagonal
bilinear form ``sum_j w_j e_j(x) e_j(y)``). Mode ``"response"`` uses ``phi = e(y)`` only (dimension ``dim``).

Mode ``"sentences"`` appends a sum-pool of the response's sentence embeddings:
``phi = [e(y), e(x) * e(y), sum_s e(s) / 4]`` (dimension ``3 * dim``). Why: one embedding of a whole response
mostly encodes its topic, while traits a person weighs (warmth, humour, detail, a harmful instruction) live in
individual sentences; summing sentence vectors makes "how much of each kind of sentence" additive, which a
linear head can read across topics. On the synthetic population (alpha 0.1, held-out prompts) it lifts low-rank
accuracy from 81% to 85% of the oracle. The 1/4 keeps its norm near e(y)'s for responses of ~10-20 sentences.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from personalign.errors import ConfigError, DataError
from personalign.features.encoders import Encoder
from personalign.features.registry import encoder_from_config, get_encoder

MODES = ("auto", "response", "sentences")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# the sentence block is sum_s e(s) / SENTENCE_SCALE (see the module docstring)
SENTENCE_SCALE = 4.0


def split_sentences(text: str) -> list[str]:
    """Sentences of a text (split after . ! ? followed by white space); the text itself when it has none."""
    parts = [s.strip() for s in SENTENCE_END.split(text) if s.strip()]
    return parts or [text]


def broadcast_prompts(
    prompts: Sequence[str] | str | None, responses: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(prompts, responses) as lists of strings of one length: one prompt string serves every response, None is ""."""
    responses = [str(r) for r in responses]
    if prompts is None or isinstance(prompts, str):
        prompts = [prompts or ""] * len(responses)
    prompts = ["" if p is None else str(p) for p in prompts]
    if len(prompts) != len(responses):
        raise DataError(
            f"{len(prompts)} prompts for {len(responses)} responses",
            field="prompt",
            expected="one prompt per response (or a single prompt)",
        )
    return prompts, responses


class PairFeaturizer:
    """phi(prompt, response) -> float32 vectors of fixed size ``dim_out`` (see the module docstring).

    ``encoder=None`` uses the cached MiniLM encoder, created on first use (so building a model costs nothing).
    """

    def __init__(self, encoder: Encoder | None = None, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ConfigError(f"PairFeaturizer mode must be one of {MODES}, got {mode!r}")
        self._encoder = encoder
        self.mode = mode

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = get_encoder("minilm", cache=True)
        return self._encoder

    @property
    def dim(self) -> int:
        """Dimension of the underlying text embedding (MiniLM: 384, without loading it)."""
        if self._encoder is None:
            return 384
        return int(self._encoder.dim)

    @property
    def dim_out(self) -> int:
        return {"auto": 2, "response": 1, "sentences": 3}[self.mode] * self.dim

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> dict[str, np.ndarray]:
        """Vectors of the unique non-empty texts (one encoder call)."""
        uniq = sorted({str(t) for t in texts if str(t) != ""})
        if not uniq:
            return {}
        vec = self.encoder.encode(uniq, show_progress=show_progress)
        return dict(zip(uniq, vec, strict=False))

    def transform(
        self, prompts: Sequence[str] | str, responses: Sequence[str], show_progress: bool = False
    ) -> np.ndarray:
        """phi for each (prompt, response) row; a single prompt string is broadcast. Unique texts encoded once."""
        prompts, responses = broadcast_prompts(prompts, responses)
        need = set(responses) | (set(prompts) if self.mode != "response" else set())
        sentences: dict[str, list[str]] = {}
        if self.mode == "sentences":
            sentences = {r: split_sentences(r) for r in set(responses) if r}
            need |= {s for ss in sentences.values() for s in ss}
        vec = self.embed(sorted(need), show_progress=show_progress)
        d = self.dim
        zero = np.zeros(d, dtype=np.float32)
        ey = np.stack([vec.get(r, zero) for r in responses]) if responses else np.zeros((0, d), np.float32)
        if self.mode == "response":
            return ey.astype(np.float32, copy=False)
        ex = np.stack([vec.get(p, zero) for p in prompts]) if prompts else np.zeros((0, d), np.float32)
        parts = [ey, ex * ey]
        if self.mode == "sentences":
            pooled = {r: np.sum([vec[s] for s in ss], axis=0) / SENTENCE_SCALE for r, ss in sentences.items()}
            parts.append(np.stack([pooled.get(r, zero) for r in responses]) if responses else ey[:, :0])
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    __call__ = transform

    def config(self) -> dict[str, Any]:
        """The mode and the encoder's config: what a saved model records to rebuild this featurizer."""
        enc = self.encoder
        cfg = getattr(enc, "config", None)
        ecfg = cfg() if callable(cfg) else {"kind": "unknown", "name": enc.name, "dim": enc.dim}
        return {"mode": self.mode, "encoder": ecfg, "encoder_name": enc.name, "dim_out": self.dim_out}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], cache: bool = True) -> PairFeaturizer:
        """Rebuild the featurizer a model was trained with (precomputed vectors must be passed by the caller)."""
        enc = encoder_from_config(cfg["encoder"], cache=cache)
        if enc.name != cfg.get("encoder_name", enc.name):
            raise ConfigError(f"encoder {enc.name!r} does not match the saved {cfg.get('encoder_name')!r}")
        return cls(enc, mode=cfg.get("mode", "auto"))

    def compatible_with(self, cfg: Mapping[str, Any]) -> None:
        """Raise ConfigError unless this featurizer produces the features described by ``cfg``."""
        if cfg.get("mode", "auto") != self.mode or int(cfg.get("dim_out", self.dim_out)) != self.dim_out:
            raise ConfigError(
                f"featurizer mismatch: saved mode={cfg.get('mode')} dim_out={cfg.get('dim_out')}, "
                f"given mode={self.mode} dim_out={self.dim_out}"
            )
