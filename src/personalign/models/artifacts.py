"""Saved models and the registry of model classes.

A model folder holds ``model.safetensors`` (float64 tensors, so a round trip gives bit-identical scores) and
``config.json`` (format version, class, hyper-parameters, featurizer, dimensions), written through a temporary
folder that replaces the target atomically. Every model class registers itself by class name (for loading) and,
when it has one, by its short name and aliases (``make_model``, ``personalign train --model``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from personalign.data.files import atomic_dir, dumps_json
from personalign.errors import ConfigError
from personalign.models.training import TrainingConfig

FORMAT_VERSION = 1
_CLASSES: dict[str, type] = {}


def register(cls: type) -> None:
    """Make a model class loadable by its class name (and, through ``cls.name``/``cls.aliases``, creatable)."""
    _CLASSES[cls.__name__] = cls


def registered(name: str | None) -> type | None:
    """The model class of a class name or a short name / alias (None when unknown)."""
    if name is None:
        return None
    return _CLASSES.get(name) or model_names().get(str(name).lower())


def model_names(aliases: bool = True) -> dict[str, type]:
    """Short names (and aliases) of the concrete model classes, e.g. ``{"lowrank": LowRankBT, ...}``."""
    out: dict[str, type] = {}
    for cls in _CLASSES.values():
        short = cls.__dict__.get("name")
        if not short:
            continue
        out[short] = cls
        if aliases:
            out.update({a: cls for a in cls.__dict__.get("aliases", ())})
    return out


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """A model folder's ``config.json``, checked for the format version (ConfigError otherwise)."""
    d = Path(directory)
    f = d / "config.json"
    if not f.is_file():
        raise ConfigError(f"{d}: not a saved model (no config.json)")
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{f}: invalid JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{f}: expected a JSON object, got {type(cfg).__name__}")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{f}: format_version {cfg.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    return cfg


def is_model_folder(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a saved personalign model (its ``config.json`` names a model class), i.e. a
    folder that a new model may replace without losing anything else."""
    f = Path(directory) / "config.json"
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(cfg, dict) and "format_version" in cfg and "model_class" in cfg


def write_model_folder(
    directory: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    config: dict,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model.safetensors`` (float64), ``config.json`` and the text ``files`` (by name: the model card,
    the manifest) into ``directory``, all at once (atomically)."""
    from safetensors.numpy import save_file

    out = Path(directory)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}
    with atomic_dir(out) as tmp:
        save_file(arrays, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(dumps_json({"format_version": FORMAT_VERSION, **config}))
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return out


def read_tensors(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a model folder (ConfigError when the file cannot be read)."""
    from safetensors.numpy import load_file

    f = Path(directory) / "model.safetensors"
    try:
        return load_file(str(f))
    except Exception as exc:  # safetensors raises its own types
        raise ConfigError(f"{f}: cannot read weights: {exc}") from exc


def require(tensors: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...], where: Path) -> np.ndarray:
    """``tensors[key]`` as float64, ConfigError when it is missing or its shape is not what the config says."""
    if key not in tensors:
        raise ConfigError(f"{where / 'model.safetensors'}: missing tensor {key!r}")
    if tuple(tensors[key].shape) != tuple(shape):
        raise ConfigError(
            f"{where / 'model.safetensors'}: tensor {key!r} has shape {tuple(tensors[key].shape)}, "
            f"config.json says {tuple(shape)}"
        )
    return tensors[key].astype(np.float64)


def params_to_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able hyper-parameters (the featurizer is saved apart; callables are not part of an artifact)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k == "featurizer":
            continue
        if isinstance(v, TrainingConfig):
            v = v.get_params()
        elif isinstance(v, np.generic):
            v = v.item()
        try:
            json.dumps(v)
        except TypeError:
            continue
        out[k] = v
    return out


def params_from_config(params: Mapping[str, Any], default_training: TrainingConfig) -> dict[str, Any]:
    """Constructor arguments from a saved config; folders written before ``training`` existed kept its options
    (``max_iter``, ``patience``, ...) beside the hyper-parameters, and are read into one TrainingConfig."""
    out = dict(params)
    legacy = {k: out.pop(k) for k in list(out) if k in TrainingConfig.field_names()}
    training = out.get("training")
    if isinstance(training, Mapping):
        training = default_training.replace(**training)
    if legacy:
        training = (training or default_training).replace(**legacy)
    if training is not None:
        out["training"] = training
    return out
