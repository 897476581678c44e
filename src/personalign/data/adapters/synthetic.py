"""Synthetic populations as a data source: the folder ``personalign data synth`` writes, or a spec string.

- A folder holding ``population.parquet`` and ``truth.json`` (and ``heldout.parquet``): the training comparisons with
  the truth attached (``split="heldout"``: the held-out comparisons).
- A spec ``synthetic:key=value,...`` (or just ``synthetic``) with the fields of
  :class:`~personalign.data.synthetic.SyntheticConfig`, e.g. ``synthetic:persons=500,alpha=0.1,seed=0``: the
  population generated in memory, every prompt used for its comparisons (``heldout_prompt_frac`` 0 unless given,
  since a caller that splits the data does so itself). Its name lists the spec's settings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from personalign.data.core import PreferenceData
from personalign.data.synthetic import SyntheticConfig, generate_population, read_population
from personalign.errors import DataError

PREFIX = "synthetic"
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def is_synthetic_spec(source: str | Path) -> bool:
    """True for ``synthetic`` and ``synthetic:...`` when no file or folder of that name exists."""
    s = str(source)
    return (s == PREFIX or s.startswith(PREFIX + ":")) and not Path(s).exists()


def is_population_folder(path: Path) -> bool:
    """A folder written by ``personalign data synth`` (population.parquet and truth.json)."""
    return (path / "population.parquet").is_file() and (path / "truth.json").is_file()


def _parse_value(key: str, raw: str, default: Any, spec: str) -> Any:
    """One spec value, typed like the field's default (an optional field also takes ``None``)."""
    v = raw.strip()
    if v.lower() == "none" and default is None:
        return None
    kinds = [
        (
            bool,
            "true or false",
            lambda x: True if x.lower() in _TRUE else False if x.lower() in _FALSE else None,
        ),
        (int, "an integer", int),
        (float, "a number", float),
    ]
    for typ, expected, conv in kinds:
        # the default's type names the field's type (n_prompts defaults to None but counts prompts: an integer)
        if isinstance(default, typ) or (default is None and typ is int):
            try:
                out = conv(v)
            except ValueError:
                out = None
            if out is None:
                raise DataError(
                    f"{raw.strip()!r} in {spec!r}",
                    field=key,
                    expected=expected + (" or None" if default is None else ""),
                )
            return out
    return v


def parse_synthetic_spec(spec: str) -> dict[str, Any]:
    """``synthetic:persons=500,alpha=0.1`` -> {"persons": 500, "alpha": 0.1} (DataError naming a bad key or value)."""
    if not is_synthetic_spec(spec):
        raise DataError(f"not a synthetic spec: {spec!r}", expected="synthetic or synthetic:key=value,...")
    defaults = {f.name: f.default for f in dataclasses.fields(SyntheticConfig)}
    out: dict[str, Any] = {}
    for part in filter(str.strip, spec.partition(":")[2].split(",")):
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            raise DataError(
                f"{part.strip()!r} in {spec!r}",
                field=key or part,
                expected=f"key=value with a key among {', '.join(sorted(defaults))}",
            )
        out[key] = _parse_value(key, raw, defaults[key], spec)
    return out


def population_from_spec(spec: str) -> PreferenceData:
    """The population a spec describes (see the module docstring), truth attached."""
    kw = parse_synthetic_spec(spec)
    data = generate_population(**{"heldout_prompt_frac": 0.0, **kw})
    data.name = "synthetic-" + ",".join(f"{k}={v}" for k, v in kw.items() if k != "heldout_prompt_frac")
    return data


def read_synthetic(path: str | Path, *, split: str = "train", name: str | None = None) -> PreferenceData:
    """A folder written by ``personalign data synth`` (``split`` "train" or "heldout"), or a spec string."""
    if is_synthetic_spec(path):
        data = population_from_spec(str(path))
    else:
        if split not in ("train", "heldout"):
            raise DataError(f"split {split!r}", field="split", expected="train or heldout")
        train, heldout = read_population(path)
        if split == "heldout" and heldout is None:
            raise DataError(
                "heldout.parquet is missing", file=str(path), expected="a population with held-out pairs"
            )
        data = train if split == "train" else heldout
    if name:
        data.name = name
    return data
