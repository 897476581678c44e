"""The encoder contract (text -> float32 vectors) and the two encoders that need no model weights.

``HashingEncoder`` is a fast deterministic stand-in for tests and quick runs; ``PrecomputedEncoder`` accepts
vectors supplied by the user as they are. The neural encoders live in :mod:`personalign.features.hf` (MiniLM, the
default, and any sentence-transformers or transformers folder) and :mod:`personalign.features.e5`; the names that
reach all of them are in :mod:`personalign.features.registry`.
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
    vectors); ``encode`` returns float32 ``(n, dim)``. Encoders that can be saved with a model also have
    ``config()`` (a JSON-safe dict with a ``kind``) and a ``from_config(cfg, **runtime)`` classmethod.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """float32 ``(len(texts), dim)`` vectors, one per text."""


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

    kind = "hashing"

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
        """Signed hashed bag of words (plus character trigrams with ``ngrams``), L2-normalized rows."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        salt = self.seed & 0xFFFFFFFF
        for i, t in enumerate(texts):
            for tok in self._tokens(str(t)):
                h = zlib.crc32(tok.encode("utf-8"), salt)
                # the top bit chooses the sign so collisions cancel on average instead of piling up
                out[i, h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        return l2_normalize(out)

    def config(self) -> dict[str, Any]:
        """What a saved model records to rebuild this encoder."""
        return {"kind": "hashing", "dim": self.dim, "seed": self.seed, "ngrams": self.ngrams}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **runtime: Any) -> HashingEncoder:
        """Rebuild from :meth:`config` (``runtime`` options such as a device do not apply to hashing)."""
        return cls(dim=int(cfg["dim"]), seed=int(cfg.get("seed", 0)), ngrams=bool(cfg.get("ngrams", True)))


class PrecomputedEncoder:
    """Vectors supplied by the user, returned as they are (no normalization, no cache needed).

    ``PrecomputedEncoder({"text": vec, ...})`` or ``PrecomputedEncoder((texts, matrix))``. Encoding a text that
    has no vector raises :class:`DataError` naming it.
    """

    kind = "precomputed"

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
        """The supplied vector of each text (a DataError naming the first text that has none)."""
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
        """The encoder's identity as a saved model records it (the vectors themselves are not saved)."""
        return {"kind": "precomputed", "dim": self.dim, "name": self.name}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **runtime: Any) -> PrecomputedEncoder:
        """Precomputed vectors are not saved with a model, so they cannot be rebuilt: always an error."""
        raise ConfigError(
            f"the model was trained on precomputed vectors ({cfg.get('name')}); pass featurizer=PairFeaturizer("
            "PrecomputedEncoder(...)) with the same vectors when loading it"
        )
