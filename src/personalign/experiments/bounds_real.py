"""Universal scorers on real harm-labelled text: discrimination per source, calibrated miss rates, the default policy.

Items: :func:`personalign.bounds.realdata.real_harm_items` (HH-RLHF harmless pairs, ConvAbuse, the POPQUORN /
toxicity consensus items); every figure is on the items no evaluated scorer was trained on. Per seed the held-out
items are split (by group, stratified) into a calibration part and a test part: thresholds are calibrated on the
first (:func:`personalign.bounds.calibrate.calibrate_threshold`) and the achieved miss and over-block rates, with
Clopper-Pearson intervals, are measured on the second.

Scorers: the packaged harmlessness head and consensus scorer (as shipped), and a logistic classifier over MiniLM
embeddings retrained on the pooled training parts of all three sources (:func:`pooled_scorer`).

Policies: the packaged ``default`` policy with its shipped thresholds, the same with both learned constraints
calibrated to ``epsilon``, and the pooled scorer plus the default's rules, calibrated. On the HH test pairs (a
safe and an unsafe response to one prompt) the worst person's unsafe-win rate is the share of pairs whose unsafe
response the policy allows (a person who always prefers it gets it whenever it is allowed), and pairs whose two
responses both violate are refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from personalign.bounds.calibrate import Rate, calibrate_threshold, held_out_rates, passes
from personalign.bounds.policy import load_policy
from personalign.bounds.realdata import DOMAINS, SOURCES, calibration_split, real_harm_items
from personalign.bounds.scorers import ConsensusScorer, build_scorer
from personalign.data.files import dumps_json, to_jsonable, write_text_atomic

LEARNED = ("harmless", "not_consensus_offensive")  # the default policy's learned constraints
POOLED = "pooled MiniLM classifier (retrained)"


def pooled_scorer(items: pd.DataFrame, seed: int = 0, encoder: Any = None) -> ConsensusScorer:
    """A logistic classifier p(harmful | MiniLM embedding of the text) fitted on the ``train`` items of every
    source (class-balanced; 10% of them held out for its own metrics)."""
    from personalign.features import get_encoder

    tr = items[items["train"].to_numpy(bool)]
    lab = pd.DataFrame({"text": tr["text"], "label": tr["label"], "source": tr["source"]})
    lab = lab.drop_duplicates("text").reset_index(drop=True)
    enc = encoder if encoder is not None else get_encoder("minilm", cache=True)
    return ConsensusScorer(test_size=0.1, random_state=seed, encoder=enc).fit(lab)


def _harm(score: np.ndarray, direction: str) -> np.ndarray:
    """Scores oriented so that higher = more harmful (for AUC)."""
    return -score if direction == "min" else score


def discrimination(
    items: pd.DataFrame, score: np.ndarray, direction: str, threshold: float
) -> dict[str, dict[str, Any]]:
    """Per source and pooled: AUC (harmful vs safe), accuracy and balanced accuracy at ``threshold``; for HH also
    the pair accuracy (the chosen response scored safer than the rejected one)."""
    out = {}
    harm = _harm(score, direction)
    blocked = ~passes(score, threshold, direction)
    y = items["label"].to_numpy(int)
    for src in (*SOURCES, "pooled"):
        m = np.ones(len(items), bool) if src == "pooled" else (items["source"] == src).to_numpy()
        if not m.any():
            continue
        yy, hh, bb = y[m], harm[m], blocked[m]
        ok = np.isfinite(hh)
        row: dict[str, Any] = {
            "n": int(m.sum()),
            "n_harmful": int(yy.sum()),
            "auc": float(roc_auc_score(yy[ok], hh[ok])) if len(set(yy[ok])) == 2 else float("nan"),
            "accuracy": float(np.mean(bb == (yy == 1))),
            "balanced_accuracy": float((np.mean(bb[yy == 1]) + np.mean(~bb[yy == 0])) / 2),
        }
        if src == "hh-rlhf":
            g = items.loc[m, "group"].to_numpy()
            d = pd.DataFrame({"g": g, "y": yy, "h": hh}).pivot_table(index="g", columns="y", values="h")
            row["pair_accuracy"] = float(np.mean(d[0] < d[1]))
            row["pairs"] = int(len(d))
        out[src] = row
    return out


def _rates_by_source(
    items: pd.DataFrame,
    score: np.ndarray,
    threshold: float,
    direction: str,
    mask: np.ndarray,
    conf: float,
    domain: Sequence[str] = SOURCES,
) -> dict[str, Any]:
    """Miss / over-block at ``threshold`` on the ``mask`` items: pooled, in ``domain``, and per source."""
    out = {}
    y = items["label"].to_numpy(int)
    src_of = items["source"].to_numpy()
    groups = {"pooled": np.ones(len(items), bool), "domain": np.isin(src_of, list(domain))}
    groups |= {src: src_of == src for src in SOURCES}
    for key, g in groups.items():
        m = mask & g
        if m.any():
            out[key] = held_out_rates(score[m & (y == 1)], score[m & (y == 0)], threshold, direction, conf)
    return out


def _policy_outcome(
    items: pd.DataFrame, allowed: np.ndarray, test: np.ndarray, conf: float
) -> dict[str, Any]:
    """Safe pass / harmful miss on the test items (pooled and per source) and, on the HH test pairs, the refused
    share and the worst person's unsafe-win rate."""
    y = items["label"].to_numpy(int)
    res: dict[str, Any] = {}
    for src in ("pooled", *SOURCES):
        m = test & (np.ones(len(items), bool) if src == "pooled" else (items["source"] == src).to_numpy())
        s, h = m & (y == 0), m & (y == 1)
        res[src] = {
            "safe_pass": Rate.of(int(allowed[s].sum()), int(s.sum()), conf).to_dict(),
            "miss": Rate.of(int(allowed[h].sum()), int(h.sum()), conf).to_dict(),
        }
    hm = test & (items["source"] == "hh-rlhf").to_numpy()
    d = pd.DataFrame({"g": items["group"].to_numpy()[hm], "y": y[hm], "a": allowed[hm]}).pivot_table(
        index="g", columns="y", values="a", aggfunc="max"
    )
    safe_ok, unsafe_ok = d[0].astype(bool).to_numpy(), d[1].astype(bool).to_numpy()
    n = len(d)
    res["hh_pairs"] = {
        "pairs": n,
        "refused": Rate.of(int(np.sum(~safe_ok & ~unsafe_ok)), n, conf).to_dict(),
        "worst_person_unsafe_win": Rate.of(int(unsafe_ok.sum()), n, conf).to_dict(),
        "worst_person_unsafe_win_without_policy": 1.0,
        "safe_served_to_safe_preferring_person": Rate.of(int(safe_ok.sum()), n, conf).to_dict(),
    }
    return res


def run_real_report(
    out: str | Path | None = None,
    shared: str | Path | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    epsilon: float = 0.1,
    confidence: float = 0.95,
    pooled: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Every figure of the module docstring; writes ``real_report.json`` and ``real_report.md`` into ``out``."""
    t0 = time.perf_counter()
    items = real_harm_items(shared)
    held = ~items["train"].to_numpy(bool)
    prompts, texts = items["prompt"].tolist(), items["text"].tolist()
    pol = load_policy("default")
    base = pol.resolve(".")
    rule_scores: dict[str, tuple[np.ndarray, float, str]] = {}
    scorers: dict[str, tuple[np.ndarray, str, float, tuple[str, ...]]] = {}
    for c in pol.constraints:
        sc = build_scorer(c.scorer, base, allow=pol.allowed, source=pol.source)
        s = np.asarray(sc.score(prompts, texts), dtype=np.float64)
        thr = float(sc.threshold_) if c.threshold == "calibrated" else float(c.threshold)
        if c.name in LEARNED:
            head = "harmlessness" if c.name == "harmless" else "consensus"
            scorers[f"{head} {'head' if head == 'harmlessness' else 'scorer'} (shipped)"] = (
                s,
                c.direction,
                thr,
                DOMAINS[head],
            )
        else:
            rule_scores[c.name] = (s, thr, c.direction)
    info: dict[str, Any] = {}
    if pooled:
        ps = pooled_scorer(items, seed=0)
        scorers[POOLED] = (
            np.asarray(ps.score(prompts, texts), dtype=np.float64),
            "max",
            float(ps.threshold_),
            SOURCES,
        )
        info["pooled_training"] = ps.metrics_
    rules_ok = np.ones(len(items), bool)
    for s, thr, direction in rule_scores.values():
        rules_ok &= passes(s, thr, direction)
    hi = items[held].reset_index(drop=True)
    y = hi["label"].to_numpy(int)
    src_h = hi["source"].to_numpy()
    splits = {seed: calibration_split(items, seed)[held] for seed in seeds}

    def calibrated(name: str, seed: int, where: str) -> Any:
        s, direction, _, domain = scorers[name]
        cal = splits[seed] & (np.isin(src_h, list(domain)) if where == "domain" else True)
        sh = s[held]
        return calibrate_threshold(sh[cal & (y == 1)], epsilon, confidence, direction, sh[cal & (y == 0)])

    res: dict[str, Any] = {
        "command": command,
        "epsilon": epsilon,
        "confidence": confidence,
        "seeds": list(seeds),
        "items": {
            f"{src}/{'train' if tr else 'held-out'}": {
                "harmful": int(g["label"].sum()),
                "safe": int((g["label"] == 0).sum()),
            }
            for (src, tr), g in items.groupby(["source", "train"])
        },
        # held-out texts that also occur among training texts (identical short replies, repeated utterances)
        "held_out_texts_also_in_training": {
            src: int(g["text"].isin(set(items.loc[~held, "text"])).sum())
            for src, g in items[held].groupby("source")
        },
        "scorers": {},
        "policies": {},
        **info,
    }
    for name, (s, direction, own, domain) in scorers.items():
        sh = s[held]
        entry: dict[str, Any] = {
            "direction": direction,
            "own_threshold": own,
            "domain": list(domain),
            "held_out": discrimination(hi, sh, direction, own),
            "seeds": [],
        }
        for seed in seeds:
            test = ~splits[seed]
            row: dict[str, Any] = {"seed": seed}
            for where in ("pooled", "domain"):
                tc = calibrated(name, seed, where)
                rates = _rates_by_source(hi, sh, tc.threshold, direction, test, confidence, domain)
                row[where] = {
                    "calibration": tc.to_dict(),
                    "test": rates,
                    "meets_bound": bool(rates[where]["miss"]["rate"] <= epsilon),
                    "consistent_with_bound": bool(rates[where]["miss"]["lo"] <= epsilon),
                }
            row["own_threshold"] = _rates_by_source(hi, sh, own, direction, test, confidence, domain)
            entry["seeds"].append(row)
        for where in ("pooled", "domain"):
            entry[f"seeds_meeting_bound_{where}"] = int(sum(r[where]["meets_bound"] for r in entry["seeds"]))
            entry[f"seeds_consistent_with_bound_{where}"] = int(
                sum(r[where]["consistent_with_bound"] for r in entry["seeds"])
            )
        res["scorers"][name] = entry
    # policies: the learned constraints and the default's rules together
    shipped = ["harmlessness head (shipped)", "consensus scorer (shipped)"]
    variants: dict[str, tuple[list[str], str]] = {
        "default (shipped thresholds)": (shipped, "own"),
        f"default, each learned constraint calibrated on its domain (epsilon {epsilon})": (shipped, "domain"),
        f"default, learned constraints calibrated on all sources (epsilon {epsilon})": (shipped, "pooled"),
    }
    variants[f"consensus scorer + rules (no HH head), calibrated on its domain (epsilon {epsilon})"] = (
        shipped[1:],
        "domain",
    )
    if pooled:
        variants[f"pooled classifier + rules, calibrated (epsilon {epsilon})"] = ([POOLED], "pooled")
    rules_h = rules_ok[held]
    for vname, (members, mode) in variants.items():
        per_seed = []
        for seed in seeds:
            allowed = rules_h.copy()
            thresholds = {}
            for m in members:
                s, direction, own, _ = scorers[m]
                thr = own if mode == "own" else calibrated(m, seed, mode).threshold
                thresholds[m] = thr
                allowed &= passes(s[held], thr, direction)
            out_seed = _policy_outcome(hi, allowed, ~splits[seed], confidence)
            per_seed.append({"seed": seed, "thresholds": thresholds, **out_seed})
        res["policies"][vname] = {
            "calibration": mode,
            "seeds": per_seed,
            "mean": {
                "safe_pass": float(np.mean([r["pooled"]["safe_pass"]["rate"] for r in per_seed])),
                "miss": float(np.mean([r["pooled"]["miss"]["rate"] for r in per_seed])),
                "hh_refused": float(np.mean([r["hh_pairs"]["refused"]["rate"] for r in per_seed])),
                "hh_worst_person_unsafe_win": float(
                    np.mean([r["hh_pairs"]["worst_person_unsafe_win"]["rate"] for r in per_seed])
                ),
            },
            "seeds_miss_within_epsilon": int(sum(r["pooled"]["miss"]["rate"] <= epsilon for r in per_seed)),
        }
    res["seconds"] = time.perf_counter() - t0
    res = to_jsonable(res)
    if out is not None:
        out = Path(out)
        write_text_atomic(out / "real_report.json", dumps_json(res, indent=1))
        write_text_atomic(out / "real_report.md", real_markdown(res))
    return res


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['rate']:.1f}% [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]"


def real_markdown(res: dict[str, Any]) -> str:
    """The markdown report of a :func:`run_real_report` result."""
    eps, conf = res["epsilon"], res["confidence"]
    L = ["# Universal scorers on real harm-labelled text", ""]
    if res.get("command"):
        L += ["Command:", "", f"    {res['command']}", ""]
    L += [
        "Items (harmful / safe): "
        + "; ".join(f"{k} {v['harmful']}/{v['safe']}" for k, v in res["items"].items())
        + ". Every figure below is on the held-out items (no evaluated scorer was trained on them). HH-RLHF: the "
        "rejected response counts as harmful, the chosen one as safe; ConvAbuse: median severity strong or very "
        "strong = harmful, every annotator 'not abusive' = safe; toxicity-consensus: POPQUORN / toxicity items "
        "nearly all raters judged offensive (harmful) or harmless (safe). Held-out texts that also occur among "
        "the training texts (identical short replies): "
        + ", ".join(f"{k} {v}" for k, v in res.get("held_out_texts_also_in_training", {}).items())
        + ".",
        "",
        "## Held-out discrimination per source (scorer's own threshold)",
        "",
        "| scorer | source | n (harmful) | AUC | accuracy | balanced accuracy | HH pair accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in res["scorers"].items():
        for src, r in e["held_out"].items():
            pa = f"{r['pair_accuracy']:.3f} ({r['pairs']} pairs)" if "pair_accuracy" in r else "-"
            L.append(
                f"| {name} | {src} | {r['n']} ({r['n_harmful']}) | {r['auc']:.3f} | {r['accuracy']:.3f} | "
                f"{r['balanced_accuracy']:.3f} | {pa} |"
            )
    L += [
        "",
        f"## Calibrated thresholds: miss rate <= {eps} at {conf:.0%} confidence",
        "",
        "Per seed, the held-out items are split in half (by pair / item, stratified by source and label); the "
        "threshold is calibrated on the harmful items of the first half (one-sided Clopper-Pearson bound) and "
        "measured on the second. *domain*: calibrated and measured on the scorer's own domain (harmlessness "
        "head: HH-RLHF; consensus scorer: ConvAbuse + toxicity-consensus; pooled classifier: all three); "
        "*all sources*: calibrated on every source pooled. Intervals: two-sided 95% Clopper-Pearson.",
        "",
        "| scorer | calibrated on | seed | threshold | test miss | test over-block | miss per source: hh / "
        "convabuse / consensus | over-block per source | own threshold: miss, over-block |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in res["scorers"].items():
        for where in ("domain", "pooled"):
            label = f"domain ({', '.join(e['domain'])})" if where == "domain" else "all sources"
            for r in e["seeds"]:
                tc, own = r[where]["test"], r["own_threshold"]
                per = " / ".join(f"{100 * tc[s]['miss']['rate']:.1f}%" for s in SOURCES if s in tc)
                pob = " / ".join(f"{100 * tc[s]['over_block']['rate']:.1f}%" for s in SOURCES if s in tc)
                L.append(
                    f"| {name} | {label} | {r['seed']} | {r[where]['calibration']['threshold']:.4g} | "
                    f"{_pct(tc[where]['miss'])} | {_pct(tc[where]['over_block'])} | {per} | {pob} | "
                    f"{100 * own[where]['miss']['rate']:.1f}%, {100 * own[where]['over_block']['rate']:.1f}% |"
                )
            k, kc, n = (
                e[f"seeds_meeting_bound_{where}"],
                e[f"seeds_consistent_with_bound_{where}"],
                len(e["seeds"]),
            )
            L.append(
                f"| {name} | {label} | seeds with test miss <= {eps}: **{k} of {n}** (interval reaching "
                f"<= {eps}: {kc} of {n}) | | | | | | |"
            )
    L += [
        "",
        "## Policies on the held-out test items (all seeds)",
        "",
        "Safe pass / miss: pooled test items allowed by every blocking constraint (the default's rules included). "
        "HH pairs: refused = both responses violate (answered by the refusal text, counted as safe); worst person "
        "= a person who always prefers the unsafe response gets it whenever the policy allows it (1.0 without a "
        "policy).",
        "",
        "| policy | seed | safe pass | miss | safe pass: hh / convabuse / consensus | miss: hh / convabuse / "
        "consensus | HH pairs refused | worst person's unsafe-win rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for vname, v in res["policies"].items():
        for r in v["seeds"]:
            hp = r["hh_pairs"]
            sp = " / ".join(f"{100 * r[s]['safe_pass']['rate']:.1f}%" for s in SOURCES)
            ms = " / ".join(f"{100 * r[s]['miss']['rate']:.1f}%" for s in SOURCES)
            L.append(
                f"| {vname} | {r['seed']} | {_pct(r['pooled']['safe_pass'])} | {_pct(r['pooled']['miss'])} | "
                f"{sp} | {ms} | {_pct(hp['refused'])} | {_pct(hp['worst_person_unsafe_win'])} |"
            )
        m = v["mean"]
        L.append(
            f"| {vname} | mean | {100 * m['safe_pass']:.1f}% | {100 * m['miss']:.1f}% | | | "
            f"{100 * m['hh_refused']:.1f}% | "
            f"{100 * m['hh_worst_person_unsafe_win']:.1f}% |"
        )
    L += ["", f"Seconds: {res['seconds']:.0f}", ""]
    return "\n".join(L)
