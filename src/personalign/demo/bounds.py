"""Step 4: an adversarial person's preference for a harmful answer is refused by the bounded policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from personalign.bounds import BoundedPolicy, load_policy
from personalign.bounds.check import violation_table
from personalign.data.core import PreferenceData
from personalign.data.files import dumps_json, write_text_atomic
from personalign.data.synthetic import generate_population
from personalign.demo.context import DemoContext
from personalign.experiments.bounds import universal_pairs
from personalign.experiments.models import fit_synthetic


def _population_and_model(ctx: DemoContext) -> tuple[PreferenceData, Any]:
    """The population and model of the earlier steps, or fresh ones when those hold no adversarial person."""
    data = ctx.state.get("population")
    model = ctx.state.get("model")
    if data is None or "adversarial" not in data.users.columns or not data.users["adversarial"].any():
        data = generate_population(
            persons=60 if ctx.quick else 200, comparisons_per_person=30, adversarial_frac=0.1, seed=ctx.seed
        )
        model = None
    if model is None or not hasattr(model, "basis"):
        enc = "hashing" if ctx.quick else "minilm"
        data_small = data.filter_users(data.user_ids[:300])
        _, model = fit_synthetic(data=data_small, seed=ctx.seed, encoder=enc)
    return data, model


def _harm_preferring_prompt(model: Any, person: str, items: pd.DataFrame, harm: dict[str, float]) -> str:
    """The first held-out prompt where this person's unbounded favourite is harmful (else the first prompt)."""
    w_u = model.posterior(person).mean
    for p_, g_ in items.groupby("prompt", sort=False):
        r_ = model.score_posterior(w_u, p_, g_["text"].tolist())
        if harm[g_["text"].tolist()[int(np.argmax(r_))]] >= 0.5:
            return p_
    return items["prompt"].iloc[0]


def bounds_step(ctx: DemoContext) -> None:
    """Show the worst adversarial person's unbounded and bounded choice, the fallback when only harmful
    candidates are offered, and their violation rate on held-out universal pairs without and with the policy."""
    con = ctx.console
    data, model = _population_and_model(ctx)
    adv_ids = [
        u
        for u in data.users.loc[data.users["adversarial"].astype(bool), "user_id"].astype(str)
        if u in getattr(model, "user_units_", {})
    ]
    if not adv_ids:
        con.print("no adversarial person in the trained model; skipping")
        return
    bp = BoundedPolicy(model, load_policy("synthetic"), items=data.items)
    items = data.items[data.items["heldout_prompt"].astype(bool)]
    W = np.stack([model.posterior(u).mean for u in adv_ids])
    # the adversarial person whose raw reward most prefers harm on held-out prompts
    vt = violation_table(
        bp, W, pd.DataFrame({"person": adv_ids, "kind": "adversarial"}), universal_pairs(data.items)
    )
    u = str(vt.sort_values("violation_without", ascending=False)["person"].iloc[0])
    harm = dict(zip(data.items["text"], data.items["attr_harm"], strict=False))
    prompt = _harm_preferring_prompt(model, u, items, harm)
    cands = items.loc[items["prompt"] == prompt, "text"].tolist()
    raw = model.score_posterior(model.posterior(u).mean, prompt, cands)
    rk = bp.rank(u, prompt, cands)
    t = Table(title=f"person {u} (adversarial) - prompt: {prompt[:70]}")
    t.add_column("")
    t.add_column("response")
    t.add_column("harmful")
    top_raw = cands[int(np.argmax(raw))]
    t.add_row("unbounded top", top_raw[:90] + "...", str(bool(harm[top_raw] >= 0.5)))
    t.add_row("bounded top", rk.choice[:90] + "...", str(bool(harm.get(rk.choice, 0) >= 0.5)))
    con.print(t)
    only_bad = [c for c in cands if harm[c] >= 0.5]
    rk2 = bp.rank(u, prompt, only_bad)
    con.print(
        f"only harmful candidates offered -> fallback [bold]{bp.policy.fallback.mode}[/]: {rk2.choice!r}"
    )
    con.print(
        f"violation rate of this person on {int(vt['n_pairs'].iloc[0])} held-out universal pairs: "
        f"without policy {vt.set_index('person').loc[u, 'violation_without']:.2f}, "
        f"with policy {vt.set_index('person').loc[u, 'violation_with']:.2f}"
    )
    example = {
        "person": u,
        "prompt": prompt,
        "unbounded_top": top_raw,
        "bounded": rk.to_dict(),
        "only_harmful": rk2.to_dict(),
    }
    write_text_atomic(Path(ctx.out) / "bounds" / "adversarial_example.json", dumps_json(example, indent=1))
    ctx.state["bounds"] = {
        "person": u,
        "refused": rk2.refused,
        "violation_with": float(vt["violation_with"].max()),
    }
