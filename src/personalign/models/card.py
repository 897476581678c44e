"""The model card (``README.md``) of a model folder, in the Hugging Face layout: YAML front matter, then what
the model is, what it was trained on, its metrics, the bounds in force, intended use and limits, and how to
reproduce it (the same facts as the folder's ``manifest.json``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

CARD_FILE = "README.md"
TAGS = ("personalign", "reward-model", "personalization", "preference-learning", "pluralistic-alignment")
# history entries that are training metrics (the rest, e.g. per-iteration curves, stay in config.json)
_METRIC_KEYS = ("best_val_loss", "final_train_loss", "val_loss", "n_iter", "iterations", "stopped_early")


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("personalign.models", "templates"),
        autoescape=False,  # Markdown, not HTML
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("model_card.md.j2")


def describe_policy(policy: Any) -> dict[str, Any] | None:
    """The card's view of a bounds policy (a Policy, or a BoundedPolicy holding one); None for no policy."""
    if policy is None:
        return None
    pol = getattr(policy, "policy", policy)
    constraints = []
    for c in getattr(pol, "constraints", []):
        constraints.append(
            {
                "name": c.name,
                "type": c.scorer.type,
                "op": ">=" if c.direction == "min" else "<=",
                "threshold": c.threshold,
                "severity": c.severity,
                "meaning": c.meaning,
            }
        )
    tr = getattr(pol, "trust_region", None)
    return {
        "name": getattr(pol, "name", "unnamed"),
        "source": str(getattr(pol, "source", "") or ""),
        "rho": getattr(tr, "rho", None),
        "constraints": constraints,
    }


def training_metrics(history: Mapping[str, Any] | None) -> dict[str, Any]:
    """The scalar training metrics of a model's ``history_`` (losses rounded for reading)."""
    out: dict[str, Any] = {}
    for k, v in (history or {}).items():
        if isinstance(v, (list, tuple, dict)):  # curves stay in config.json
            continue
        if k in _METRIC_KEYS or k.endswith(("_loss", "_accuracy")):
            out[k] = round(v, 6) if isinstance(v, float) else v
    return out


def render_card(
    *,
    model_class: str,
    short_name: str | None,
    params: Mapping[str, Any],
    featurizer: Mapping[str, Any],
    personal_dims: int,
    persons: list[str],
    history: Mapping[str, Any] | None,
    manifest: Mapping[str, Any],
    policy: Any = None,
    repo_id: str | None = None,
) -> str:
    """The README.md of a model folder (``manifest``: its :func:`personalign.data.manifest.build_manifest`)."""
    git = (manifest.get("git") or {}).get("personalign") or {}
    feat = (
        f"encoder `{featurizer.get('encoder_name', '?')}`, pair mode `{featurizer.get('mode', '?')}`, "
        f"{featurizer.get('dim_out', '?')} features"
    )
    return _template().render(
        tags=[*TAGS, model_class],
        model_class=model_class,
        short_name=short_name,
        repo_id=repo_id,
        params={k: json.dumps(v) for k, v in params.items()},
        featurizer=feat,
        personal_dims=personal_dims,
        n_persons=len(persons),
        example_user=persons[0] if persons else "some-user-id",
        data=manifest.get("data"),
        inputs=manifest.get("inputs") or [],
        metrics=training_metrics(history),
        policy=describe_policy(policy),
        versions={
            k: v for k, v in manifest["versions"].items() if k in ("personalign", "torch", "numpy", "python")
        },
        git_commit=(git.get("commit", "") + (" (with uncommitted changes)" if git.get("dirty") else ""))
        or None,
        seeds=manifest.get("seeds") or [],
        command=manifest.get("command"),
    )
