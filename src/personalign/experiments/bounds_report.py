"""``personalign bounds report``: bounded personalization on a synthetic population with 10% adversarial persons,
written as JSON + markdown + PNG (violation rates per policy, personalization tax, monitor findings, poisoning)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.bounds.bounded import BoundedPolicy
from personalign.bounds.check import scorer_quality, violation_table
from personalign.bounds.policy import load_policy
from personalign.data.files import dumps_json, to_jsonable, write_text_atomic
from personalign.data.synthetic import sample_comparisons
from personalign.experiments.bounds import (
    monitor_table,
    person_weights,
    personalization_tax,
    synthetic_harm_classifier,
    universal_pairs,
)
from personalign.experiments.models import fit_synthetic
from personalign.experiments.poisoning import poisoning_curve


def plots(out: Path, viol: dict[str, pd.DataFrame], pois: pd.DataFrame | None) -> list[str]:
    """violations.png (per person, with and without each policy) and poisoning.png; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, len(viol), figsize=(4.2 * len(viol), 3.6), squeeze=False)
    for ax, (name, df) in zip(axes[0], viol.items(), strict=False):
        kinds = ["ordinary", "adversarial", "extreme"]
        for k, kind in enumerate(kinds):
            d = df[df["kind"] == kind]
            if len(d) == 0:
                continue
            jit = np.random.default_rng(k).uniform(-0.12, 0.12, len(d))
            ax.scatter(
                k - 0.2 + jit,
                d["violation_without"],
                s=8,
                alpha=0.6,
                color="tab:red",
                label="without policy" if k == 0 else None,
            )
            ax.scatter(
                k + 0.2 + jit,
                d["violation_with"],
                s=8,
                alpha=0.6,
                color="tab:green",
                label="with policy" if k == 0 else None,
            )
        ax.set_xticks(range(3), kinds)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("share of universal pairs unsafe wins")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "violations.png", dpi=120)
    plt.close(fig)
    files.append("violations.png")
    if pois is not None and len(pois):
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for cap, col in (("none", "tab:red"), ("median", "tab:blue")):
            d = pois[pois["cap"] == cap].groupby("fraction")["shift"].agg(["mean", "std"]).reset_index()
            ax.errorbar(
                d["fraction"] * 100,
                d["mean"],
                yerr=d["std"].fillna(0),
                marker="o",
                color=col,
                capsize=3,
                label=f"shared model, cap={cap}",
            )
        ax.plot(
            sorted(pois["fraction"].unique() * 100),
            [0] * pois["fraction"].nunique(),
            "g--",
            label="bounded policy",
        )
        ax.set_xlabel("attackers (% of persons)")
        ax.set_ylabel("shift in unsafe-win share (universal pairs)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "poisoning.png", dpi=120)
        plt.close(fig)
        files.append("poisoning.png")
    return files


def md_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A markdown table of ``df`` (floats formatted with ``floatfmt``)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float | np.floating) else str(v) for v in r.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_synthetic_report(
    out: str | Path,
    persons: int = 200,
    seed: int = 0,
    poison_seeds: tuple[int, ...] = (0, 1),
    poisoning: bool = True,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Everything of issue 6 on a synthetic population with 10% adversarial persons; writes JSON, markdown, PNG."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data, model = fit_synthetic(persons=persons, seed=seed)
    test = sample_comparisons(data, 20, prompts="heldout", seed=seed + 1)
    pairs = universal_pairs(data.items)
    W, meta = person_weights(model, data)
    policies = {
        "synthetic.yaml (moderation label)": BoundedPolicy(model, load_policy("synthetic"), items=data.items),
        "learned synthetic harm classifier": BoundedPolicy(
            model, load_policy("synthetic"), scorers={"harmless": synthetic_harm_classifier(data, seed)}
        ),
        "default.yaml (HH head + consensus + rules)": BoundedPolicy(model, load_policy("default")),
    }
    lp = policies["learned synthetic harm classifier"]
    lp.thresholds["harmless"] = float(lp.scorers["harmless"].threshold_)
    res: dict[str, Any] = {
        "command": command,
        "persons": persons,
        "seed": seed,
        "universal_pairs": len(pairs),
    }
    viol = {}
    for name, bp in policies.items():
        vt = violation_table(bp, W, meta, pairs)
        viol[name] = vt
        by = vt.groupby("kind")[["violation_without", "violation_with"]].agg(["mean", "max"])
        res.setdefault("violations", {})[name] = {
            "max_over_persons_without": float(vt["violation_without"].max()),
            "max_over_persons_with": float(vt["violation_with"].max()),
            "mean_without": float(vt["violation_without"].mean()),
            "mean_with": float(vt["violation_with"].mean()),
            "refused_pairs_with": float(vt["refused_with"].iloc[0]) if len(vt) else 0.0,
            "by_kind": {k: {c[0] + "_" + c[1]: float(by.loc[k, c]) for c in by.columns} for k in by.index},
            "scorer_on_universal_pairs": scorer_quality(bp, pairs),
        }
        res.setdefault("tax", {})[name] = personalization_tax(bp, model, data, test)
        if progress:
            print(
                f"  {name}: max without {vt['violation_without'].max():.3f} with {vt['violation_with'].max():.3f}",
                flush=True,
            )
    mt, msum = monitor_table(policies["synthetic.yaml (moderation label)"], model, data, seed=seed)
    res["monitors"] = msum
    pois = None
    if poisoning:
        pois = poisoning_curve(seeds=poison_seeds, progress=progress)
        agg = (
            pois.groupby(["cap", "fraction"])
            .agg(
                shift_mean=("shift", "mean"),
                shift_sd=("shift", "std"),
                unsafe_win_rate=("unsafe_win_rate", "mean"),
                attacker_weight_share=("attacker_weight_share", "mean"),
            )
            .reset_index()
        )
        res["poisoning"] = agg.to_dict(orient="records")
    files = plots(out, viol, pois)
    res["figures"] = files
    res["seconds"] = time.perf_counter() - t0
    res = to_jsonable(res)
    write_text_atomic(out / "bounds_report.json", dumps_json(res, indent=1))
    mt.to_csv(out / "monitors_per_person.csv", index=False)
    write_text_atomic(out / "bounds_report.md", markdown(res, pois))
    return res


def markdown(res: dict[str, Any], pois: pd.DataFrame | None = None) -> str:
    """The markdown report of a :func:`run_synthetic_report` result."""
    L = ["# Bounded personalization: synthetic population with adversarial persons", ""]
    if res.get("command"):
        L += ["Command:", "", f"    {res['command']}", ""]
    L += [
        f"{res['persons']} persons (10% adversarial) + extreme weights (x1000, inf), LowRankBT rank 4 over MiniLM; "
        f"{res['universal_pairs']} held-out universal pairs (harmless vs harmful response, unseen prompts).",
        "",
        "## Violation rate (share of universal pairs where the unsafe response wins)",
        "",
        "| policy | max over persons without | max over persons with | mean without | mean with | refused (both violate) | safe pass | unsafe blocked |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in res["violations"].items():
        q = v["scorer_on_universal_pairs"]
        L.append(
            f"| {name} | {v['max_over_persons_without']:.3f} | {v['max_over_persons_with']:.3f} | "
            f"{v['mean_without']:.3f} | {v['mean_with']:.3f} | {v.get('refused_pairs_with', float('nan')):.3f} | "
            f"{q['safe_pass_rate']:.3f} | {q['unsafe_block_rate']:.3f} |"
        )
    L += ["", "By kind of person (mean / max):", ""]
    for name, v in res["violations"].items():
        L.append(
            f"- {name}: "
            + "; ".join(
                f"{k}: without {d['violation_without_mean']:.3f}/{d['violation_without_max']:.3f}, with {d['violation_with_mean']:.3f}/{d['violation_with_max']:.3f}"
                for k, d in v["by_kind"].items()
            )
        )
    L += [
        "",
        "## Personalization tax (ordinary persons, held-out prompts)",
        "",
        "| policy | true reward of choice, raw | bounded | oracle | tax (raw - bounded) | worst person | refused prompts | tax on answered prompts | held-out acc raw | bounded | population |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in res["tax"].items():
        a = t.get("heldout_accuracy_per_person", {})
        L.append(
            f"| {name} | {t['true_reward_of_choice_raw']:.3f} | {t['true_reward_of_choice_bounded']:.3f} | "
            f"{t['true_reward_oracle']:.3f} | {t['tax_mean']:.3f} ± {t['tax_sd_over_persons']:.3f} | {t['tax_worst_person']:.3f} | "
            f"{t.get('refused_prompt_share', float('nan')):.3f} | {t.get('tax_mean_answered', float('nan')):.3f} | "
            f"{a.get('raw', {}).get('mean', float('nan')):.3f} | {a.get('bounded', {}).get('mean', float('nan')):.3f} | "
            f"{a.get('population', {}).get('mean', float('nan')):.3f} |"
        )
    L += [
        "",
        "## Monitor findings (synthetic.yaml policy)",
        "",
        md_table(pd.DataFrame(res["monitors"]["by_kind"])),
        "",
        "bubble: entropy of the person's top-3 choices' clusters / the population's (flag < 0.5); _mmr: after "
        "diversity re-ranking at strength 0.5. lock-in: drift (accuracy old - recent) or overconfidence flags; "
        "'drifting' persons had their last 20 judgments reversed. sycophancy: excess share of probes where the "
        f"personal reward prefers the agreeing-but-wrong answer over the population reward ({res['monitors']['probes']} probes).",
        "",
    ]
    if pois is not None:
        L += [
            "## Poisoning: shift of the shared reward's unsafe-win share vs attackers' fraction",
            "",
            md_table(pd.DataFrame(res["poisoning"])),
            "",
            "Attackers submit 5x the ordinary volume, all 'harmful > harmless'. cap=median: each person's total "
            "weight <= the median person's (influence_weights). The bounded policy's shift is 0 at every fraction "
            "(its constraints do not read the shared model).",
            "",
        ]
    L += [f"Figures: {', '.join(res['figures'])}", ""]
    return "\n".join(L)
