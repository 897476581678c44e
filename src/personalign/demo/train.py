"""Step 2: one aggregated reward and one low-rank personalized reward, compared per person on unseen prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from personalign.data.synthetic import oracle_accuracy
from personalign.demo.context import DemoContext
from personalign.evaluate.metrics import per_person_accuracy
from personalign.features import PairFeaturizer, get_encoder
from personalign.models import AggregatedBT, LowRankBT


def _accuracy(model: Any, comparisons: pd.DataFrame) -> pd.Series:
    return per_person_accuracy(comparisons["user_id"].to_numpy(), model.predict_proba(comparisons))


def train_step(ctx: DemoContext) -> None:
    """Train aggregated BT and low-rank BT on the demo population; print per-person accuracy on unseen prompts."""
    data = ctx.state["population"]
    test = ctx.state["population_test"].comparisons
    test = test[~test["tie"].astype(bool)]
    # sentence pooling reads per-sentence traits across topics (see PairFeaturizer)
    featurizer = PairFeaturizer(get_encoder("minilm"), mode="sentences")
    models = {
        "aggregated BT": AggregatedBT(featurizer=featurizer, random_state=ctx.seed),
        "low-rank BT (K=4)": LowRankBT(rank=4, featurizer=featurizer, random_state=ctx.seed),
    }
    acc: dict[str, pd.Series] = {}
    for name, model in models.items():
        ctx.console.print(f"fitting {name} on {len(data.comparisons):,} comparisons ...")
        model.fit(data)
        acc[name] = _accuracy(model, test)
    lowrank = models["low-rank BT (K=4)"]
    acc["low-rank, collapsed to population"] = _accuracy(lowrank.collapsed(), test)
    oracle = oracle_accuracy(test, data.meta["truth"], by_person=True)["bayes"]

    table = Table(title="Held-out prompts: per-person pairwise accuracy (mean over persons)")
    for col in ("model", "mean", "worst decile", "share of oracle"):
        table.add_column(col, justify="right" if col != "model" else "left")
    rows = {}
    for name, s in {**acc, "oracle (true reward, same label noise)": oracle}.items():
        s = s.reindex(oracle.index)
        worst = float(np.nanquantile(s, 0.1))
        rows[name] = {
            "mean": float(s.mean()),
            "worst_decile": worst,
            "share_of_oracle": float(s.mean() / oracle.mean()),
        }
        table.add_row(name, f"{s.mean():.3f}", f"{worst:.3f}", f"{s.mean() / oracle.mean():.0%}")
    ctx.console.print(table)
    gain = rows["low-rank BT (K=4)"]["mean"] - rows["low-rank, collapsed to population"]["mean"]
    ctx.console.print(
        f"personal gain over the same model collapsed to the population: {100 * gain:+.1f} points"
    )

    out = Path(ctx.out) / "model"
    lowrank.save_pretrained(out)
    ctx.console.print(f"low-rank model saved to [bold]{out}[/] (model.safetensors + config.json)")
    ctx.state["model"] = lowrank
    ctx.state["model_dir"] = out
    ctx.state["aggregated_model"] = models["aggregated BT"]
    ctx.state["train_compare"] = rows
