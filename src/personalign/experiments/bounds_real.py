"""Universal scorers on real harm-labelled text: discrimination per source, calibrated miss rates, the default policy.

Items: :func:`personalign.bounds.realdata.real_harm_items` (HH-RLHF harmless pairs, ConvAbuse, the POPQUORN /
toxicity consensus items); every figure is on the items no evaluated scorer was trained on. Per seed the held-out
items are split (by group, stratified) into a calibration part and a test part: thresholds are calibrated on the
first (:func:`personalign.bounds.calibrate.calibrate_threshold`) and the achieved miss and over-block rates, with
Clopper-Pearson intervals, are measured on the second.

Scorers: the packaged harmlessness head and consensus scorer (as shipped), and per text encoder (``encoders``:
MiniLM by default; e5, MPNet, SmolLM2's hidden states, ...) a logistic classifier over its embeddings retrained on
the pooled training parts of all three sources (:func:`pooled_scorer`). Each text is encoded once per encoder
(:func:`encode_distinct`); an encoder whose measured speed says it would need more than ``encode_budget_s`` is
left out, with what was measured.

Transfer (:func:`transfer_table`): per encoder, the same classifier trained on the training items of one source
only, and on all pooled, with its held-out AUC on each source.

Policies: the packaged ``default`` policy with its shipped thresholds, the same with both learned constraints
calibrated to ``epsilon``, and each pooled scorer plus the default's rules, calibrated. On the HH test pairs (a
safe and an unsafe response to one prompt) the worst person's unsafe-win rate is the share of pairs whose unsafe
response the policy allows (a person who always prefers it gets it whenever it is allowed), and pairs whose two
responses both violate are refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
from personalign.errors import ConfigError
from personalign.features.cache import CachedEncoder
from personalign.features.encoders import PrecomputedEncoder

LEARNED = ("harmless", "not_consensus_offensive")  # the default policy's learned constraints
POOLED = "pooled MiniLM classifier (retrained)"
# how the registered encoders are named in the report (other specs are named by themselves)
ENCODER_LABELS = {"minilm": "MiniLM", "e5": "e5", "mpnet": "MPNet", "smollm2": "SmolLM2"}
TRAINED_ON = (*SOURCES, "pooled")  # the rows of a transfer table
ENCODE_CHUNK = 1000  # texts per encoder call (and per progress line, and per look at the time budget)


def pooled_scorer(
    items: pd.DataFrame, seed: int = 0, encoder: Any = None, sources: Sequence[str] | None = None
) -> ConsensusScorer:
    """A logistic classifier p(harmful | embedding of the text) fitted on the ``train`` items of every source (or
    of ``sources`` only), class-balanced, 10% of them held out for its own metrics; MiniLM unless ``encoder``."""
    from personalign.features import get_encoder

    tr = items[items["train"].to_numpy(bool)]
    if sources is not None:
        tr = tr[tr["source"].isin(list(sources)).to_numpy()]
    lab = pd.DataFrame({"text": tr["text"], "label": tr["label"], "source": tr["source"]})
    lab = lab.drop_duplicates("text").reset_index(drop=True)
    if lab["label"].nunique() < 2:
        raise ConfigError(f"training items of {list(sources or SOURCES)} hold a single label; cannot fit")
    enc = encoder if encoder is not None else get_encoder("minilm", cache=True)
    return ConsensusScorer(test_size=0.1, random_state=seed, encoder=enc).fit(lab)


def encoder_label(encoder: Any) -> str:
    """The report's name of an encoder: "MiniLM", "e5", "MPNet", "SmolLM2" for the registered names, else the
    spec itself (or an encoder object's ``name``)."""
    if isinstance(encoder, str):
        return ENCODER_LABELS.get(encoder.strip().lower(), encoder.strip())
    return str(getattr(encoder, "name", type(encoder).__name__))


def pooled_names(encoder: Any, epsilon: float) -> tuple[str, str]:
    """(scorer name, policy name) of an encoder's pooled classifier; MiniLM keeps the names it always had."""
    label = encoder_label(encoder)
    if label == "MiniLM":
        return POOLED, f"pooled classifier + rules, calibrated (epsilon {epsilon})"
    return (
        f"pooled {label} classifier (retrained)",
        f"pooled {label} classifier + rules, calibrated (epsilon {epsilon})",
    )


def _say(log: Callable[[str], None] | None, msg: str) -> None:
    if log is not None:
        log(msg)


def _uncached(encoder: Any, texts: list[str]) -> list[str]:
    """The texts an encoder would have to encode (those missing from its on-disk cache; all without one)."""
    return encoder.uncached(texts) if isinstance(encoder, CachedEncoder) else list(texts)


def encode_distinct(
    encoder: Any,
    texts: Sequence[str],
    label: str = "",
    log: Callable[[str], None] | None = None,
    budget_s: float | None = None,
    chunk: int | None = None,
    seed: int = 0,
) -> tuple[PrecomputedEncoder | None, dict[str, Any]]:
    """Every distinct text encoded once, as a :class:`PrecomputedEncoder` (the same vectors for every classifier
    fitted on them), and what it took: texts, how many were not yet cached, seconds.

    The texts to encode go in chunks of ``chunk`` (:data:`ENCODE_CHUNK`), in random order (so each chunk is a fair sample of the
    whole); after each chunk the seconds of the whole are projected from those so far, and with ``budget_s``,
    once the projection (or the time spent) exceeds it, encoding stops and the encoder is None: the info says
    what was measured (the chunks done stay in the encoder's feature cache). Progress goes to ``log``.
    """
    label = label or encoder_label(encoder)
    chunk = int(chunk or ENCODE_CHUNK)
    t0 = time.perf_counter()
    uniq = list(dict.fromkeys(str(t) for t in texts))
    todo = _uncached(encoder, uniq)
    info: dict[str, Any] = {"texts": len(uniq), "newly_encoded": len(todo), "skipped": False}
    _say(log, f"[{label}] {len(uniq)} distinct texts, {len(todo)} not yet in the feature cache")
    done: dict[str, np.ndarray] = {}
    if todo:
        done[todo[0]] = np.asarray(encoder.encode(todo[:1]), dtype=np.float32)[0]  # loads the model
        info["load_seconds"] = time.perf_counter() - t0
    rest = [t for t in uniq if t not in done]
    order = np.random.default_rng(seed).permutation(len(rest)) if todo else np.arange(len(rest))
    rest = [rest[i] for i in order]
    tc = time.perf_counter()
    for s in range(0, len(rest), chunk):
        part = rest[s : s + chunk]
        done.update(zip(part, np.asarray(encoder.encode(part), dtype=np.float32), strict=True))
        if not todo:
            continue
        n, spent = min(s + chunk, len(rest)), time.perf_counter() - tc
        projected = spent / n * len(rest)
        _say(log, f"[{label}] {n}/{len(rest)} texts in {spent:.0f} s (the whole: ~{projected:.0f} s)")
        if budget_s is not None and n < len(rest) and max(projected, spent) > budget_s:
            info.update(
                skipped=True,
                encoded_before_stopping=n + 1,
                encode_seconds=time.perf_counter() - t0,
                projected_seconds=projected + info.get("load_seconds", 0.0),
                budget_seconds=budget_s,
                reason=f"{n} of the {len(rest)} texts took {spent:.0f} s (after {info['load_seconds']:.0f} s "
                f"loading the model), so all would take ~{projected:.0f} s, over the budget of {budget_s:.0f} s",
            )
            _say(log, f"[{label}] left out: {info['reason']}")
            return None, info
    mat = np.stack([done[t] for t in uniq]) if uniq else np.zeros((0, int(encoder.dim)), np.float32)
    info.update(dim=int(mat.shape[1]), encode_seconds=time.perf_counter() - t0)
    _say(log, f"[{label}] encoded in {info['encode_seconds']:.0f} s")
    return PrecomputedEncoder((uniq, mat), name=str(getattr(encoder, "name", label))), info


def transfer_table(items: pd.DataFrame, fitted: dict[str, ConsensusScorer]) -> dict[str, Any]:
    """Held-out AUC (and balanced accuracy at the classifier's own threshold) on each source of each classifier
    in ``fitted`` (trained-on -> scorer): one row per training source, one column per source."""
    hi = items[~items["train"].to_numpy(bool)].reset_index(drop=True)
    prompts, texts = hi["prompt"].tolist(), hi["text"].tolist()
    out: dict[str, Any] = {"trained_on": list(fitted), "sources": list(SOURCES)}
    out["auc"], out["balanced_accuracy"], out["training"] = {}, {}, {}
    for tr, sc in fitted.items():
        d = discrimination(hi, np.asarray(sc.score(prompts, texts), dtype=np.float64), "max", sc.threshold_)
        out["auc"][tr] = {src: d[src]["auc"] for src in SOURCES if src in d}
        out["balanced_accuracy"][tr] = {src: d[src]["balanced_accuracy"] for src in SOURCES if src in d}
        m = sc.metrics_
        out["training"][tr] = {
            "items": m["n_items"],
            "harmful": m["n_positive"],
            "own_test_auc": m["test_auc"],
            "threshold": m["threshold"],
        }
    return out


def _harm(score: np.ndarray, direction: str) -> np.ndarray:
    """Scores oriented so that higher = more harmful (for AUC)."""
    return -score if direction == "min" else score


def safe_pass_ceiling(harm: np.ndarray, y: np.ndarray, epsilon: float) -> float:
    """The most safe items any threshold on ``harm`` (higher = more harmful) lets through while letting through at
    most ``epsilon`` of the harmful ones, the threshold chosen on these very items (an optimistic bound: no
    calibrated threshold does better): allow ``harm < t`` with ``t`` the ``epsilon`` quantile of the harmful
    items' scores."""
    h, s = np.sort(harm[y == 1]), harm[y == 0]
    if not len(h) or not len(s):
        return float("nan")
    k = int(np.floor(epsilon * len(h)))  # harmful items allowed: those strictly below the (k+1)-th lowest
    t = h[k] if k < len(h) else np.inf
    return float(np.mean(s < t))


def discrimination(
    items: pd.DataFrame, score: np.ndarray, direction: str, threshold: float, epsilon: float = 0.1
) -> dict[str, dict[str, Any]]:
    """Per source and pooled: AUC (harmful vs safe), accuracy and balanced accuracy at ``threshold``, the
    :func:`safe_pass_ceiling` at ``epsilon``; for HH also the pair accuracy (the chosen response scored safer
    than the rejected one)."""
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
            "safe_pass_ceiling": safe_pass_ceiling(hh[ok], yy[ok], epsilon),
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
    encoders: Sequence[Any] = ("minilm",),
    encode_budget_s: float | None = None,
    log: Callable[[str], None] | None = None,
    items: pd.DataFrame | None = None,
    shipped: bool = True,
    persons: bool = False,
) -> dict[str, Any]:
    """Every figure of the module docstring; writes ``real_report.json`` and ``real_report.md`` into ``out``.

    ``encoders``: one pooled classifier (and one transfer table, and one policy) per encoder, each a spec for
    :func:`personalign.features.get_encoder` (cached features) or an encoder object; ``pooled=False`` fits none.
    ``encode_budget_s``: leave out an encoder whose encoding would take longer (see :func:`encode_distinct`).
    ``log``: receives progress lines. ``items``: a :func:`real_harm_items` table to use instead of the shared
    data; ``shipped=False`` leaves out the packaged learned scorers (and the policies built on them).
    ``persons``: add the real raters' personal models under every policy
    (:func:`personalign.experiments.bounds_real_persons.rater_section`; needs the shared data).
    """
    t0 = time.perf_counter()
    items = real_harm_items(shared) if items is None else items.reset_index(drop=True)
    held = ~items["train"].to_numpy(bool)
    prompts, texts = items["prompt"].tolist(), items["text"].tolist()
    pol = load_policy("default")
    base = pol.resolve(".")
    rule_scores: dict[str, tuple[np.ndarray, float, str]] = {}
    scorers: dict[str, tuple[np.ndarray, str, float, tuple[str, ...]]] = {}
    labels = [encoder_label(e) for e in encoders] if pooled else []
    if len(set(labels)) < len(labels):
        raise ConfigError(f"encoders named twice: {labels}")
    info: dict[str, Any] = {}
    enc_info: dict[str, dict[str, Any]] = {}
    transfer: dict[str, Any] = {}
    pooled_training: dict[str, Any] = {}
    enc_scorer: dict[str, tuple[str, str]] = {}  # label -> (scorer name, policy name)
    # the retrained classifiers first (so that each encoder's seconds include encoding its texts), reported after
    # the shipped scorers
    retrained: dict[str, tuple[np.ndarray, str, float, tuple[str, ...]]] = {}
    for spec, label in zip(encoders if pooled else (), labels, strict=True):
        from personalign.features import get_encoder

        te = time.perf_counter()
        enc = get_encoder(spec, cache=True) if isinstance(spec, str) else spec
        lookup, einfo = encode_distinct(enc, texts, label, log, encode_budget_s)
        einfo = {"encoder": spec if isinstance(spec, str) else label, "name": str(enc.name), **einfo}
        enc_info[label] = einfo
        if lookup is None:
            einfo["seconds"] = time.perf_counter() - te
            continue
        tf = time.perf_counter()
        _say(log, f"[{label}] fitting the pooled classifier and one per source")
        fitted = {src: pooled_scorer(items, 0, lookup, sources=(src,)) for src in SOURCES}
        fitted["pooled"] = ps = pooled_scorer(items, 0, lookup)
        sname, pname = pooled_names(spec, epsilon)
        enc_scorer[label] = (sname, pname)
        retrained[sname] = (
            np.asarray(ps.score(prompts, texts), dtype=np.float64),
            "max",
            float(ps.threshold_),
            SOURCES,
        )
        pooled_training[label] = ps.metrics_
        if label == "MiniLM":
            info["pooled_training"] = ps.metrics_
        transfer[label] = transfer_table(items, fitted)
        einfo["fit_seconds"] = time.perf_counter() - tf
        einfo["seconds"] = time.perf_counter() - te
        auc = transfer[label]["auc"]["pooled"]
        _say(
            log,
            f"[{label}] done in {einfo['seconds']:.0f} s; pooled classifier's held-out AUC "
            + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()),
        )
    ts = time.perf_counter()
    if shipped:
        _say(log, "[shipped] scoring the items with the default policy's scorers")
    for c in pol.constraints:
        if c.name in LEARNED and not shipped:
            continue
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
    info["shipped_seconds"] = time.perf_counter() - ts
    scorers.update(retrained)
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
        "encoders": enc_info,
        "transfer": transfer,
        "pooled_training_by_encoder": pooled_training,
    }
    eval_seconds: dict[str, float] = {}  # scorer or policy -> seconds of its calibration runs
    for name, (s, direction, own, domain) in scorers.items():
        ts = time.perf_counter()
        sh = s[held]
        entry: dict[str, Any] = {
            "direction": direction,
            "own_threshold": own,
            "domain": list(domain),
            "held_out": discrimination(hi, sh, direction, own, epsilon),
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
        eval_seconds[name] = time.perf_counter() - ts
    # policies: the learned constraints and the default's rules together
    shipped_names = ["harmlessness head (shipped)", "consensus scorer (shipped)"]
    variants: dict[str, tuple[list[str], str]] = {}
    if all(m in scorers for m in shipped_names):
        variants["default (shipped thresholds)"] = (shipped_names, "own")
        variants[f"default, each learned constraint calibrated on its domain (epsilon {epsilon})"] = (
            shipped_names,
            "domain",
        )
        variants[f"default, learned constraints calibrated on all sources (epsilon {epsilon})"] = (
            shipped_names,
            "pooled",
        )
        variants[f"consensus scorer + rules (no HH head), calibrated on its domain (epsilon {epsilon})"] = (
            shipped_names[1:],
            "domain",
        )
    for sname, pname in enc_scorer.values():
        variants[pname] = ([sname], "pooled")
    rules_h = rules_ok[held]
    allowed_by_policy: dict[str, dict[int, np.ndarray]] = {}
    for vname, (members, mode) in variants.items():
        ts = time.perf_counter()
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
            allowed_by_policy.setdefault(vname, {})[seed] = allowed
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
        eval_seconds[vname] = time.perf_counter() - ts
    for label, (sname, pname) in enc_scorer.items():  # its share of the calibration runs
        extra = eval_seconds[sname] + eval_seconds[pname]
        enc_info[label]["evaluate_seconds"] = extra
        enc_info[label]["seconds"] += extra
    if persons:
        from personalign.bounds.scorers import default_shared_data
        from personalign.experiments.bounds_real_persons import rater_section

        sd = Path(shared) if shared is not None else default_shared_data()
        res["real_raters"] = rater_section(
            hi, sd, allowed_by_policy, {seed: ~splits[seed] for seed in seeds}, confidence, log=log
        )
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
        *_encoders_markdown(res),
        "## Held-out discrimination per source (scorer's own threshold)",
        "",
        f"*Safe-pass ceiling*: the most safe items any threshold on the score lets through while letting at most "
        f"{eps:.0%} of the harmful ones through, the threshold picked on these very items: an optimistic bound that "
        "no calibrated threshold (and so no policy of thresholds on this score) exceeds.",
        "",
        f"| scorer | source | n (harmful) | AUC | accuracy | balanced accuracy | HH pair accuracy "
        f"| safe-pass ceiling at miss <= {eps} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, e in res["scorers"].items():
        for src, r in e["held_out"].items():
            pa = f"{r['pair_accuracy']:.3f} ({r['pairs']} pairs)" if "pair_accuracy" in r else "-"
            ceil = r.get("safe_pass_ceiling")
            L.append(
                f"| {name} | {src} | {r['n']} ({r['n_harmful']}) | {r['auc']:.3f} | {r['accuracy']:.3f} | "
                f"{r['balanced_accuracy']:.3f} | {pa} | {'-' if ceil is None else f'{100 * ceil:.1f}%'} |"
            )
    L += [
        "",
        f"## Calibrated thresholds: miss rate <= {eps} at {conf:.0%} confidence",
        "",
        "Per seed, the held-out items are split in half (by pair / item, stratified by source and label); the "
        "threshold is calibrated on the harmful items of the first half (one-sided Clopper-Pearson bound) and "
        "measured on the second. *domain*: calibrated and measured on the scorer's own domain (harmlessness "
        "head: HH-RLHF; consensus scorer: ConvAbuse + toxicity-consensus; pooled classifiers: all three); "
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
    L += ["", *_transfer_markdown(res)]
    if res.get("real_raters"):
        from personalign.experiments.bounds_real_persons import rater_markdown

        safe = {k: v["mean"]["safe_pass"] for k, v in res["policies"].items()}
        L += ["", *rater_markdown(res["real_raters"], safe, eps)]
    L += ["", f"Seconds: {res['seconds']:.0f}", ""]
    return "\n".join(L)


def _encoders_markdown(res: dict[str, Any]) -> list[str]:
    """The encoders of the retrained classifiers and the seconds each took (empty without any)."""
    encs = res.get("encoders") or {}
    if not encs:
        return []
    L = [
        "## Encoders of the retrained classifiers",
        "",
        "Each distinct text is encoded once per encoder (vectors read from the on-disk feature cache when there); "
        "the same vectors feed the pooled classifier and the three single-source ones. Seconds: encoding (model "
        "load included), fitting the four classifiers and scoring, calibrating over the seeds, and in all. "
        "Shipped scorers (MiniLM features, scored after the encoders above): "
        f"{res.get('shipped_seconds', float('nan')):.0f} s.",
        "",
        "| encoder | model | dim | distinct texts | encoded now (not cached) | encode s | fit s | calibrate s | "
        "total s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    skipped = []
    for label, e in encs.items():
        if e.get("skipped"):
            skipped.append(f"{label} ({e['name']}): {e['reason']}")
            L.append(
                f"| {label} | {e['name']} | - | {e['texts']} | {e['newly_encoded']} | left out | | | "
                f"{e['seconds']:.0f} |"
            )
            continue
        L.append(
            f"| {label} | {e['name']} | {e['dim']} | {e['texts']} | {e['newly_encoded']} | "
            f"{e['encode_seconds']:.0f} | {e['fit_seconds']:.0f} | {e.get('evaluate_seconds', 0.0):.1f} | "
            f"{e['seconds']:.0f} |"
        )
    if skipped:
        L += [
            "",
            "Left out (projected from the random chunks of texts encoded before stopping): "
            + "; ".join(skipped)
            + ".",
        ]
    return [*L, ""]


def _transfer_markdown(res: dict[str, Any]) -> list[str]:
    """The transfer table (trained on one source or all, held-out AUC on each source) and its reading."""
    tr = res.get("transfer") or {}
    if not tr:
        return []
    L = [
        "## Transfer across sources (held-out AUC)",
        "",
        "Per encoder, the same class-balanced logistic classifier trained on the training items of one source "
        "only, or of all three pooled (the pooled classifier above), and its AUC on each source's held-out items.",
        "",
        "| encoder | trained on | training items (harmful) | " + " | ".join(SOURCES) + " |",
        "|---|---|---|" + "---|" * len(SOURCES),
    ]
    for label, t in tr.items():
        for row in t["trained_on"]:
            n = t["training"][row]
            L.append(
                f"| {label} | {row} | {n['items']} ({n['harmful']}) | "
                + " | ".join(f"{t['auc'][row][s]:.3f}" for s in SOURCES)
                + " |"
            )
    return [*L, "", transfer_reading(tr)]


def transfer_reading(transfer: dict[str, Any]) -> str:
    """One plain-words sentence on transfer tables: same-source against other-source AUC of the single-source
    classifiers, and how the pooled one compares with the best single-source one on each source."""
    same, other, gaps = [], [], []
    worst = (np.inf, "", "", "")
    for label, t in transfer.items():
        auc = t["auc"]
        for tr in SOURCES:
            for src in SOURCES:
                v = auc.get(tr, {}).get(src, float("nan"))
                if not np.isfinite(v):
                    continue
                (same if tr == src else other).append(v)
                if tr != src and v < worst[0]:
                    worst = (v, label, tr, src)
        for src in SOURCES:
            best = max(auc[tr][src] for tr in SOURCES if tr in auc)
            gaps.append((auc["pooled"][src] - best, label, src))
    if not same:
        return ""
    lo, hi = min(gaps), max(gaps)
    if hi[0] <= 0:
        pooled = f"{-hi[0]:.2f} to {-lo[0]:.2f} below"
    elif lo[0] >= 0:
        pooled = f"{lo[0]:.2f} to {hi[0]:.2f} above"
    else:
        pooled = f"from {-lo[0]:.2f} below to {hi[0]:.2f} above"
    return (
        f"Reading: a classifier trained on one source alone reaches a mean held-out AUC of {np.mean(same):.2f} "
        f"on that source but {np.mean(other):.2f} on the other two (lowest: {worst[1]} trained on {worst[2]}, "
        f"tested on {worst[3]}, {worst[0]:.2f}), and the one trained on all three pooled is {pooled} the best "
        f"single-source classifier of each source (its weakest case: {lo[1]} on {lo[2]})."
    )
