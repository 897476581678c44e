"""LeWiDi 2025 ("Learning With Disagreements") JSON: per-annotator labels with annotator metadata.

A dataset folder (e.g. ``MP/``, ``CSC/``) holds ``<DS>_{train,dev,test}.json`` (a dict id -> {"text": {...},
"annotations": {"Ann12": "1", ...}, "soft_label": {...}, "split", "lang", "other_info"}) and
``<DS>_annotators_meta.json`` (annotator -> demographics; keyed ``12`` in MultiPICo but ``Ann12`` in CSC:
both join to ``Ann12``).

Each label -> a ``rating`` by its annotator; the scale comes from the ``soft_label`` keys (MP: binary irony
(0, 1); CSC: sarcasm 1-6). Prompt = every text field but the last (MP ``post``, CSC ``context``), response =
the last (``reply`` / ``response``). Items keep ``lang``, ``split``, ``task`` and the ``other_info`` fields.
Demographic columns become snake_case; Prolific's ``DATA_EXPIRED``/``CONSENT_REVOKED`` markers become missing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData
from personalign.errors import DataError

# Prolific's expiry markers, and the literal "nan" that CSC's metadata holds for 17 annotators (a float NaN written
# out as text): all mean "unknown", not a group of their own
_MISSING_MARKERS = {"DATA_EXPIRED", "CONSENT_REVOKED", "", "nan", "NaN"}


def _snake(s: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", s.strip().lower()).strip("_")


def _ann_key(k: str) -> str:
    return k if str(k).startswith("Ann") else f"Ann{k}"


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (RecursionError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read the JSON ({type(exc).__name__})", file=str(path), expected="a LeWiDi JSON object"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"not valid JSON ({exc.msg} at column {exc.colno})",
            file=str(path),
            line=exc.lineno,
            expected="a LeWiDi JSON object (id -> item)",
        ) from None


def _files(path: Path) -> tuple[str, list[Path], Path | None]:
    """(dataset name, label files, metadata file) for a folder or one file."""
    if path.is_dir():
        metas = sorted(path.glob("*_annotators_meta.json"))
        if not metas:
            subs = sorted(
                p.name for p in path.iterdir() if p.is_dir() and list(p.glob("*_annotators_meta.json"))
            )
            raise DataError(
                "no *_annotators_meta.json in this folder",
                file=str(path),
                expected="one LeWiDi dataset folder" + (f" (one of {', '.join(subs)})" if subs else ""),
            )
        ds = metas[0].name[: -len("_annotators_meta.json")]
        files = sorted(p for p in path.glob(f"{ds}_*.json") if p != metas[0])
        return ds, files, metas[0]
    ds = path.name.split("_")[0]
    meta = path.parent / f"{ds}_annotators_meta.json"
    if path == meta:
        raise DataError(
            "this is the annotator metadata, not the labels",
            file=str(path),
            expected=f"{ds}_dev.json, {ds}_test.json or the dataset folder",
        )
    return ds, [path], meta if meta.exists() else None


def _scale_from(item: dict[str, Any]) -> list[float]:
    out = []
    for k in item.get("soft_label") or {}:
        try:
            out.append(float(k))
        except (TypeError, ValueError):
            pass
    return out


def _item(ds: str, f: Path, key: str, it: Any) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    """One item of a label file: its items-table record and its (annotator, label) pairs."""
    where = f"item {key}"
    if not isinstance(it, dict) or not isinstance(it.get("text"), dict) or not it["text"]:
        raise DataError(
            f"{where}: no text fields",
            file=str(f),
            field="text",
            expected="an object of text fields (e.g. post, reply)",
        )
    anns = it.get("annotations")
    if not isinstance(anns, dict):
        raise DataError(
            f"{where}: got {type(anns).__name__}",
            file=str(f),
            field="annotations",
            expected="an object annotator -> label",
        )
    texts = [("" if v is None else str(v)) for v in it["text"].values()]
    rec = {
        "item_id": f"{ds}:{key}",
        "prompt": "\n\n".join(texts[:-1]),
        "text": texts[-1],
        "source_id": str(key),
        "split": it.get("split", f.stem[len(ds) + 1 :]),
        "lang": it.get("lang"),
        "task": it.get("annotation task"),
    }
    for k, v in (it.get("other_info") or {}).items():
        rec[_snake(str(k))] = v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)
    labels = []
    for a, lab in anns.items():
        try:
            labels.append((a, float(lab)))
        except (TypeError, ValueError):
            raise DataError(
                f"{where}: got {lab!r}",
                file=str(f),
                field=f"annotations.{a}",
                expected="a numeric label",
            ) from None
    return rec, labels


def read_lewidi(
    path: str | Path, *, splits: list[str] | None = None, name: str | None = None
) -> PreferenceData:
    """Read a LeWiDi dataset folder (every split present, or those in ``splits``) or one JSON file."""
    path = Path(path)
    ds, files, meta_path = _files(path)
    if splits:
        files = [f for f in files if f.stem[len(ds) + 1 :] in set(splits)]
    if not files:
        raise DataError("no label files", file=str(path), expected=f"{ds}_dev.json / {ds}_test.json")
    rows_u, rows_i, rows_r = [], [], []
    item_rows: list[dict[str, Any]] = []
    scale_pts: list[float] = []
    for f in files:
        obj = _load_json(f)
        if not isinstance(obj, dict):
            raise DataError(f"got a JSON {type(obj).__name__}", file=str(f), expected="an object id -> item")
        for key, it in obj.items():
            rec, labels = _item(ds, f, key, it)
            item_rows.append(rec)
            scale_pts.extend(_scale_from(it))
            for a, val in labels:
                rows_u.append(_ann_key(a))
                rows_i.append(rec["item_id"])
                rows_r.append(val)
    items = pd.DataFrame(item_rows)
    if items["item_id"].duplicated().any():
        dup = items.loc[items["item_id"].duplicated(), "item_id"].iloc[0]
        raise DataError(
            f"item {dup} appears in two files",
            file=str(path),
            field="id",
            expected="unique item ids across splits",
        )
    ratings = pd.DataFrame({"user_id": rows_u, "item_id": rows_i, "rating": np.asarray(rows_r, float)})
    ratings = ratings.merge(items[["item_id", "prompt", "text"]], on="item_id", how="left", sort=False)
    ratings = ratings.rename(columns={"text": "response"}).assign(weight=1.0, timestamp=np.nan)
    observed = ratings["rating"]
    pts = scale_pts or observed.tolist()
    scale = (float(min(min(pts), observed.min())), float(max(max(pts), observed.max())))

    users = pd.DataFrame({"user_id": pd.Series(dtype=str)})
    if meta_path is not None:
        meta = _load_json(meta_path)
        if not isinstance(meta, dict):
            raise DataError(
                "not an object annotator -> demographics", file=str(meta_path), expected="an object"
            )
        users = pd.DataFrame.from_dict(meta, orient="index")
        users.columns = [_snake(str(c)) for c in users.columns]
        users = users.map(lambda v: None if isinstance(v, str) and v.strip() in _MISSING_MARKERS else v)
        for c in users.columns:
            num = pd.to_numeric(users[c], errors="coerce")
            if users[c].notna().any() and num.notna().sum() == users[c].notna().sum():
                users[c] = num
        users.insert(0, "user_id", [_ann_key(str(k)) for k in users.index])
        users = users.reset_index(drop=True)
    return PreferenceData(
        ratings=ratings,
        users=users,
        items=items,
        rating_scale=scale,
        name=name or f"lewidi-{ds}",
        meta={
            "source": [str(f) for f in files],
            "dataset": ds,
            "annotators_meta": str(meta_path) if meta_path else None,
        },
    )
