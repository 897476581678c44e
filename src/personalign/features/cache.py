"""On-disk cache of text vectors, keyed by encoder name (its identity: see each encoder's ``name``) and the SHA-1
of each text.

Layout: ``<cache_dir>/<encoder name>/<shard>.keys.npy`` (SHA-1 digests, 20 bytes each) beside
``<shard>.vecs.npy`` (float32 rows). Each batch of new texts becomes one shard, written to a temporary file and
renamed (the keys file last), so a crash never leaves a half-written shard that is read back, and several
processes can fill the same cache at once (shard names are unique).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personalign.data.files import atomic_write
from personalign.features.encoders import Encoder


def default_cache_dir() -> Path:
    """``$PERSONALIGN_CACHE`` or ``~/.cache/personalign/features``."""
    env = os.environ.get("PERSONALIGN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "personalign" / "features"


def text_key(text: str) -> bytes:
    return hashlib.sha1(str(text).encode("utf-8")).digest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def save_array(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through a temporary file renamed into place (a reader never sees half an array)."""
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)


class CachedEncoder:
    """Wraps an encoder with an on-disk cache: texts already seen (by this encoder ``name``) are not re-encoded.

    ``n_encoded_`` counts texts actually sent to the wrapped encoder (0 on a second run over the same texts);
    new texts are encoded in chunks of ``chunk_size`` with a progress bar, one shard per chunk so that an
    interrupted long encode keeps what it finished.
    """

    def __init__(
        self, encoder: Encoder, cache_dir: str | os.PathLike | None = None, chunk_size: int = 8192
    ) -> None:
        self.encoder = encoder
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.chunk_size = int(chunk_size)
        self.n_encoded_ = 0
        self.n_hits_ = 0
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._seen_files: set[str] = set()

    @property
    def name(self) -> str:
        """The wrapped encoder's name (its identity: the cache folder is named after it)."""
        return self.encoder.name

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    @property
    def directory(self) -> Path:
        return self.cache_dir / _safe(self.name)

    def _refresh(self) -> None:
        """Load shards written since the last look (by this or another process)."""
        d = self.directory
        if not d.is_dir():
            return
        for kf in sorted(d.glob("*.keys.npy")):
            if kf.name in self._seen_files:
                continue
            vf = kf.with_name(kf.name.replace(".keys.npy", ".vecs.npy"))
            try:
                keys = np.load(kf)
                vecs = np.load(vf, mmap_mode="r")
            except (
                OSError,
                ValueError,
            ):  # a shard another process is still writing or a damaged one: skip it
                continue
            if vecs.ndim != 2 or vecs.shape[0] != len(keys) or vecs.shape[1] != self.dim:
                continue
            s = len(self._shards)
            self._shards.append(vecs)
            for r, k in enumerate(keys):
                # numpy's S20 drops trailing zero bytes: pad the 20-byte digest back (1 text in 256 ends in one)
                self._index.setdefault(bytes(k).ljust(20, b"\0"), (s, r))
            self._seen_files.add(kf.name)

    def _write_shard(self, keys: list[bytes], vecs: np.ndarray) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        stem = uuid.uuid4().hex
        save_array(d / f"{stem}.vecs.npy", np.asarray(vecs, dtype=np.float32))
        save_array(d / f"{stem}.keys.npy", np.frombuffer(b"".join(keys), dtype="S20"))

    def uncached(self, texts: Sequence[str]) -> list[str]:
        """The texts (in order, repeats kept) whose vectors are not in the cache yet: what :meth:`encode` would
        send to the wrapped encoder."""
        self._refresh()
        return [t for t in (str(x) for x in texts) if text_key(t) not in self._index]

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Vectors of the texts: cached ones read from disk, the others encoded by the wrapped encoder and
        stored."""
        texts = [str(t) for t in texts]
        keys = [text_key(t) for t in texts]
        self._refresh()
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=False):
            if k not in self._index and k not in missing:
                missing[k] = t
        if missing:
            mk = list(missing.keys())
            mt = list(missing.values())
            bar = None
            if show_progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(mt), desc=f"encoding ({self.name})", unit="text")
            fresh: dict[bytes, np.ndarray] = {}
            for start in range(0, len(mt), self.chunk_size):
                ck, ct = mk[start : start + self.chunk_size], mt[start : start + self.chunk_size]
                vec = np.asarray(self.encoder.encode(ct, show_progress=False), dtype=np.float32)
                self.n_encoded_ += len(ct)
                try:
                    self._write_shard(ck, vec)
                except OSError:  # a read-only cache still encodes correctly, it just cannot remember
                    pass
                for k, v in zip(ck, vec, strict=False):
                    fresh[k] = v
                if bar is not None:
                    bar.update(len(ct))
            if bar is not None:
                bar.close()
        else:
            fresh = {}
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            if k in fresh:
                out[i] = fresh[k]
            else:
                s, r = self._index[k]
                out[i] = self._shards[s][r]
                self.n_hits_ += 1
        return out

    def config(self) -> dict[str, Any]:
        """The wrapped encoder's config (the cache itself is not part of what a model saves)."""
        cfg = getattr(self.encoder, "config", None)
        return cfg() if callable(cfg) else {"kind": "unknown", "name": self.name, "dim": self.dim}

    def clear(self) -> None:
        """Forget this encoder's cached vectors (on disk and in memory)."""
        d = self.directory
        if d.is_dir():
            for f in d.glob("*.npy"):
                f.unlink(missing_ok=True)
        self._index.clear()
        self._shards.clear()
        self._seen_files.clear()
