"""The aggregation audit end to end: read the judgments once, run every section, summarize (``run_audit``).

Every kind of judgment is audited. Ratings and votes: the unit of agreement, variance and the structure test is
the item. Comparisons and rankings (a ranking read as all its pairs, the earlier item winning): the unit is the
unordered item pair, each person's outcome the side they took (:func:`personalign.audit.table.judgments_from_pairs`);
the permutation test then shuffles person ids within item pairs. Social choice and the fit of one aggregated
reward always read item-level per-person pairs. ``glossary`` in the result defines each figure for the unit used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalign.audit.groups import attach_fit_gaps, group_analysis, group_labels, worst_group
from personalign.audit.heterogeneity import heterogeneity
from personalign.audit.options import check_options
from personalign.audit.representation import representation
from personalign.audit.social_choice import social_choice
from personalign.audit.structure import SPEARMAN_BROWN_RULE, structure_test
from personalign.audit.table import (
    Judgments,
    Pairs,
    comparison_table,
    judgments_from_data,
    judgments_from_pairs,
    pairs_from_comparisons,
    pairs_from_judgments,
    restrict,
    restrict_comparisons,
)
from personalign.data.core import PreferenceData
from personalign.data.validate import merged_repeats_note
from personalign.errors import DataError

GLOSSARY_COMMON = {
    "aggregate fit": "Share of a person's own pairs that one item-level Bradley-Terry reward, fitted on everybody's "
    "pooled pairs, orders as the person did (in sample; a score tie counts 1/2).",
    "Condorcet winner": "An item that a majority of the persons who ranked both prefers to every other item.",
    "Spearman-Brown": SPEARMAN_BROWN_RULE + ".",
}
GLOSSARY_UNITS = {
    "item": {
        "unit": "An item (a response to a prompt): a person's judgment is their rating or vote of it.",
        "Krippendorff's alpha": "Agreement between persons over the persons x items matrix (ordinal for ratings, "
        "nominal for votes with passes missing): 1 full agreement, 0 chance.",
        "contested share": "Share of items with >= 3 judges on a side whose larger side (above / below the neutral "
        "answer) holds under 80% of them: the data layer's one rule, as `data inspect` reports it.",
        "variance shares": "y = mu + item + person + residual by least squares, items first; shares "
        "df-corrected so that a person column of noise gets ~0.",
        "structure test": "Cross-validated gain of person offsets (+ a rank-2 person x item part) over the item "
        "mean, against the same gain with person ids shuffled within items (p-value, effect).",
    },
    "item pair": {
        "unit": "An unordered item pair {a, b}: a person's outcome is +1 when they sided with the pair's majority, "
        "-1 against it, 0 for a tie; ranking data contribute every pair of each ranking.",
        "Krippendorff's alpha": "Agreement between persons on which item of a pair wins, nominal over the persons x "
        "item pairs matrix (ties missing): 1 full agreement, 0 chance.",
        "contested share": "Share of item pairs with >= 3 judges on a side whose larger side holds under 80% of "
        "them: the data layer's rule for items applied to pair outcomes (a tie takes no side).",
        "variance shares": "y = pair + person + residual, sums of squares about 0 (an outcome's natural zero is no "
        "preference), pairs first, df-corrected; the person part is how consistently a person sides against "
        "majorities.",
        "structure test": "Cross-validated gain of person offsets (+ a rank-2 person x pair part) over the pair's "
        "mean outcome, against the same gain with person ids shuffled within item pairs (p-value, effect).",
    },
}


@dataclass
class AuditTables:
    """What every section reads: the item-level pointwise table (None for comparison data), the table of the
    agreement / variance / structure unit (items, or item pairs), and per-person item-level pairs."""

    j: Judgments | None
    units: Judgments
    pairs: Pairs
    persons: list[str]
    items: list[str]
    prompts: list[str]
    unit: str  # "item" | "item pair"
    unit_text: dict[str, str]
    kind: str
    scale: list[float] | None
    selection: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def pointwise_tables(
    data: PreferenceData,
    j: Judgments,
    max_items: int | None,
    min_judgments: int,
    max_pairs: int | None,
    seed: int,
) -> AuditTables:
    """The tables of ratings / votes data (unit: the item)."""
    n0 = (len(j.users), len(j.items), j.n)
    j = restrict(j, max_items, min_judgments)
    selection = {
        "max_items": max_items,
        "min_judgments": min_judgments,
        "before": {"persons": n0[0], "items": n0[1], "judgments": n0[2]},
        "after": {"persons": len(j.users), "items": len(j.items), "judgments": j.n},
    }
    pairs = pairs_from_judgments(j, max_pairs_per_person=max_pairs, seed=seed)
    return AuditTables(
        j, j, pairs, j.users, j.items, j.prompts, "item", {}, j.kind, list(j.scale), selection, list(j.notes)
    )


def comparison_tables(
    data: PreferenceData, max_items: int | None, min_judgments: int, item_text: dict[str, str]
) -> AuditTables:
    """The tables of comparison and ranking data (unit: the item pair)."""
    c0 = comparison_table(data)
    if not len(c0):
        raise DataError(
            f"{data.name}: no per-person comparisons or rankings (population-level data has no persons to audit)",
            field="user_id",
            expected="ratings, votes, comparisons or rankings with person ids",
        )
    c = restrict_comparisons(c0, max_items, min_judgments)
    pairs, persons, items = pairs_from_comparisons(c)
    if len(pairs) == 0:
        raise DataError(f"{data.name}: every comparison is a tie", field="tie", expected="strict comparisons")
    units, unit_text = judgments_from_pairs(c, persons, item_text)
    n_items = len(set(c0["chosen_id"]) | set(c0["rejected_id"]))
    selection = {
        "max_items": max_items,
        "min_judgments": min_judgments,
        "before": {"persons": int(c0["user_id"].nunique()), "items": n_items, "judgments": int(len(c0))},
        "after": {"persons": len(persons), "items": len(items), "judgments": int(len(c))},
    }
    prompt_of = dict(zip(data.items["item_id"].astype(str), data.items["prompt"].astype(str), strict=False))
    kinds = [k for k in ("comparisons", "rankings") if len(getattr(data, k))]
    notes = list(units.notes) + [
        "comparison data: agreement, the contested share, variance shares, groups and the structure test read "
        "item pairs (see the glossary)"
    ]
    if "rankings" in kinds:
        notes.append("rankings read as all their pairs (the earlier item wins)")
    return AuditTables(
        None,
        units,
        pairs,
        persons,
        items,
        [prompt_of.get(i, "") for i in items],
        "item pair",
        unit_text,
        " and ".join(kinds),
        None,
        selection,
        notes,
    )


def read_tables(
    data: PreferenceData,
    max_items: int | None,
    min_judgments: int,
    max_pairs: int | None,
    seed: int,
    item_text: dict[str, str],
) -> AuditTables:
    """The audit's tables of ``data``: ratings or votes when it has them, else comparisons and rankings."""
    j = judgments_from_data(data)
    if j is not None:
        t = pointwise_tables(data, j, max_items, min_judgments, max_pairs, seed)
        if len(data.comparisons) or len(data.rankings):
            t.notes.append(
                "the comparisons and rankings of this data are left out: its ratings / votes are audited"
            )
        return t
    if not (len(data.comparisons) or len(data.rankings)):
        raise DataError(
            f"{data.name}: no judgments to audit", expected="ratings, votes, comparisons or rankings"
        )
    return comparison_tables(data, max_items, min_judgments, item_text)


def run_audit(
    data: PreferenceData,
    *,
    group_by: list[str] | None = None,
    model_dir: str | Path | None = None,
    max_items: int | None = None,
    min_judgments: int = 1,
    sc_items: int = 40,
    polarity: str = "higher",
    n_permutations: int = 99,
    max_pairs_per_person: int | None = 2000,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Audit what one aggregated reward would hide in ``data``; returns every figure (private arrays under '_').

    ``max_items`` keeps the most-judged items (then persons with >= ``min_judgments`` judgments of them) for every
    section; ``sc_items`` caps the items of the social-choice profile; ``polarity`` 'lower' means a lower rating or
    vote is preferred (e.g. offensiveness) for social choice and welfare; ``n_permutations`` 0 skips the structure
    test. ``model_dir``: a saved personalign model whose per-person fit is set beside the aggregate's.
    """
    check_options(polarity, n_permutations, sc_items, max_items, min_judgments)
    sign = 1.0 if polarity == "higher" else -1.0
    timings: dict[str, float] = {}
    t0 = [time.perf_counter()]

    def lap(name: str, msg: str | None = None) -> None:
        timings[name] = round(time.perf_counter() - t0[0], 2)
        t0[0] = time.perf_counter()
        if msg and progress is not None:
            progress(msg)

    item_text = dict(zip(data.items["item_id"].astype(str), data.items["text"].astype(str), strict=False))
    t = read_tables(data, max_items, min_judgments, max_pairs_per_person, seed, item_text)
    res: dict[str, Any] = {"dataset": data.name, "summary_counts": data.counts(), "notes": list(t.notes)}
    merged = merged_repeats_note(data.meta.get("repeat_judgments"))
    if merged:
        res["notes"].insert(0, merged)
    res.update(selection=t.selection, kind=t.kind, unit=t.unit)
    if t.scale is not None:
        res["scale"] = t.scale
    res["persons"], res["items"], res["pairs"] = len(t.persons), len(t.items), int(len(t.pairs))
    if max_pairs_per_person is not None and t.j is not None:
        res["notes"].append(f"at most {max_pairs_per_person} derived pairs per person (sampled, seed {seed})")
    labels, gnotes = group_labels(data.users, t.persons, group_by)
    res["notes"] += gnotes
    res["group_columns"] = list(labels)
    lap("load", "heterogeneity")
    res["heterogeneity"] = heterogeneity(t.units)
    lap("heterogeneity", "who the average represents")
    res["representation"] = representation(
        t.pairs, persons=t.persons, items=t.items, prompts=t.prompts, model_dir=model_dir, item_text=item_text
    )
    lap("representation", "groups")
    if labels:
        rep = res["representation"]
        texts = t.unit_text or item_text
        res["groups"] = group_analysis(
            t.units, labels, person_acc=rep["_acc"], person_n=rep["_n"], item_text=texts
        )
        res["worst_group"] = worst_group(res["groups"])
        attach_fit_gaps(res["groups"], res["worst_group"], labels, rep["_acc"], rep["_n"], seed=seed)
    lap("groups", "social choice")
    res["social_choice"] = social_choice(
        t.j,
        t.pairs,
        item_ids=t.items,
        item_prompts=t.prompts,
        max_items=sc_items,
        sign=sign,
        groups=labels or None,
    )
    res["social_choice"]["polarity"] = polarity
    lap("social_choice", f"structure test ({n_permutations} permutations)")
    if n_permutations > 0:
        res["structure"] = structure_test(t.units, n_permutations=n_permutations, seed=seed)
        res["structure"]["unit"] = t.unit
    else:
        res["notes"].append("structure test skipped (--permutations 0)")
    lap("structure")
    res["item_text"] = {k: v[:200] for k, v in {**item_text, **t.unit_text}.items()}
    res["glossary"] = {**GLOSSARY_UNITS[t.unit], **GLOSSARY_COMMON}
    res["timings_s"] = timings
    res["headline"] = headline(res)
    return res


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """The figures an auditor reads first."""
    h = res.get("heterogeneity", {})
    sc = (res.get("social_choice") or {}).get("main") or {}
    rep = res.get("representation", {})
    st = res.get("structure", {})
    wg = res.get("worst_group")
    return {
        "persons": res["persons"],
        "items": res["items"],
        "unit": res.get("unit", "item"),
        "alpha": (h.get("krippendorff") or {}).get("alpha"),
        "contested_share": (h.get("contested") or {}).get("contested_share"),
        "person_share_of_variance": (h.get("variance") or {}).get("person_share"),
        "explained_variance_ratio": (h.get("variance") or {}).get("explained_variance_ratio"),
        "condorcet_winner_exists": None if not sc else sc.get("condorcet_winner") is not None,
        "three_cycles": (sc.get("cycles") or {}).get("three_cycles"),
        "three_cycles_significant": (sc.get("cycles") or {}).get("three_cycles_all_edges_significant"),
        "smith_set_size": sc.get("smith_set_size"),
        "rules_disagree": sc.get("any_disagreement"),
        "aggregate_fit_mean": rep.get("aggregated", {}).get("mean"),
        "share_below_60": rep.get("aggregated", {}).get("share_below_60"),
        "personalized_share_below_60": (rep.get("personalized") or {}).get("share_below_60"),
        "worst_group": None if not wg else f"{wg['column']}={wg['group']}",
        "worst_group_fit": None if not wg else wg["aggregate_fit_mean"],
        "structure_verdict": st.get("verdict"),
        "structure_p": st.get("p_value"),
        "structure_effect": st.get("effect_size"),
    }
