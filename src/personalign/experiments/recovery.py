"""Do the named directions recover what was planted? On the synthetic population every item carries its true
attributes and every person a mixture of planted value profiles, so the explanation's direction naming
(:func:`personalign.bounds.explain.name_directions`, with the items' true attributes as the descriptors) can be
checked against the truth:

- per attribute, the best |Spearman rho| between an attribute and any direction's item loadings;
- per planted profile (centred on the profiles' mean: the shared part is the population's, not a direction),
  the direction end whose correlation profile over the style attributes has the highest cosine with it, and
  whether that end's two most correlated attributes are the profile's two largest deviations (ties included);
- the same for a control, the model with the rows of its basis shuffled (random directions with the same
  spectrum), which a real recovery must beat.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from personalign.bounds.explain import name_directions
from personalign.data.synthetic import STYLE

TOP = 2  # attributes compared per profile


def item_table(data: Any) -> tuple[list[str], list[str], pd.DataFrame]:
    """Prompts, texts and true style attributes (columns named as the attributes) of a synthetic population's
    items."""
    items = data.items
    cols = [f"attr_{a}" for a in STYLE]
    missing = [c for c in cols if c not in items.columns]
    if missing:
        raise ValueError(f"items lack the true attributes {missing}: not a synthetic population")
    attrs = items[cols].rename(columns=lambda c: c.removeprefix("attr_")).astype(float).reset_index(drop=True)
    return items["prompt"].astype(str).tolist(), items["text"].astype(str).tolist(), attrs


def correlation_matrix(model: Any, data: Any, max_directions: int | None = None) -> np.ndarray:
    """(directions, style attributes) Spearman rho of each direction's item loadings with each true attribute."""
    prompts, texts, attrs = item_table(data)
    dirs = name_directions(model, model.prior(), prompts, texts, attrs, max_directions)
    C = np.zeros((len(dirs), len(STYLE)))
    for k, d in enumerate(dirs):
        by = {x.name: x.correlation for x in d.descriptors}
        C[k] = [by.get(a, 0.0) for a in STYLE]
    return C


def match_profiles(C: np.ndarray, profiles: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """For each planted profile, the direction end (sign) that matches it best, and how well."""
    P = np.asarray(profiles, dtype=float)[:, : len(STYLE)]
    P = P - P.mean(0)
    out = []
    for j, name in enumerate(names):
        p = P[j]
        cos = (C @ p) / np.maximum(np.linalg.norm(C, axis=1) * np.linalg.norm(p), 1e-12)
        k = int(np.argmax(np.abs(cos)))
        sign = 1.0 if cos[k] >= 0 else -1.0
        end = sign * C[k]
        top_dir = [STYLE[i] for i in np.argsort(-end)[:TOP]]
        # the profile's TOP largest deviations, ties included (the scholar's detail and formality tie)
        cut = np.sort(p)[::-1][TOP - 1] - 1e-9
        top_prof = [STYLE[i] for i in np.argsort(-p, kind="stable") if p[i] >= cut]
        out.append(
            {
                "profile": name,
                "direction": k,
                "end": "+" if sign > 0 else "-",
                "cosine": float(abs(cos[k])),
                "direction_top": top_dir,
                "profile_top": top_prof,
                "top_match": set(top_dir) <= set(top_prof),
            }
        )
    return out


def shuffled_basis(model: Any, seed: int = 0) -> Any:
    """A copy of a linear-Gaussian model with the rows of its basis ``B_`` permuted: directions pointing
    nowhere in particular, with the same prior (the control of the recovery check)."""
    m = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    m.B_ = np.asarray(model.B_)[rng.permutation(model.B_.shape[0])]
    return m


def recovery(model: Any, data: Any, seed: int = 0, max_directions: int | None = None) -> dict[str, Any]:
    """The recovery figures of a model trained on ``data`` (a synthetic population), with the shuffled
    control."""
    truth = data.meta["truth"]
    out: dict[str, Any] = {}
    for label, m in (("model", model), ("shuffled", shuffled_basis(model, seed))):
        C = correlation_matrix(m, data, max_directions)
        out[label] = {
            "correlations": C.tolist(),
            "best_abs_corr": {a: float(np.abs(C[:, i]).max()) for i, a in enumerate(STYLE)},
            "profiles": match_profiles(C, truth.profiles, list(truth.profile_names)),
        }
    return out
