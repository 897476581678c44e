"""Social choice over items judged by many of the same people: majority graph, Condorcet, cycles, rules, welfare.

The profile: each person's judgments are a weak order over the items they judged (a higher rating or vote ranks
higher; items a person did not judge are left unranked, not ranked last). ``support[a, b]`` counts persons who
rank a strictly above b and ``margin = support - support.T``. Copeland, maximin (minimax), the Smith set and the
top cycle come from pref_voting on that margin graph; plurality from pref_voting's profile with ties (tied tops
split the vote); Borda, for partial ballots, is each item's sum of margins (the symmetric Borda score, which equals
Borda on complete ballots); the aggregated Bradley-Terry reward is fit on the pooled pairs with choix.
"""

from __future__ import annotations

from typing import Any

import choix
import networkx as nx
import numpy as np
from pref_voting import voting_methods as vm
from pref_voting.profiles_with_ties import ProfileWithTies
from pref_voting.weighted_majority_graphs import MarginGraph
from scipy.stats import binom, kendalltau

from personalign.audit.table import Judgments, Pairs


def support_matrix(pairs: Pairs) -> np.ndarray:
    """``S[a, b]``: number of persons who rank a strictly above b (each person counted once per pair of items)."""
    key = (pairs.u * pairs.n_items + pairs.a) * pairs.n_items + pairs.b
    key = np.unique(key)  # a person who judged the same pair twice counts once
    a = (key // pairs.n_items) % pairs.n_items
    b = key % pairs.n_items
    s = np.zeros((pairs.n_items, pairs.n_items))
    np.add.at(s, (a, b), 1.0)
    return s


def fit_bt(pairs_or_counts: Pairs | np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """Item-level Bradley-Terry strengths on pooled pairs: P(a > b) = sigmoid(theta_a - theta_b) (choix ILSR)."""
    c = pairs_or_counts.counts() if isinstance(pairs_or_counts, Pairs) else np.asarray(pairs_or_counts, float)
    if c.sum() == 0:
        return np.zeros(len(c))
    try:
        theta = choix.ilsr_pairwise_dense(c, alpha=alpha, max_iter=500, tol=1e-6)
    except RuntimeError:  # no convergence: the stable gradient method
        n = len(c)
        a, b = np.nonzero(c)
        data = [
            (int(x), int(y)) for x, y, k in zip(a, b, c[a, b].astype(int), strict=False) for _ in range(k)
        ]
        theta = choix.opt_pairwise(n, data, alpha=max(alpha, 1e-3), method="BFGS")
    return np.asarray(theta, float)


def _winners(scores: np.ndarray, tol: float = 1e-9) -> list[int]:
    return [int(x) for x in np.flatnonzero(scores >= scores.max() - tol)]


def _profile(j: Judgments, idx: np.ndarray, sign: float) -> ProfileWithTies:
    """pref_voting profile: one weak order per person over the items they judged (rank 1 best), anonymized."""
    pos = {int(x): k for k, x in enumerate(idx)}
    sel = np.isin(j.i, idx)
    u, i, y = j.u[sel], j.i[sel], sign * j.y[sel]
    order = np.argsort(u, kind="stable")
    u, i, y = u[order], i[order], y[order]
    bounds = np.flatnonzero(np.r_[True, u[1:] != u[:-1], True])
    ballots: dict[tuple, int] = {}
    for s, e in zip(bounds[:-1], bounds[1:], strict=False):
        vals = y[s:e]
        levels = np.unique(vals)[::-1]
        rank = {v: r + 1 for r, v in enumerate(levels)}
        key = tuple(sorted((pos[int(c)], rank[v]) for c, v in zip(i[s:e], vals, strict=False)))
        ballots[key] = ballots.get(key, 0) + 1
    rankings = [dict(k) for k in ballots]
    return ProfileWithTies(rankings, rcounts=list(ballots.values()), candidates=list(range(len(idx))))


def count_cycles(support: np.ndarray, max_length: int = 4, cap: int = 200_000) -> dict[str, Any]:
    """Majority cycles: 3-cycles exactly (trace(A^3) / 3), simple cycles up to ``max_length`` (capped count)."""
    A = (support > support.T).astype(float)
    tri = int(round(np.trace(A @ A @ A) / 3))
    g = nx.DiGraph(A)
    n_short, capped = 0, False
    for _ in nx.simple_cycles(g, length_bound=max_length):
        n_short += 1
        if n_short >= cap:
            capped = True
            break
    sccs = [c for c in nx.strongly_connected_components(g) if len(c) > 1]
    return {
        "three_cycles": tri,
        f"cycles_up_to_{max_length}": n_short,
        "count_capped": capped,
        "items_on_a_cycle": int(sum(len(c) for c in sccs)),
        "largest_cyclic_component": int(max((len(c) for c in sccs), default=0)),
    }


def significant_support(support: np.ndarray, level: float = 0.05) -> np.ndarray:
    """Majority edges a > b whose sign test (support a>b against b>a) rejects a tie at ``level``."""
    k, m = support, support.T
    # two-sided exact sign test: P = 2 * P(Bin(k + m, 1/2) <= m) for the winning side k > m
    p = np.minimum(1.0, 2 * binom.cdf(m, k + m, 0.5))
    return (k > m) & (p < level)


def find_cycle(support: np.ndarray, nodes: list[int]) -> list[int]:
    """One majority cycle through the given nodes' subgraph (the longest simple cycle found among a few), or []."""
    A = support > support.T
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from((a, b) for a in nodes for b in nodes if A[a, b])
    best: list[int] = []
    for k, c in enumerate(nx.simple_cycles(g, length_bound=min(len(nodes), 8))):
        if len(c) > len(best):
            best = c
        if k > 5000:
            break
    return [int(x) for x in best]


def welfare(
    j: Judgments, idx: np.ndarray, sign: float, groups: dict[str, np.ndarray] | None
) -> dict[str, Any]:
    """Per item: mean utility of its judges, the worst-off judge, the bottom decile and the worst group's mean.

    Utility = the judgment mapped to [0, 1] on the scale (flipped when lower values are preferred); groups
    (``{column: label per person}``) with under 3 judges of an item are skipped for that item.
    """
    util = j.utility() if sign > 0 else 1.0 - j.utility()
    res = {"mean": [], "min": [], "p10": [], "share_at_bottom": [], "worst_group": [], "worst_group_mean": []}
    for c in idx:
        m = j.i == c
        uu = util[m]
        res["mean"].append(float(uu.mean()) if len(uu) else np.nan)
        res["min"].append(float(uu.min()) if len(uu) else np.nan)
        res["p10"].append(float(np.quantile(uu, 0.1)) if len(uu) else np.nan)
        res["share_at_bottom"].append(float((uu <= 1e-9).mean()) if len(uu) else np.nan)
        worst, worst_v = None, np.inf
        for col, lab in (groups or {}).items():
            gl = lab[j.u[m]]
            for g in np.unique(gl[gl != ""]):
                sel = gl == g
                if sel.sum() >= 3 and uu[sel].mean() < worst_v:
                    worst, worst_v = f"{col}={g}", float(uu[sel].mean())
        res["worst_group"].append(worst)
        res["worst_group_mean"].append(None if worst is None else worst_v)
    return res


def analyze_profile(
    j: Judgments | None,
    pairs: Pairs,
    idx: np.ndarray,
    *,
    item_ids: list[str] | None = None,
    sign: float = 1.0,
    groups: dict[str, np.ndarray] | None = None,
    bt_alpha: float = 0.01,
) -> dict[str, Any]:
    """Every social-choice figure for the items ``idx`` (indices into the item list).

    Without a pointwise table ``j`` (comparison data), plurality and welfare are left out.
    """
    item_ids = j.items if j is not None else item_ids
    idx = np.asarray(idx)
    pos = -np.ones(len(item_ids), dtype=np.int64)
    pos[idx] = np.arange(len(idx))
    m = (pos[pairs.a] >= 0) & (pos[pairs.b] >= 0)
    # a lower-is-better polarity flips every pair
    a, b = (pos[pairs.a[m]], pos[pairs.b[m]]) if sign > 0 else (pos[pairs.b[m]], pos[pairs.a[m]])
    sub = Pairs(pairs.u[m], a, b, pairs.n_users, len(idx))
    S = support_matrix(sub)
    M = S - S.T
    n = len(idx)
    labels = [item_ids[k] for k in idx]
    mg = MarginGraph(
        list(range(n)), [(x, y, int(M[x, y])) for x in range(n) for y in range(n) if M[x, y] > 0]
    )
    cw = mg.condorcet_winner()
    wcw = mg.weak_condorcet_winner() or []
    smith = sorted(int(x) for x in vm.smith_set(mg))
    top_cycle = sorted(int(x) for x in vm.top_cycle(mg))
    copeland = sorted(int(x) for x in vm.copeland(mg))
    maximin = sorted(int(x) for x in vm.minimax(mg))
    borda_scores = M.sum(axis=1)
    borda = _winners(borda_scores)
    theta = fit_bt(sub.counts(), alpha=bt_alpha)
    bt = _winners(theta, tol=1e-7)
    rules = {"borda": borda, "copeland": copeland, "maximin": maximin, "bt": bt}
    if j is not None:
        prof = _profile(j, idx, sign)
        plur_scores = prof.tops_scores(score_type="split")
        rules["plurality"] = _winners(np.array([plur_scores[c] for c in range(n)], float))
    if cw is not None:
        rules_cw = {k: (int(cw) in v) for k, v in rules.items()}
    else:
        rules_cw = None
    distinct = sorted({w for v in rules.values() for w in v})
    disagree = {
        f"{r1}_vs_{r2}": not set(rules[r1]) & set(rules[r2])
        for k1, r1 in enumerate(rules)
        for r2 in list(rules)[k1 + 1 :]
    }
    tau = kendalltau(theta, borda_scores).statistic if n > 2 else None
    cycles = count_cycles(S)
    sig = significant_support(S)
    A_sig = sig.astype(float)
    sig_tri = int(round(np.trace(A_sig @ A_sig @ A_sig) / 3))
    cycle = find_cycle(S, smith) if len(smith) > 2 else []
    res = {
        "n_items": n,
        "n_persons": int(len(np.unique(sub.u))),
        "items": labels,
        "condorcet_winner": None if cw is None else labels[int(cw)],
        "weak_condorcet_winners": [labels[int(x)] for x in wcw],
        "smith_set": [labels[x] for x in smith],
        "smith_set_size": len(smith),
        "top_cycle_size": len(top_cycle),
        "cycles": {**cycles, "three_cycles_all_edges_significant": sig_tri},
        "cycle_drawn": [labels[x] for x in cycle],
        "winners": {k: [labels[x] for x in v] for k, v in rules.items()},
        "rule_contains_condorcet_winner": rules_cw,
        "distinct_winners": len(distinct),
        "rules_disagree": disagree,
        "any_disagreement": bool(any(disagree.values())),
        "kendall_tau_bt_borda": None if tau is None else float(tau),
        "welfare": None,
        "_support": S,
        "_theta": theta,
        "_borda": borda_scores,
        "_cycle_idx": cycle,
        "_smith_idx": smith,
    }
    if j is not None:
        res["welfare"] = welfare_choices(j, idx, labels, theta, sign, groups)
    return res


def welfare_choices(
    j: Judgments,
    idx: np.ndarray,
    labels: list[str],
    theta: np.ndarray,
    sign: float,
    groups: dict[str, np.ndarray] | None,
) -> dict[str, Any]:
    """Utilitarian and egalitarian choices among the items ``idx`` against the aggregate (BT) choice."""
    w = welfare(j, idx, sign, groups)
    mean_u = np.array(w["mean"])
    g_min = np.array([np.nan if v is None else v for v in w["worst_group_mean"]])
    util_choice = int(np.nanargmax(mean_u))
    egal_person = int(np.lexsort((-mean_u, -np.nan_to_num(np.array(w["p10"]), nan=-1)))[0])
    egal_group = (
        int(np.nanargmax(np.where(np.isnan(g_min), -np.inf, g_min))) if np.isfinite(g_min).any() else None
    )
    bt_choice = int(np.argmax(theta))

    def choice(c: int | None) -> dict[str, Any] | None:
        if c is None:
            return None
        return {
            "item": labels[c],
            "index": c,
            "mean_utility": w["mean"][c],
            "worst_person_utility": w["min"][c],
            "p10_person_utility": w["p10"][c],
            "share_of_judges_at_bottom": w["share_at_bottom"][c],
            "worst_group": w["worst_group"][c],
            "worst_group_mean_utility": w["worst_group_mean"][c],
        }

    return {
        "aggregate_bt_choice": choice(bt_choice),
        "utilitarian_choice": choice(util_choice),
        "egalitarian_person_choice": choice(egal_person),
        "egalitarian_group_choice": choice(egal_group),
        "egalitarian_person_rule": "max of the bottom-decile utility, then the mean",
        "egalitarian_group_rule": "max of the worst group's mean utility",
    }


def social_choice(
    j: Judgments | None,
    pairs: Pairs,
    *,
    item_ids: list[str] | None = None,
    item_prompts: list[str] | None = None,
    max_items: int = 40,
    sign: float = 1.0,
    groups: dict[str, np.ndarray] | None = None,
    max_prompts: int = 200,
) -> dict[str, Any]:
    """Social choice on the most-judged items; per prompt when items belong to several prompts (candidate sets)."""
    item_ids = j.items if j is not None else item_ids
    prompts = np.array(j.prompts if j is not None else item_prompts, dtype=object)
    n_all = len(item_ids)
    if j is not None:
        counts = np.bincount(j.i, minlength=n_all)
    else:
        counts = np.bincount(pairs.a, minlength=n_all) + np.bincount(pairs.b, minlength=n_all)
    uniq = np.unique(prompts)
    if len(uniq) == 1:
        idx = np.argsort(-counts, kind="stable")[:max_items]
        res = analyze_profile(j, pairs, np.sort(idx), item_ids=item_ids, sign=sign, groups=groups)
        res["selection"] = f"the {len(idx)} most-judged items of {n_all}"
        return {"mode": "single set", "main": res}
    per: list[dict[str, Any]] = []
    sets = []
    for p in uniq:
        idx = np.flatnonzero(prompts == p)
        if len(idx) >= 3:
            sets.append((counts[idx].sum(), p, idx[np.argsort(-counts[idx], kind="stable")[:max_items]]))
    sets.sort(key=lambda t: -t[0])
    for _, _p, idx in sets[:max_prompts]:
        r = analyze_profile(j, pairs, np.sort(idx), item_ids=item_ids, sign=sign, groups=None)
        if r["n_persons"] >= 3:
            per.append(r)
    if not per:
        return {
            "mode": "per prompt",
            "note": "no prompt has 3+ candidates judged by 3+ persons",
            "main": None,
        }
    main = analyze_profile(j, pairs, np.sort(sets[0][2]), item_ids=item_ids, sign=sign, groups=groups)
    main["selection"] = "the prompt with the most judgments"
    return {
        "mode": "per prompt",
        "prompts_analyzed": len(per),
        "share_with_condorcet_winner": float(np.mean([r["condorcet_winner"] is not None for r in per])),
        "share_with_cycle": float(np.mean([r["cycles"]["three_cycles"] > 0 for r in per])),
        "share_rules_disagree": float(np.mean([r["any_disagreement"] for r in per])),
        "main": main,
    }
