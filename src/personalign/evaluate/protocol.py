"""The evaluation protocol: personalized against aggregated, per person, per group, for seen and new people.

Per seed (the seed fixes the split, the pair samples and the models' initialization):

1. :func:`personalign.data.split` separates persons (seen / unseen, ``unseen_user_frac``) and items or prompts
   (seen / unseen, ``unseen_item_frac``; prompts when the data has at least 20, else items).
2. The *collaborative* hold-out (:mod:`personalign.evaluate.holdout`): for each seen person, a ``collab_frac``
   share of items that at least two other persons also judged is held out, for every kind of judgment; the
   person's test pairs are pairs of two held-out items and none of their training judgments touches one.
3. Cells evaluated:
   - ``collaborative``: seen persons, items judged by others but not (in training) by this person;
   - ``unseen_items``: seen persons on items (prompts) nobody judged in training;
   - ``kshot``: unseen persons, adapted from k of their judgments on seen items (random, or chosen by
     ``suggest_query``), tested on unseen items; k = 0 is the population prior.
4. Every personalized model is also evaluated *collapsed* (every person at the population prior mean,
   ``model.collapsed()``) on the same pairs; the personal gain is personalized - collapsed, paired by seed.
5. Models in ``cfg.tuned_models`` get their personal rank (0 included) and penalty chosen on an inner split of the
   training pairs grouped by item (:mod:`personalign.evaluate.tuning`).

A *transfer test* (``evaluate(train, cfg, test_data=other)``, ``personalign eval TRAIN --test OTHER``) fits every
model on all of one dataset and tests on another. The test data's items (prompts) are split by the seed in two
halves, adaptation items and test items. Cells: ``transfer_seen``, persons of the test data the training data
already has (same ``user_id``), with their trained parameters, on the test items; and the k-shot curve of the
test data's other persons, adapted from k of their judgments on the adaptation items and tested on the test
items (k = 0: the trained population as it is). The crowd oracle is the test data's leave-one-out crowd.

Pointwise data (ratings, votes) becomes per-person pairs by the data layer's one rule (two items of one prompt the
same person judged differently: :mod:`personalign.data.pairs`), rankings become every pair of the list; at most
``max_train_pairs`` / ``max_test_pairs`` per person and cell (sampled by the seed). A vote's pass is an abstention
here (``data.pointwise(passes=False)``). Accuracy is per person, then averaged over persons (see
:mod:`personalign.evaluate.metrics`). A cell without test pairs says why in ``cell_notes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import personalign.evaluate.metrics as M
from personalign.data.adapters.hh_rlhf import read_hh_rlhf
from personalign.data.core import KINDS, POPULATION_USER, PreferenceData
from personalign.data.files import to_jsonable
from personalign.data.splits import split as make_split
from personalign.errors import ConfigError, DataError
from personalign.evaluate.aggregate import SCALARS, aggregate, cell_row
from personalign.evaluate.candidates import (
    TrueRewardOracle,
    available_models,
    build_model,
    default_group_col,
    is_personal,
    is_text_model,
)
from personalign.evaluate.cells import (
    SeedContext,
    SeedResult,
    cell_metrics,
    evaluate_model,
    harmless_metrics,
    kshot_metrics,
    pointwise_cells,
)
from personalign.evaluate.config import BASE_MODELS, CELLS, TRANSFER_CELLS, EvalConfig, default_models
from personalign.evaluate.featurize import MemoEncoder, all_texts, attribute_featurizer, make_featurizer
from personalign.evaluate.holdout import (
    SeedPairs,
    cap_pairs,
    collaborative_holdout,
    crowd_reach,
    held_only,
    judgment_pairs,
    pair_contested_fn,
    seed_pairs,
)
from personalign.evaluate.kshot import MAX_ADAPT_DIM, kshot_eval

__all__ = [
    "BASE_MODELS",
    "CELLS",
    "EvalConfig",
    "EvalProgress",
    "HARM_WORDS",
    "MAX_ADAPT_DIM",
    "MemoEncoder",
    "SCALARS",
    "SeedPairs",
    "SeedResult",
    "TRANSFER_CELLS",
    "TrueRewardOracle",
    "aggregate",
    "all_texts",
    "attribute_featurizer",
    "available_models",
    "build_model",
    "cap_pairs",
    "cell_metrics",
    "cell_row",
    "collaborative_holdout",
    "default_group_col",
    "default_models",
    "evaluate",
    "harmless_metrics",
    "harmless_pairs",
    "held_only",
    "is_about_harm",
    "is_personal",
    "judgment_pairs",
    "kshot_eval",
    "kshot_metrics",
    "make_featurizer",
    "merge_prompts",
    "pointwise_cells",
    "run_seed",
    "run_transfer_seed",
    "seed_pairs",
]

# the harmlessness tax runs by default on data about harm: a dataset whose name holds one of these words (the
# toxicity, POPQUORN offensiveness and ConvAbuse readers name theirs so; hh-rlhf is harmlessness itself)
HARM_WORDS = ("toxic", "offens", "abus", "harm", "hate", "safety", "hh-rlhf")


def is_about_harm(data: PreferenceData) -> bool:
    """True when ``data``'s name says it is about harm (see :data:`HARM_WORDS`): the rule for ``--harmless auto``."""
    name = str(data.name or "").lower()
    return any(w in name for w in HARM_WORDS)


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


# ----------------------------------------------------------------------------------------------- progress
class EvalProgress:
    """Progress of a run for a ``callback(description, done, total)`` (e.g. :func:`personalign.render.progress_bar`):
    one unit per model and seed; the description names the seed, the model and its phase (fitting, tuning grid
    point i/n, test cells, k-shot)."""

    def __init__(self, callback: Callable[[str, int, int], None] | None, n_seeds: int, n_models: int) -> None:
        self.callback = callback
        self.n_seeds, self.total, self.done = n_seeds, n_seeds * n_models, 0
        self.prefix = "evaluating"

    def phase(self, text: str) -> None:
        if self.callback is not None:
            self.callback(f"{self.prefix}: {text}" if text else self.prefix, self.done, self.total)

    def begin(self, seed_no: int, model: str) -> None:
        self.prefix = f"seed {seed_no}/{self.n_seeds} · {model}"
        self.phase("fitting")

    def end(self) -> None:
        self.done += 1
        self.phase("done")


def as_progress(progress: EvalProgress | Callable[[str], None] | None, n_models: int) -> EvalProgress:
    """An :class:`EvalProgress` from what a caller of :func:`run_seed` passed (a one-argument callable is told
    each model as it starts)."""
    if isinstance(progress, EvalProgress):
        return progress
    p = EvalProgress(None, 1, n_models)
    if progress is not None:
        p.callback = lambda description, done, total: progress(description)
    return p


# ----------------------------------------------------------------------------------------------- one seed
def comparison_data(pairs: pd.DataFrame, data: PreferenceData) -> PreferenceData:
    """Training pairs as comparison data with ``data``'s persons and items (the truth of a synthetic population
    stays out: no model may read it)."""
    return PreferenceData(
        comparisons=pairs,
        users=data.users,
        items=data.items,
        name=data.name,
        meta={k: v for k, v in data.meta.items() if k != "truth"},
    )


def split_unit(data: PreferenceData, cfg: EvalConfig) -> str:
    """The unit of the item axis: ``cfg.unit``, else the prompt with at least 20 prompts, else the item."""
    n_prompts = len({p for k in KINDS for p in getattr(data, k)["prompt"].unique()})
    return cfg.unit or ("prompt" if n_prompts >= 20 else "item")


def run_models(
    ctx: SeedContext,
    seed: int,
    cfg: EvalConfig,
    featurizer: Any,
    harmless: pd.DataFrame | None,
    progress: EvalProgress,
    seed_no: int = 1,
) -> SeedResult:
    """Every model of ``cfg`` on one seed's context."""
    res = SeedResult(notes=dict(ctx.pairs.notes))
    for name in cfg.models:
        progress.begin(seed_no, name)
        evaluate_model(name, featurizer, seed, cfg, ctx, res, harmless, step=progress.phase)
        progress.end()
    return res


def run_seed(
    data: PreferenceData,
    seed: int,
    cfg: EvalConfig,
    featurizer: Any,
    harmless: pd.DataFrame | None = None,
    progress: EvalProgress | Callable[[str], None] | None = None,
    seed_no: int = 1,
) -> SeedResult:
    """One seed of the protocol (see the module docstring)."""
    rng = np.random.default_rng(seed)
    sp = make_split(
        data,
        unseen_user_frac=cfg.unseen_user_frac,
        unseen_item_frac=cfg.unseen_item_frac,
        seed=seed,
        unit=split_unit(data, cfg),
    )
    pairs = seed_pairs(data, sp, cfg, rng, seed)
    contested_fn = pair_contested_fn(data)
    ctx = SeedContext(
        data=data,
        fit_data=pairs.fit_data,
        train_data=comparison_data(pairs.train_pairs, data),
        pairs=pairs,
        contested={c: contested_fn(df) if len(df) else np.zeros(0) for c, df in pairs.cells.items()},
        group_cols=M.group_columns(data.users),
        crowd_data=data,
        crowd_pairs=pairs.train_pairs,
    )
    res = run_models(ctx, seed, cfg, featurizer, harmless, as_progress(progress, len(cfg.models)), seed_no)
    res.pointwise = pointwise_cells(data, sp, pairs)
    res.reach = crowd_reach(data, pairs.fit_data, pairs.cells["collaborative"])
    return res


def transfer_pairs(train: PreferenceData, test: PreferenceData, cfg: EvalConfig, seed: int) -> SeedPairs:
    """One seed's pairs of a transfer test (see the module docstring)."""
    rng = np.random.default_rng(seed)
    train_pairs = judgment_pairs(train, cfg.max_train_pairs, rng)
    if not len(train_pairs):
        raise DataError(
            f"{train.name}: no training pairs", field="judgments", expected="judgments that pair up"
        )
    sp = make_split(test, unseen_user_frac=0.0, unseen_item_frac=0.5, seed=seed, unit=split_unit(test, cfg))
    known = set(train.user_ids) - {POPULATION_USER}
    test_pairs = judgment_pairs(sp.seen_users_unseen_items, cfg.max_test_pairs, rng)
    test_pairs = test_pairs[test_pairs["user_id"] != POPULATION_USER]
    pool_all = judgment_pairs(sp.train, max(cfg.ks) if cfg.ks else 0, rng)
    seen = test_pairs[test_pairs["user_id"].isin(known)].reset_index(drop=True)
    new = test_pairs[~test_pairs["user_id"].isin(known)]
    tests = {u: g.reset_index(drop=True) for u, g in new.groupby("user_id")}
    pools = {
        u: g.reset_index(drop=True) for u, g in pool_all[~pool_all["user_id"].isin(known)].groupby("user_id")
    }
    notes = {}
    if not len(seen):
        notes["transfer_seen"] = (
            f"no person of {test.name} is in {train.name} (no shared user_id with test pairs)"
        )
    if not tests:
        notes["kshot"] = f"no new person of {test.name} has test pairs on the test {sp.unit}s"
    return SeedPairs(train, set(), train_pairs, {"transfer_seen": seen}, pools, tests, notes)


def run_transfer_seed(
    train: PreferenceData,
    test: PreferenceData,
    seed: int,
    cfg: EvalConfig,
    featurizer: Any,
    harmless: pd.DataFrame | None = None,
    progress: EvalProgress | Callable[[str], None] | None = None,
    seed_no: int = 1,
) -> SeedResult:
    """One seed of a transfer test: fit on all of ``train``, test on ``test`` (see the module docstring)."""
    pairs = transfer_pairs(train, test, cfg, seed)
    seen = pairs.cells["transfer_seen"]
    pool_pairs = (
        pd.concat(list(pairs.pools.values()), ignore_index=True) if pairs.pools else pairs.train_pairs
    )
    ctx = SeedContext(
        data=test,
        fit_data=train,
        train_data=comparison_data(pairs.train_pairs, train),
        pairs=pairs,
        contested={"transfer_seen": pair_contested_fn(test)(seen) if len(seen) else np.zeros(0)},
        group_cols=M.group_columns(test.users),
        crowd_data=test,
        crowd_pairs=pool_pairs,
    )
    return run_models(ctx, seed, cfg, featurizer, harmless, as_progress(progress, len(cfg.models)), seed_no)


# ----------------------------------------------------------------------------------------------- the run
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


def sample_persons(data: PreferenceData, n: int | None) -> PreferenceData:
    """At most ``n`` persons of ``data`` (a fixed sample, the same in every run)."""
    if n is None or data.n_users <= n:
        return data
    keep = np.random.default_rng(12345).choice(np.asarray(data.user_ids, dtype=object), n, replace=False)
    return data.filter_users(set(keep))


def run_featurizer(
    cfg: EvalConfig,
    datas: list[PreferenceData],
    encoder: str | Any,
    harmless: pd.DataFrame | None,
    show_progress: bool,
    pair_mode: str,
) -> Any:
    """The featurizer of a run over every text of ``datas`` (and of the harmlessness pairs); None without text
    models."""
    if not any(is_text_model(m) for m in cfg.models):
        return None
    if isinstance(encoder, str) and encoder == "attributes":
        if harmless is not None and len(harmless):
            raise ConfigError(
                "encoder 'attributes' has no vectors for harmlessness pairs: pass --harmless none"
            )
        if len(datas) > 1:
            raise ConfigError("encoder 'attributes' needs one synthetic population, not a transfer test")
        return attribute_featurizer(datas[0])
    texts = sorted({t for d in datas for t in all_texts(d, harmless)})
    return make_featurizer(encoder, texts, show_progress=show_progress, pair_mode=pair_mode)


def evaluate(
    data: PreferenceData,
    cfg: EvalConfig | None = None,
    *,
    encoder: str | Any = "minilm",
    harmless: pd.DataFrame | None = None,
    show_progress: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    pair_mode: str = "auto",
    test_data: PreferenceData | None = None,
) -> dict[str, Any]:
    """Run the protocol over ``cfg.seeds`` seeds and aggregate every number with its spread (see results.json).

    ``encoder``: "minilm", "hashing", an Encoder, or "attributes" (synthetic data: the items' true attributes);
    ``pair_mode``: the PairFeaturizer mode for text encoders ("auto", "response" or "sentences");
    ``show_progress``: the encoder's own progress while embedding; ``progress(description, done, total)`` is
    called as each model of each seed goes through its phases (e.g. :func:`personalign.render.progress_bar`);
    ``test_data``: a transfer test, fit on ``data`` and test on ``test_data`` (see the module docstring).
    ``harmless``: population-wide pairs (e.g. :func:`harmless_pairs`) for the personalization tax, or None.
    """
    cfg = (cfg or EvalConfig()).check()
    t_start = time.perf_counter()
    data = sample_persons(data, cfg.max_persons)
    truth_data = test_data if test_data is not None else data
    models = list(dict.fromkeys(cfg.models))
    if "oracle" not in models and truth_data.meta.get("truth") is not None:
        models.append("oracle")
    if "oracle" in models and truth_data.meta.get("truth") is None:
        raise ConfigError("model 'oracle' needs a synthetic population (its true rewards)")
    cfg.models = tuple(models)
    cfg.models, skipped = available_models(cfg, data)
    if not cfg.models:
        raise ConfigError(
            f"no model can run on {data.name}: " + "; ".join(f"{k} {v}" for k, v in skipped.items())
        )
    t0 = time.perf_counter()
    datas = [data] if test_data is None else [data, test_data]
    featurizer = run_featurizer(cfg, datas, encoder, harmless, show_progress, pair_mode)
    t_features = time.perf_counter() - t0
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    bar = EvalProgress(progress, len(seeds), len(cfg.models))
    bar.phase("")
    per_seed = []
    for n, s in enumerate(seeds, start=1):
        if test_data is None:
            per_seed.append(run_seed(data, s, cfg, featurizer, harmless, progress=bar, seed_no=n))
        else:
            per_seed.append(run_transfer_seed(data, test_data, s, cfg, featurizer, harmless, bar, n))
    timing = {
        "features_s": t_features,
        "total_s": time.perf_counter() - t_start,
        "encoder": getattr(featurizer.encoder, "name", str(encoder)) if featurizer is not None else None,
        "pair_mode": featurizer.mode if featurizer is not None else None,
    }
    cells = CELLS if test_data is None else TRANSFER_CELLS
    out = aggregate(data, cfg, per_seed, seeds, timing, skipped, cells)
    if test_data is not None:
        out["mode"] = "transfer"
        out["test_dataset"] = test_data.name
        out["test_summary"] = to_jsonable(test_data.summary())
        for c in CELLS:
            out["cell_notes"].setdefault(
                c, "a transfer test has no within-dataset cells (eval without --test has them)"
            )
    return out
