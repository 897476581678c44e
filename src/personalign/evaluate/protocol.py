"""The evaluation protocol: personalized against aggregated, per person, per group, for seen and new people.

Per seed (the seed fixes the split, the pair samples and the models' initialization):

1. :func:`personalign.data.split` separates persons (seen / unseen, ``unseen_user_frac``) and items or prompts
   (seen / unseen, ``unseen_item_frac``).
2. The *collaborative* hold-out: of each seen person's judgments on seen items, a ``collab_frac`` share of
   items that other persons also judged is held out (the recommender split). Models train on the rest.
3. Cells evaluated:
   - ``collaborative``: seen persons, items judged by others but not (in training) by this person;
   - ``unseen_items``: seen persons on items (prompts) nobody judged in training;
   - ``kshot``: unseen persons, adapted from k of their judgments on seen items (random, or chosen by
     ``suggest_query``), tested on unseen items; k = 0 is the population prior.
4. Every personalized model is also evaluated *collapsed* (every person at the population prior mean,
   ``model.collapsed()``) on the same pairs; the personal gain is personalized - collapsed, paired by seed.

Pointwise data (ratings, votes) becomes per-person pairs by the data layer's one rule (two items of one prompt the
same person judged differently: :mod:`personalign.data.pairs`), at most ``max_train_pairs`` / ``max_test_pairs`` per
person and cell (sampled by the seed). A vote's pass is an abstention here (``data.pointwise(passes=False)``): it is
neither a training nor a test judgment. Accuracy is per person, then averaged over persons (see
:mod:`personalign.evaluate.metrics`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import personalign.evaluate.metrics as M
from personalign.data.adapters.hh_rlhf import read_hh_rlhf
from personalign.data.core import COMPARISON_COLUMNS, KINDS, POPULATION_USER, PreferenceData
from personalign.data.files import to_jsonable
from personalign.data.pairs import pointwise_pairs, ranking_pairs
from personalign.data.splits import split as make_split
from personalign.errors import ConfigError, DataError
from personalign.evaluate.baselines import BASELINES, CrowdOracle, crowd_pointwise

TEXT_MODELS = ("bt", "group", "independent", "lowrank", "mixture")
ORACLES = ("crowd", "oracle")
DEFAULT_MODELS = ("majority", "choix", "crowd", "bt", "group", "independent", "lowrank", "mixture")
CELLS = ("collaborative", "unseen_items")
MAX_ADAPT_DIM = 64  # personal parts larger than this are not adapted from k examples (see kshot_eval)
SCALARS = (
    "accuracy",
    "pair_accuracy",
    "worst_decile",
    "worst_group",
    "group_gap",
    "max_group_gap",
    "contested_accuracy",
    "consensus_accuracy",
    "log_loss",
    "ece",
    "brier",
    "n_pairs",
    "n_persons",
)


@dataclass
class EvalConfig:
    """Every knob of one evaluation run (recorded in results.json)."""

    models: Sequence[str] = DEFAULT_MODELS
    seeds: int = 5
    first_seed: int = 0
    ks: Sequence[int] = (0, 1, 2, 5, 10, 20, 50)
    unseen_user_frac: float = 0.2
    unseen_item_frac: float = 0.2
    collab_frac: float = 0.2
    max_train_pairs: int = 200
    max_test_pairs: int = 100
    max_persons: int | None = None
    active: bool = True
    active_max_k: int = 20
    group_col: str | None = None
    min_group_persons: int = 5
    unit: str | None = None
    rank: int = 8
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    harmless_pairs: int = 300
    harmless_persons: int = 50
    # the low-rank personal part's strength, chosen per seed on training items held out from the fit
    # (an inner split by item/prompt); () keeps the model's default
    tune_l2_basis: tuple[float, ...] = (30.0, 300.0, 3000.0)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-safe data (what results.json records)."""
        d = asdict(self)
        d["models"], d["ks"] = list(self.models), list(self.ks)
        return d


# ----------------------------------------------------------------------------------------------- pairs
def held_only(pt: pd.DataFrame, held: set[tuple[str, str]]) -> pd.DataFrame:
    """The rows of a pointwise table whose (user, item) is held out.

    A test pair needs both of its items held out: a pair of one held-out and one training item leaks its label,
    because a pair exists only when the two values differ; with the training value known (say the person's
    lowest), that alone decides the answer, and a model that memorizes training labels looks personal.
    """
    m = np.fromiter(((u, i) in held for u, i in zip(pt["user_id"], pt["item_id"])), bool, len(pt))
    return pt[m]


def cap_pairs(comps: pd.DataFrame, cap: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """Non-tie comparisons, at most ``cap`` per person (random)."""
    c = comps[~comps["tie"].astype(bool)] if len(comps) else comps
    if cap is None or not len(c):
        return c.reset_index(drop=True)
    r = pd.Series(rng.random(len(c)), index=c.index).groupby(c["user_id"]).rank(method="first")
    return c[(r <= cap).to_numpy()].reset_index(drop=True)


def judgment_pairs(
    data: PreferenceData, cap: int | None, rng: np.random.Generator, held: set[tuple[str, str]] | None = None
) -> pd.DataFrame:
    """Every judgment of ``data`` as capped per-person pairs: ratings and votes (passes left out), native
    comparisons (ties left out) and rankings. With ``held`` only the pointwise judgments held out pair (see
    :func:`held_only`; held-out native comparisons come from :func:`collaborative_holdout`), persons only."""
    frames = []
    pt = data.pointwise(passes=False)
    if held is not None:
        pt = held_only(pt, held)
    if len(pt):
        frames.append(pointwise_pairs(pt, max_pairs_per_user=cap, rng=rng))
    if held is None and len(data.comparisons):
        frames.append(cap_pairs(data.comparisons, cap, rng))
    if held is None and len(data.rankings):
        frames.append(cap_pairs(ranking_pairs(data.rankings), cap, rng))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    return out[out["user_id"] != POPULATION_USER].reset_index(drop=True) if held is not None else out


def collaborative_holdout(
    train: PreferenceData, frac: float, rng: np.random.Generator
) -> tuple[PreferenceData, set[tuple[str, str]], pd.DataFrame]:
    """Hold out ``frac`` of each person's items that at least two other persons also judged (at least two items,
    so that a test pair of two held-out items can exist; see :func:`held_only`).

    Returns (data without the held-out judgments, the held-out (user, item) set, held-out native comparisons).
    """
    held: set[tuple[str, str]] = set()
    pt = train.pointwise(passes=False)
    tabs: dict[str, pd.DataFrame] = {}
    if len(pt):
        pt = pt[pt["user_id"] != POPULATION_USER]
        n_judges = pt.groupby("item_id")["user_id"].nunique()
        ok = set(n_judges[n_judges >= 3].index)  # the person plus at least two others
        for uid, g in pt.groupby("user_id", sort=True):
            cand = sorted(set(g["item_id"]) & ok)
            n = max(2, int(np.floor(frac * g["item_id"].nunique())))
            if len(g) < 4 or len(cand) < 2 or frac <= 0:
                continue
            for it in rng.choice(cand, size=min(n, len(cand)), replace=False):
                held.add((uid, str(it)))
        for k in ("ratings", "votes"):
            t = getattr(train, k)
            if len(t):
                m = np.array([(u, i) in held for u, i in zip(t["user_id"], t["item_id"])], dtype=bool)
                tabs[k] = t[~m]
    held_comps = pd.DataFrame(columns=COMPARISON_COLUMNS)
    c = train.comparisons
    if len(c):
        # native comparisons: hold out pairs whose two items were both judged by other persons
        personal = c["user_id"] != POPULATION_USER
        judges: dict[str, set[str]] = {}
        for col in ("chosen_id", "rejected_id"):
            for i, u in zip(c[col], c["user_id"]):
                judges.setdefault(i, set()).add(u)
        others = np.array(
            [len(judges[a]) >= 3 and len(judges[b]) >= 3 for a, b in zip(c["chosen_id"], c["rejected_id"])],
            dtype=bool,
        )
        r = rng.random(len(c))
        m = personal.to_numpy() & others & (r < frac)
        held_comps = c[m].reset_index(drop=True)
        tabs["comparisons"] = c[~m]
    return train.copy(**tabs), held, held_comps


def _pair_contested_fn(data: PreferenceData) -> Callable[[pd.DataFrame], np.ndarray]:
    """Per pair: 1 contested, 0 consensus, NaN unknown (items for pointwise data, item pairs for comparisons)."""
    items = data.contested_items()
    if len(items):
        return lambda df: M.pair_contested(df["chosen_id"], df["rejected_id"], items)
    c = data.comparisons
    c = c[(c["user_id"] != POPULATION_USER) & ~c["tie"].astype(bool)]
    if not len(c):
        return lambda df: np.full(len(df), np.nan)
    a, b = c["chosen_id"].astype(str).to_numpy(), c["rejected_id"].astype(str).to_numpy()
    key = np.where(a < b, a + "|" + b, b + "|" + a)
    first = (a < b).astype(float)
    g = pd.DataFrame({"k": key, "f": first}).groupby("k")["f"].agg(["mean", "size"])
    g = g[g["size"] >= 3]
    share = np.maximum(g["mean"], 1 - g["mean"])
    flag = (share < 0.8).astype(float).to_dict()

    def fn(df: pd.DataFrame) -> np.ndarray:
        x, y = df["chosen_id"].astype(str).to_numpy(), df["rejected_id"].astype(str).to_numpy()
        k = np.where(x < y, x + "|" + y, y + "|" + x)
        return np.array([flag.get(s, np.nan) for s in k], dtype=float)

    return fn


# ------------------------------------------------------------------------------------------- features
class _MemoEncoder:
    """Every text of the run encoded once (through the on-disk cache) and then served from memory."""

    def __init__(self, base: Any, texts: Sequence[str], show_progress: bool = True) -> None:
        self.base = base
        self.name = base.name
        self.dim = base.dim
        uniq = sorted({str(t) for t in texts if str(t)})
        mat = base.encode(uniq, show_progress=show_progress) if uniq else np.zeros((0, base.dim), np.float32)
        self.vec = dict(zip(uniq, np.asarray(mat, dtype=np.float32)))

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        missing = [t for t in {str(t) for t in texts} if t not in self.vec]
        if missing:
            for t, v in zip(missing, self.base.encode(missing)):
                self.vec[t] = np.asarray(v, dtype=np.float32)
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.vec[str(t)] for t in texts])

    def config(self) -> dict[str, Any]:
        cfg = getattr(self.base, "config", None)
        return cfg() if callable(cfg) else {"kind": "unknown", "name": self.name, "dim": self.dim}


def make_featurizer(
    encoder: str | Any, texts: Sequence[str], show_progress: bool = True, pair_mode: str = "auto"
) -> Any:
    """A PairFeaturizer over ``encoder`` ("minilm", "hashing" or an Encoder) with ``texts`` pre-encoded.

    ``pair_mode`` is the PairFeaturizer mode; "sentences" also encodes every sentence of every text up front.
    """
    from personalign.features import PairFeaturizer, get_encoder
    from personalign.features.pairs import split_sentences

    base = get_encoder(encoder, cache=True) if isinstance(encoder, str) else encoder
    if pair_mode == "sentences":
        texts = sorted({s for t in texts for s in split_sentences(str(t))} | set(texts))
    return PairFeaturizer(_MemoEncoder(base, texts, show_progress), mode=pair_mode)


def attribute_featurizer(data: PreferenceData) -> Any:
    """phi(x, y) = the true attribute vector of response y, for a synthetic population (``--encoder attributes``).

    These are the features the true reward is linear in, so models over them are limited only by what they
    learn about persons, not by what a text encoder recovers: the setting that isolates the personal model.
    Prompts get zero vectors (the pair mode is "response": phi ignores the prompt).
    """
    from personalign.features import PairFeaturizer, PrecomputedEncoder

    truth = data.meta.get("truth")
    if truth is None:
        raise ConfigError(
            "encoder 'attributes' needs a synthetic population (data.meta['truth']); "
            "real data has no true attributes: use minilm or hashing"
        )
    rows = truth.item_index(data.items["item_id"])
    vectors: dict[str, np.ndarray] = {}
    for text, r in zip(data.items["text"].astype(str), rows, strict=True):
        vec = truth.item_attrs[r].astype(np.float32)
        if text in vectors and not np.array_equal(vectors[text], vec):
            raise DataError("two synthetic items share a text but not their attributes", field="text")
        vectors[text] = vec
    A = truth.item_attrs.shape[1]
    for prompt in sorted(set(data.items["prompt"].astype(str)) - set(vectors)):
        vectors[prompt] = np.zeros(A, np.float32)
    return PairFeaturizer(PrecomputedEncoder(vectors, name="true-attributes"), mode="response")


def all_texts(data: PreferenceData, extra: pd.DataFrame | None = None) -> list[str]:
    texts = set(data.items["text"].astype(str)) | set(data.items["prompt"].astype(str))
    for k in KINDS:
        if len(t := getattr(data, k)) and "prompt" in t.columns:
            texts |= set(t["prompt"].astype(str))
    if len(data.comparisons):
        texts |= set(data.comparisons["chosen"].astype(str)) | set(data.comparisons["rejected"].astype(str))
    for k in ("ratings", "votes"):
        if len(t := getattr(data, k)):
            texts |= set(t["response"].astype(str))
    if extra is not None and len(extra):
        for col in ("prompt", "chosen", "rejected"):
            texts |= set(extra[col].astype(str))
    texts.discard("")
    return sorted(texts)


# -------------------------------------------------------------------------------------------- models
class TrueRewardOracle:
    """Synthetic data only: P(chosen > rejected) under each person's true reward (the best any model can do)."""

    personal = True
    name = "oracle"

    def __init__(self, truth: Any) -> None:
        self.truth = truth

    def fit(self, *args: Any, **kw: Any) -> TrueRewardOracle:
        return self

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        t = self.truth
        u = t.user_index(pairs["user_id"].to_numpy())
        d = t._reward_idx(u, t.item_index(pairs["chosen_id"].to_numpy())) - t._reward_idx(
            u, t.item_index(pairs["rejected_id"].to_numpy())
        )
        return 1 / (1 + np.exp(-np.clip(d / t.temperature, -50, 50)))

    def collapsed(self) -> TrueRewardOracle:
        return self


def build_model(name: str, featurizer: Any, seed: int, cfg: EvalConfig, data: PreferenceData) -> Any:
    """A fresh, unfitted model (text model from personalign.models, or a baseline) for one seed."""
    if name in BASELINES:
        return BASELINES[name]()
    if name == "oracle":
        return TrueRewardOracle(data.meta["truth"])
    from personalign.models import make_model

    kw: dict[str, Any] = {"featurizer": featurizer, "random_state": seed}
    if name == "lowrank":
        kw["rank"] = cfg.rank
    if name == "group":
        kw["group_col"] = cfg.group_col
    kw.update(cfg.model_params.get(name, {}))
    return make_model(name, **kw)


def is_personal(model: Any) -> bool:
    if hasattr(model, "personal"):
        return bool(model.personal)
    return getattr(model, "K_", 0) > 0


def default_group_col(data: PreferenceData) -> str | None:
    """The demographic column GroupBT uses by default: the first with 2-12 values, each held by >= 5 persons."""
    side = data.meta.get("side_information_columns")
    for c in side if side else M.group_columns(data.users, 12):
        if c not in data.users.columns:
            continue
        vc = data.users[c].dropna().astype(str).value_counts()
        if 2 <= len(vc) <= 12 and (vc >= 5).sum() >= 2:
            return c
    return None


# ------------------------------------------------------------------------------------------- k-shot
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def kshot_eval(
    model: Any,
    pools: dict[str, pd.DataFrame],
    tests: dict[str, pd.DataFrame],
    users: pd.DataFrame,
    ks: Sequence[int],
    rng: np.random.Generator,
    active_max_k: int = 0,
) -> dict[str, Any]:
    """Per-person probabilities on each unseen person's test pairs after adapting from k pool pairs.

    Returns ``{"random": {k: (uids, p)}, "active": {k: ...}, "collapsed": (uids, p)}`` (concatenated over persons).
    Random contexts are nested (the first k of one permutation per person), so the curve is not re-randomized per k.
    """
    rows = users.drop_duplicates("user_id").set_index("user_id")
    if getattr(model, "K_", 0) > MAX_ADAPT_DIM:
        # a d-dimensional personal part (independent BT, group offsets): one Laplace solve costs O(d^3) per person
        # and k, so these are evaluated at k = 0 only (their prior: population or demographic group)
        ks, active_max_k = [k for k in ks if k == 0] or [0], 0
    out: dict[str, Any] = {"random": {k: ([], []) for k in ks}, "active": {}, "collapsed": ([], [])}
    act_ks = [k for k in ks if k <= active_max_k] if active_max_k and hasattr(model, "query_scores") else []
    out["active"] = {k: ([], []) for k in act_ks}
    fast = hasattr(model, "example_arrays") and hasattr(model, "adapt_arrays")
    for uid in sorted(tests):
        test = tests[uid]
        pool = pools.get(uid)
        if pool is None:
            pool = test.iloc[:0]
        row = rows.loc[uid].to_dict() if uid in rows.index else None
        if fast:
            Dt, at, _, _ = model.example_arrays(test)
            prior = model.prior(row)
            pop = model.prior(None)
            out["collapsed"][0].append(np.full(len(test), uid, dtype=object))
            out["collapsed"][1].append(_sigmoid(at + Dt @ pop.mean) if pop.dim else _sigmoid(at))
            order = rng.permutation(len(pool))
            Dp, ap, yp, wp = model.example_arrays(pool.iloc[order]) if len(pool) else (None,) * 4
            for k in ks:
                kk = min(k, len(pool))
                post = model.adapt_arrays(Dp[:kk], ap[:kk], yp[:kk], wp[:kk], prior) if kk else prior
                p = _sigmoid(at + Dt @ post.mean) if post.dim else _sigmoid(at)
                out["random"][k][0].append(np.full(len(test), uid, dtype=object))
                out["random"][k][1].append(p)
            if act_ks and len(pool):
                post, remaining = prior, list(range(len(pool)))
                for step in range(0, max(act_ks) + 1):
                    if step in out["active"]:
                        p = _sigmoid(at + Dt @ post.mean) if post.dim else _sigmoid(at)
                        out["active"][step][0].append(np.full(len(test), uid, dtype=object))
                        out["active"][step][1].append(p)
                    if not remaining or step == max(act_ks):
                        if step < max(act_ks):  # pool exhausted: later k see the same posterior
                            for k2 in act_ks:
                                if k2 > step:
                                    out["active"][k2][0].append(np.full(len(test), uid, dtype=object))
                                    out["active"][k2][1].append(
                                        _sigmoid(at + Dt @ post.mean) if post.dim else _sigmoid(at)
                                    )
                        break
                    sc = model.query_scores(post, Dp[remaining], ap[remaining])
                    j = remaining.pop(int(np.argmax(sc)))
                    post = model.adapt_arrays(Dp[[j]], ap[[j]], yp[[j]], wp[[j]], post)
        else:  # item-level baselines and oracles: nothing to adapt
            p = model.predict_proba(test)
            for k in ks:
                out["random"][k][0].append(np.full(len(test), uid, dtype=object))
                out["random"][k][1].append(p)
            out["collapsed"][0].append(np.full(len(test), uid, dtype=object))
            out["collapsed"][1].append(model.collapsed().predict_proba(test))

    def cat(t: tuple[list, list]) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.concatenate(t[0]) if t[0] else np.zeros(0, object),
            np.concatenate(t[1]) if t[1] else np.zeros(0),
        )

    return {
        "random": {k: cat(v) for k, v in out["random"].items()},
        "active": {k: cat(v) for k, v in out["active"].items()},
        "collapsed": cat(out["collapsed"]),
    }


# ------------------------------------------------------------------------------------------- harmless
def harmless_pairs(path: Any, n: int, seed: int = 0) -> pd.DataFrame:
    """hh-rlhf harmless-base test pairs (read by the hh-rlhf adapter): the shared dialogue up to its last Assistant
    marker as prompt, the two final turns as responses; pairs with an empty or identical reply are left out and
    ``n`` are sampled by ``seed``."""
    c = read_hh_rlhf(path).comparisons
    df = pd.DataFrame({"prompt": c["prompt"].str.strip(), "chosen": c["chosen"], "rejected": c["rejected"]})
    df = df[(df["chosen"] != "") & (df["rejected"] != "") & (df["chosen"] != df["rejected"])]
    df = df.reset_index(drop=True)
    if n and len(df) > n:
        df = df.iloc[np.sort(np.random.default_rng(seed).choice(len(df), n, replace=False))]
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- run
@dataclass
class SeedResult:
    cells: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # cell -> model -> metrics
    kshot: dict[str, dict[str, dict[int, dict[str, Any]]]] = field(default_factory=dict)
    pointwise: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    harmless: dict[str, dict[str, float]] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)


def tune_l2_basis(
    name: str, featurizer: Any, seed: int, cfg: EvalConfig, data: PreferenceData, train_data: PreferenceData
) -> tuple[Any, dict[str, Any]]:
    """Pick ``l2_basis`` from ``cfg.tune_l2_basis`` by log-loss on an inner split of the training data by item
    (or prompt), then refit on all training data. Regularization chosen this way, not on a random split of
    judgments, is what lets a personal part that only memorizes a person's training items shrink away."""
    from personalign.data.splits import split_by_items

    inner_tr, inner_va = split_by_items(train_data.comparisons, 0.2, seed=seed)
    losses: dict[float, float] = {}
    for l2 in cfg.tune_l2_basis:
        m = build_model(name, featurizer, seed, cfg, data)
        m.l2_basis = l2
        m.fit(train_data.copy(comparisons=inner_tr))
        p = np.clip(m.predict_proba(inner_va), 1e-7, 1 - 1e-7)
        losses[l2] = float(-np.mean(np.log(p)))
    best = min(losses, key=losses.get)
    model = build_model(name, featurizer, seed, cfg, data)
    model.l2_basis = best
    model.fit(train_data)
    return model, {"l2_basis": best, "inner_val_log_loss": losses}


def _metrics(uid, p, users, contested, cfg: EvalConfig, group_cols) -> dict[str, Any]:
    return M.pair_metrics(uid, p, users, contested, group_cols, cfg.min_group_persons)


def _pointwise_metrics(
    pt: pd.DataFrame, pred: np.ndarray, binary: bool, contested: pd.Series
) -> dict[str, float]:
    d = pt.assign(pred=pred, err=np.abs(pred - pt["rating"].to_numpy(float)))
    out = {"mae": float(d.groupby("user_id")["err"].mean().mean()), "n": int(len(d))}
    if binary:
        lo, hi = float(pt["rating"].min()), float(pt["rating"].max())
        mid = (lo + hi) / 2
        d["ok"] = ((d["pred"] > mid) == (d["rating"] > mid)).astype(float)
        d.loc[d["pred"] == mid, "ok"] = 0.5
        out["label_accuracy"] = float(d.groupby("user_id")["ok"].mean().mean())
        c = d["item_id"].map(contested)
        for name, v in (("contested", True), ("consensus", False)):
            s = d[c == v]
            out[f"{name}_label_accuracy"] = (
                float(s.groupby("user_id")["ok"].mean().mean()) if len(s) else float("nan")
            )
    return out


@dataclass
class SeedPairs:
    """One seed's split turned into pairs: the fitting data, the held-out set, the training pairs and the test
    cells (persons seen), with the k-shot pools and tests of the unseen persons."""

    fit_data: PreferenceData
    held: set[tuple[str, str]]
    train_pairs: pd.DataFrame
    cells: dict[str, pd.DataFrame]
    pools: dict[str, pd.DataFrame]
    tests: dict[str, pd.DataFrame]


def seed_pairs(
    data: PreferenceData, sp: Any, cfg: EvalConfig, rng: np.random.Generator, seed: int
) -> SeedPairs:
    """The pairs of one seed's split, every sample drawn from ``rng`` in a fixed order."""
    fit_data, held, held_comps = collaborative_holdout(sp.train, cfg.collab_frac, rng)
    train_pairs = judgment_pairs(fit_data, cfg.max_train_pairs, rng)
    if len(train_pairs) == 0:
        raise DataError(
            f"{data.name}: no training pairs after the split (seed {seed})",
            field="judgments",
            expected="persons who judged at least two items differently",
        )
    collab = judgment_pairs(sp.train, cfg.max_test_pairs, rng, held=held) if held else held_comps
    if len(held_comps) and held:
        collab = pd.concat([collab, cap_pairs(held_comps, cfg.max_test_pairs, rng)], ignore_index=True)
    elif len(held_comps):
        collab = cap_pairs(held_comps, cfg.max_test_pairs, rng)
    unseen = judgment_pairs(sp.seen_users_unseen_items, cfg.max_test_pairs, rng)
    cells = {"collaborative": collab, "unseen_items": unseen[unseen["user_id"] != POPULATION_USER]}
    pool_all = judgment_pairs(sp.unseen_users_seen_items, max(cfg.ks) if cfg.ks else 0, rng)
    test_all = judgment_pairs(sp.unseen_users_unseen_items, cfg.max_test_pairs, rng)
    tests = {u: g.reset_index(drop=True) for u, g in test_all.groupby("user_id")}
    pools = {u: g.reset_index(drop=True) for u, g in pool_all.groupby("user_id")}
    return SeedPairs(fit_data, held, train_pairs, cells, pools, tests)


COLLAPSED_KEYS = (
    "accuracy",
    "consensus_accuracy",
    "contested_accuracy",
    "worst_group",
    "worst_decile",
    "log_loss",
)


def cell_metrics(
    model: Any,
    coll: Any,
    df: pd.DataFrame,
    contested: np.ndarray,
    data: PreferenceData,
    cfg: EvalConfig,
    group_cols: list[str],
) -> dict[str, Any]:
    """Every pairwise metric of a model on one test cell, with its collapsed control's (``coll``) main figures."""
    uid = df["user_id"].to_numpy()
    m = _metrics(uid, model.predict_proba(df), data.users, contested, cfg, group_cols)
    mc = (
        _metrics(uid, coll.predict_proba(df), data.users, contested, cfg, group_cols)
        if coll is not model
        else m
    )
    m["collapsed"] = {k: mc[k] for k in COLLAPSED_KEYS if k in mc}
    return m


def kshot_metrics(
    model: Any, sp: SeedPairs, data: PreferenceData, cfg: EvalConfig, seed: int
) -> dict[str, Any]:
    """Accuracy of the unseen persons after k of their judgments (random and active), and at the collapsed prior."""
    personal = is_personal(model)
    ks_out = kshot_eval(
        model,
        sp.pools,
        sp.tests,
        data.users,
        cfg.ks,
        np.random.default_rng(seed + 1000),
        cfg.active_max_k if (cfg.active and personal) else 0,
    )
    kk: dict[str, dict[int, dict[str, Any]]] = {"random": {}, "active": {}}
    for mode in ("random", "active"):
        for k, (u, p) in ks_out[mode].items():
            if len(p):
                kk[mode][k] = {
                    "accuracy": M.mean_person_accuracy(u, p),
                    "log_loss": M.log_loss(p),
                    "per_person": M.per_person_accuracy(u, p),
                }
    u, p = ks_out["collapsed"]
    if len(p):
        kk["collapsed"] = {0: {"accuracy": M.mean_person_accuracy(u, p), "log_loss": M.log_loss(p)}}
    return kk


def harmless_metrics(
    model: Any, coll: Any, harmless: pd.DataFrame, train_pairs: pd.DataFrame, cfg: EvalConfig, seed: int
) -> dict[str, float] | None:
    """Accuracy on the universal (harmlessness) pairs for a sample of training persons, and collapsed."""
    persons = sorted(set(train_pairs["user_id"]) - {POPULATION_USER})
    if not persons:
        return None
    sel = np.random.default_rng(seed).choice(
        len(persons), min(cfg.harmless_persons, len(persons)), replace=False
    )
    us = [persons[i] for i in np.sort(sel)]
    cross = harmless.loc[harmless.index.repeat(len(us))].reset_index(drop=True)
    cross["user_id"] = np.tile(np.asarray(us, dtype=object), len(harmless))
    p = model.predict_proba(cross)
    pc = coll.predict_proba(cross) if coll is not model else p
    return {
        "accuracy": M.mean_person_accuracy(cross["user_id"], p),
        "collapsed": M.mean_person_accuracy(cross["user_id"], pc),
    }


def pointwise_cells(data: PreferenceData, sp: Any, pairs: SeedPairs) -> dict[str, dict[str, Any]]:
    """Label / rating predictions of the crowd references in the collaborative and unseen-items cells."""
    full_pt = data.pointwise(passes=False)
    if not len(full_pt):
        return {}
    binary = full_pt["rating"].nunique() == 2
    citems = data.contested_items()
    fit_pt = pairs.fit_data.pointwise(passes=False)
    pcells = {
        "collaborative": held_only(sp.train.pointwise(passes=False), pairs.held),
        "unseen_items": sp.seen_users_unseen_items.pointwise(passes=False),
    }
    out = {}
    for cname, tpt in pcells.items():
        if not len(tpt):
            continue
        tpt = tpt.reset_index(drop=True)
        preds = crowd_pointwise(full_pt, fit_pt, tpt)
        out[cname] = {k: _pointwise_metrics(tpt, v, binary, citems) for k, v in preds.items()}
    return out


def run_seed(
    data: PreferenceData,
    seed: int,
    cfg: EvalConfig,
    featurizer: Any,
    harmless: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """One seed of the protocol (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_prompts = len({p for k in KINDS for p in getattr(data, k)["prompt"].unique()})
    unit = cfg.unit or ("prompt" if n_prompts >= 20 else "item")
    sp = make_split(
        data,
        unseen_user_frac=cfg.unseen_user_frac,
        unseen_item_frac=cfg.unseen_item_frac,
        seed=seed,
        unit=unit,
    )
    pairs = seed_pairs(data, sp, cfg, rng, seed)
    contested_fn = _pair_contested_fn(data)
    contested = {c: contested_fn(df) if len(df) else np.zeros(0) for c, df in pairs.cells.items()}
    group_cols = M.group_columns(data.users)
    train_data = PreferenceData(
        comparisons=pairs.train_pairs,
        users=data.users,
        items=data.items,
        name=data.name,
        meta={k: v for k, v in data.meta.items() if k != "truth"},
    )
    res = SeedResult()
    for name in cfg.models:
        if progress:
            progress(f"seed {seed}: {name}")
        t0 = time.perf_counter()
        model = build_model(name, featurizer, seed, cfg, data)
        if isinstance(model, CrowdOracle):
            model.fit(data, pairs.train_pairs)
        elif name in BASELINES:
            model.fit(pairs.fit_data, pairs.train_pairs)
        elif name == "lowrank" and cfg.tune_l2_basis:
            model, res.chosen[name] = tune_l2_basis(name, featurizer, seed, cfg, data, train_data)
        elif name != "oracle":
            model.fit(train_data)
        res.fit_seconds[name] = time.perf_counter() - t0
        coll = model.collapsed() if is_personal(model) else model
        for cname, df in pairs.cells.items():
            if len(df):
                res.cells.setdefault(cname, {})[name] = cell_metrics(
                    model, coll, df, contested[cname], data, cfg, group_cols
                )
        if pairs.tests:
            res.kshot[name] = kshot_metrics(model, pairs, data, cfg, seed)
        if harmless is not None and len(harmless) and hasattr(model, "score") and name in TEXT_MODELS:
            h = harmless_metrics(model, coll, harmless, pairs.train_pairs, cfg, seed)
            if h is not None:
                res.harmless[name] = h
    res.pointwise = pointwise_cells(data, sp, pairs)
    return res


def merge_prompts(data: PreferenceData) -> PreferenceData:
    """Ratings and votes with the prompt folded into the response text (``prompt + "\n\n" + response``) and the
    prompt emptied, so that any two items of a person can form a pair (data where each item has its own prompt,
    e.g. MultiPICo's post/reply pairs). Item ids are kept."""
    tabs = {}
    for k in ("ratings", "votes"):
        t = getattr(data, k)
        if len(t):
            t = t.copy()
            has = t["prompt"] != ""
            t.loc[has, "response"] = t.loc[has, "prompt"] + "\n\n" + t.loc[has, "response"]
            t["prompt"] = ""
            tabs[k] = t
    return data.copy(**tabs)


def available_models(cfg: EvalConfig, data: PreferenceData) -> tuple[str, ...]:
    """The models of ``cfg`` that can run on ``data`` (GroupBT needs a demographic column, which it picks;
    unknown names are a ConfigError; a model not built in this version is left out with a warning)."""
    models = list(cfg.models)
    if "group" in models and cfg.group_col is None:
        cfg.group_col = default_group_col(data)
        if cfg.group_col is None:
            warnings.warn("no demographic column for GroupBT: it is left out", stacklevel=3)
            cfg.models = tuple(m for m in cfg.models if m != "group")
    unknown = [m for m in cfg.models if m not in BASELINES and m not in TEXT_MODELS and m != "oracle"]
    if unknown:
        raise ConfigError(
            f"unknown model(s) {unknown}; expected some of {sorted(set(BASELINES) | set(TEXT_MODELS))}"
        )
    avail = []
    for m in cfg.models:
        if m == "mixture":
            try:
                from personalign.models import make_model

                make_model("mixture")
            except Exception:  # not built yet in this version
                warnings.warn("the mixture model is not available: left out", stacklevel=3)
                continue
        avail.append(m)
    return tuple(avail)


def evaluate(
    data: PreferenceData,
    cfg: EvalConfig | None = None,
    *,
    encoder: str | Any = "minilm",
    harmless: pd.DataFrame | None = None,
    show_progress: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    pair_mode: str = "auto",
) -> dict[str, Any]:
    """Run the protocol over ``cfg.seeds`` seeds and aggregate every number with its spread (see results.json).

    ``encoder``: "minilm", "hashing", an Encoder, or "attributes" (synthetic data: the items' true attributes);
    ``pair_mode``: the PairFeaturizer mode for text encoders ("auto", "response" or "sentences");
    ``show_progress``: the encoder's own progress while embedding; ``progress(description, done, total)`` is
    called as each model of each seed starts (e.g. :func:`personalign.render.progress_bar`).
    """
    cfg = cfg or EvalConfig()
    t_start = time.perf_counter()
    models = list(dict.fromkeys(cfg.models))
    if "oracle" not in models and data.meta.get("truth") is not None:
        models.append("oracle")
    cfg.models = tuple(models)
    if cfg.max_persons is not None and data.n_users > cfg.max_persons:
        rng = np.random.default_rng(12345)
        keep = rng.choice(np.asarray(data.user_ids, dtype=object), cfg.max_persons, replace=False)
        data = data.filter_users(set(keep))
    cfg.models = available_models(cfg, data)
    t0 = time.perf_counter()
    featurizer = None
    if any(m in TEXT_MODELS for m in cfg.models):
        if isinstance(encoder, str) and encoder == "attributes":
            if harmless is not None and len(harmless):
                raise ConfigError(
                    "encoder 'attributes' has no vectors for harmlessness pairs: pass --harmless none"
                )
            featurizer = attribute_featurizer(data)
        else:
            featurizer = make_featurizer(
                encoder, all_texts(data, harmless), show_progress=show_progress, pair_mode=pair_mode
            )
    t_features = time.perf_counter() - t0
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    per_seed: list[SeedResult] = []
    total, done = len(seeds) * len(cfg.models), 0

    def step(description: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(description, done, total)

    if progress is not None:
        progress("evaluating", 0, total)
    for s in seeds:
        per_seed.append(run_seed(data, s, cfg, featurizer, harmless, progress=step))
    return aggregate(
        data,
        cfg,
        per_seed,
        seeds,
        {
            "features_s": t_features,
            "total_s": time.perf_counter() - t_start,
            "encoder": getattr(featurizer.encoder, "name", str(encoder)) if featurizer is not None else None,
            "pair_mode": featurizer.mode if featurizer is not None else None,
        },
    )


def cell_row(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's figures in one cell over seeds: every scalar, the collapsed control, the seed-paired gain and
    the consensus tax."""
    row = {k: M.interval([r.get(k, np.nan) for r in rs]) for k in SCALARS}
    row["worst_group_names"] = [r["worst_group_name"] for r in rs]
    acc = [r["accuracy"] for r in rs]
    cacc = [r["collapsed"]["accuracy"] for r in rs]
    row["collapsed_accuracy"] = M.interval(cacc)
    row["personal_gain"] = M.paired_difference(acc, cacc)
    cons = [r.get("consensus_accuracy", np.nan) for r in rs]
    ccons = [r["collapsed"].get("consensus_accuracy", np.nan) for r in rs]
    # the tax: consensus accuracy the personal part costs (collapsed - personalized; > 0 means lost)
    row["tax_consensus"] = M.paired_difference(ccons, cons)
    return row


def aggregate(
    data: PreferenceData,
    cfg: EvalConfig,
    per_seed: list[SeedResult],
    seeds: list[int],
    timing: dict[str, Any],
) -> dict[str, Any]:
    """Numbers over seeds: mean, std, 95% interval; personal gain paired by seed."""
    out: dict[str, Any] = {
        "dataset": data.name,
        "summary": to_jsonable(data.summary()),
        "config": cfg.to_dict(),
        "seeds": seeds,
        "timing": timing,
        "cells": {},
        "groups": {},
        "per_person": {},
        "kshot": {},
        "pointwise": {},
        "harmless": {},
        "fit_seconds": {},
    }
    models = list(cfg.models)
    for cell in CELLS:
        rows: dict[str, Any] = {}
        for m in models:
            rs = [r.cells.get(cell, {}).get(m) for r in per_seed]
            if not all(rs):
                continue
            rows[m] = cell_row(rs)
            grp: dict[str, dict[str, Any]] = {}
            for col in sorted({c for r in rs for c in r["groups"]}):
                vals = {v for r in rs for v in r["groups"].get(col, {})}
                grp[col] = {
                    v: M.interval([r["groups"].get(col, {}).get(v, np.nan) for r in rs]) for v in sorted(vals)
                }
            out["groups"].setdefault(cell, {})[m] = grp
            out["per_person"].setdefault(cell, {})[m] = [float(x) for x in rs[0]["per_person"].to_numpy()]
        # gains against aggregated BT too (seed-paired), where it ran
        if "bt" in rows:
            base = [r.cells[cell]["bt"]["accuracy"] for r in per_seed]
            for m in rows:
                rows[m]["gain_vs_bt"] = M.paired_difference(
                    [r.cells[cell][m]["accuracy"] for r in per_seed], base
                )
        out["cells"][cell] = rows
    for m in models:
        ks = [r.kshot.get(m) for r in per_seed]
        if not all(ks):
            continue
        entry: dict[str, Any] = {}
        coll = [k["collapsed"][0]["accuracy"] for k in ks] if all("collapsed" in k for k in ks) else None
        if coll:
            entry["collapsed"] = M.interval(coll)
        for mode in ("random", "active"):
            kvals = sorted({k for s in ks for k in s[mode]})
            if not kvals:
                continue
            entry[mode] = {}
            for k in kvals:
                acc = [s[mode].get(k, {}).get("accuracy", np.nan) for s in ks]
                e = M.interval(acc)
                if coll:
                    e["personal_gain"] = M.paired_difference(acc, coll)
                entry[mode][str(k)] = e
        out["kshot"][m] = entry
    for cell in sorted({c for r in per_seed for c in r.pointwise}):  # sorted: same file in every process
        preds = {p for r in per_seed for p in r.pointwise.get(cell, {})}
        out["pointwise"][cell] = {}
        for p in sorted(preds):
            rs = [r.pointwise[cell][p] for r in per_seed if p in r.pointwise.get(cell, {})]
            out["pointwise"][cell][p] = {k: M.interval([x.get(k, np.nan) for x in rs]) for k in rs[0]}
        if "crowd+offset" in preds and "crowd" in preds:
            key = "label_accuracy" if "label_accuracy" in per_seed[0].pointwise[cell]["crowd"] else "mae"
            out["pointwise"][cell]["offset_gain"] = {
                key: M.paired_difference(
                    [r.pointwise[cell]["crowd+offset"][key] for r in per_seed],
                    [r.pointwise[cell]["crowd"][key] for r in per_seed],
                )
            }
    for m in models:
        hs = [r.harmless.get(m) for r in per_seed]
        if all(hs) and hs:
            out["harmless"][m] = {
                "accuracy": M.interval([h["accuracy"] for h in hs]),
                "collapsed": M.interval([h["collapsed"] for h in hs]),
                "tax": M.paired_difference([h["collapsed"] for h in hs], [h["accuracy"] for h in hs]),
            }
    for m in models:
        out["fit_seconds"][m] = M.interval([r.fit_seconds.get(m, np.nan) for r in per_seed])
    out["chosen_hyperparameters"] = {
        m: [r.chosen.get(m) for r in per_seed] for m in models if any(m in r.chosen for r in per_seed)
    }
    return to_jsonable(out)
