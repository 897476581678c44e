"""Experiment config files (``--config FILE``, YAML or TOML) for commands such as ``train`` and ``eval``.

A config file is a flat mapping whose keys are the command's own option names, written as on the command line
without the dashes (``max-iter``) or with underscores (``max_iter``); the data argument is the key ``data``.
Its values become the command's defaults for this run, so an option given on the command line wins over the
file. A key the command does not have, or a value of the wrong type, is a :class:`ConfigError` naming the file
and the key. Paths in the file are read as on the command line (relative to the working directory). The file's
path, sha256 and values go into the manifest of every folder the run writes.
"""

from __future__ import annotations

import enum
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
import yaml

from personalign.errors import ConfigError

CONFIG_HELP = (
    "Experiment config file (.yaml, .yml or .toml) whose keys are this command's option names (max-iter or "
    "max_iter; the data argument as 'data'); options given on the command line win over the file."
)
# the options a config file cannot set: itself, and the ones that print something and exit
_NOT_SETTABLE = {"config", "help", "list_models"}
_INT_TYPES = {"integer", "integer range"}
_FLOAT_TYPES = {"float", "float range"}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML or TOML config file (ConfigError for a missing file, bad syntax or no mapping)."""
    p = Path(path)
    kind = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}.get(p.suffix.lower())
    if kind is None:
        raise ConfigError(f"--config {p}: expected a .yaml, .yml or .toml file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {p}: cannot read it: {exc}") from None
    try:
        raw = tomllib.loads(text) if kind == "TOML" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{p}: not valid {kind}: {detail}") from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p}: expected a mapping of option names to values, got {type(raw).__name__}")
    return dict(raw)


def _param_names(param: Any) -> set[str]:
    names = {param.name}
    for opt in getattr(param, "opts", []):
        if opt.startswith("--"):
            names |= {opt[2:], opt[2:].replace("-", "_")}
    return names


_ANNOTATION_KINDS = {int: "integer", float: "float", bool: "boolean", str: "text"}


def _param_kind(param: Any) -> tuple[str, bool]:
    """(the click type name of a parameter's values, whether it takes several): from click's ``param.type``,
    or from the annotation typer >= 0.29 keeps in ``param.type_descriptor``."""
    many = bool(getattr(param, "multiple", False)) or getattr(param, "nargs", 1) == -1
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return getattr(getattr(param, "type", None), "name", "text"), many
    ann = descriptor.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 1:
        ann = args[0]  # Optional[X]
    if typing.get_origin(ann) in (list, tuple):
        many, ann = True, (typing.get_args(ann) or (str,))[0]
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return "choice", many
    if isinstance(ann, type) and issubclass(ann, Path):
        return "path", many
    return _ANNOTATION_KINDS.get(ann, "text"), many


def _one_value(value: Any, type_name: str, where: str) -> Any:
    """``value`` checked against a click type's name (no silent truncation of 0.5 to an integer option)."""
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a single value, got a {type(value).__name__}")
    if type_name == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif isinstance(value, bool):
        raise ConfigError(f"{where}: expected {_expected(type_name)}, got {value!r}")
    elif type_name in _INT_TYPES:
        if not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif type_name in _FLOAT_TYPES:
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
    elif type_name == "text" and isinstance(value, (int, float)):
        value = str(value)  # e.g. k: 5 for a comma-separated text option
    elif not isinstance(value, str):
        raise ConfigError(f"{where}: expected {_expected(type_name)}, got {value!r}")
    return value


def _expected(type_name: str) -> str:
    if type_name in _INT_TYPES:
        return "an integer"
    if type_name in _FLOAT_TYPES:
        return "a number"
    return {"path": "a path (text)", "choice": "one of the option's choices (text)"}.get(type_name, "text")


def config_defaults(ctx: Any, path: Path, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The command's defaults (by parameter name) that the file ``path`` sets, each value checked and
    converted by its option's own type."""
    params = {}
    for param in ctx.command.params:
        for name in _param_names(param):
            params[name] = param
    out: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}: key {key!r}"
        param = params.get(str(key))
        if param is None or param.name in _NOT_SETTABLE or getattr(param, "is_eager", False):
            known = sorted(
                next((o[2:] for o in p.opts if o.startswith("--")), p.name)
                for p in ctx.command.params
                if p.name not in _NOT_SETTABLE and not getattr(p, "is_eager", False)
            )
            raise ConfigError(f"{where}: not an option of this command; it has: {', '.join(known)}")
        if param.name in out:
            raise ConfigError(f"{where}: sets {param.name!r} a second time")
        type_name, many = _param_kind(param)
        if many:
            items = value if isinstance(value, list) else [value]
            checked: Any = [_one_value(v, type_name, where) for v in items]
        elif type_name == "text" and isinstance(value, list):  # models: [bt, lowrank] for --models bt,lowrank
            checked = ",".join(_one_value(v, type_name, where) for v in value)
        else:
            checked = _one_value(value, type_name, where)
        cast = getattr(param, "type_cast_value", None)  # click's; typer >= 0.29 coerces the default itself
        try:
            out[param.name] = cast(ctx, checked) if cast is not None else checked
        except Exception as exc:  # click's BadParameter (of whichever click typer bundles)
            msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            raise ConfigError(f"{where}: {msg}") from None
    return out


def load_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """The ``--config`` callback (eager: it runs before the other options are read): the file's values become
    this run's defaults (``ctx.default_map``), so options on the command line win; the file is recorded for
    the manifest."""
    if value is None or ctx.resilient_parsing:
        return value
    from personalign.data.manifest import record_config

    raw = read_config_file(value)
    defaults = config_defaults(ctx, Path(value), raw)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    record_config(value, raw)
    return value


def config_option() -> Any:
    """The ``--config FILE`` option of the commands that take an experiment config file."""
    return typer.Option(
        None, "--config", help=CONFIG_HELP, is_eager=True, callback=load_config, metavar="FILE"
    )
