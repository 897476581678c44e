"""An evaluation that cannot leak: the collaborative cell holds out items for rankings and comparisons too, the
crowd oracle reads rankings, and the tuning split is grouped by item even with a single prompt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalign.data.core import PreferenceData
from personalign.data.pairs import ranking_pairs
from personalign.evaluate import baselines
from personalign.evaluate import metrics as M
from personalign.evaluate.config import EvalConfig
from personalign.evaluate.holdout import collaborative_holdout, pairwise_table
from personalign.evaluate.protocol import run_seed
from personalign.evaluate.tuning import tuning_split


class Memorizer:
    """A per-person model of item ids that knows nothing but each person's own training order: the item's wins
    minus losses in the person's training comparisons and rankings (for a full ranking, its Borda rank, so every
    pair implied by transitivity is answered), 0 for an item the person did not judge in training."""

    personal = True
    name = "memorizer"

    def fit(self, data: PreferenceData, pairs: pd.DataFrame) -> Memorizer:
        pw = pairwise_table(data)
        self.s: dict[tuple[str, str], float] = {}
        for u, a, b in zip(pw["user_id"], pw["chosen_id"], pw["rejected_id"]):
            self.s[(u, a)] = self.s.get((u, a), 0.0) + 1.0
            self.s[(u, b)] = self.s.get((u, b), 0.0) - 1.0
        return self

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        d = [
            self.s.get((u, a), 0.0) - self.s.get((u, b), 0.0)
            for u, a, b in zip(df["user_id"], df["chosen_id"], df["rejected_id"])
        ]
        return 1 / (1 + np.exp(-np.asarray(d, float)))

    def collapsed(self) -> Memorizer:
        return self


@pytest.fixture
def with_memorizer(monkeypatch):
    monkeypatch.setitem(baselines.BASELINES, "memorizer", Memorizer)


def rankings_data(
    n_persons: int = 60, n_items: int = 14, per: int = 12, consensus: float = 0.0, seed: int = 0
):
    """One prompt; each person ranks ``per`` of ``n_items`` items, by a shared score (weight ``consensus``) plus
    their own noise: with ``consensus`` 0 nothing about a person's order of unseen items can be predicted."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=n_items)
    rows = []
    for u in range(n_persons):
        items = rng.choice(n_items, per, replace=False)
        score = consensus * shared[items] + rng.normal(size=per)
        rows.append(
            {
                "user_id": f"u{u:02d}",
                "prompt": "",
                "responses": [f"item {i}" for i in items[np.argsort(-score)]],
            }
        )
    return PreferenceData(rankings=pd.DataFrame(rows), name="rankings")


def cfg(**kw):
    base = dict(
        models=("memorizer", "crowd"),
        seeds=1,
        ks=(0,),
        collab_frac=0.4,
        unseen_item_frac=0.15,
        max_train_pairs=500,
        max_test_pairs=100,
        active=False,
    )
    base.update(kw)
    return EvalConfig(**base)


@pytest.mark.parametrize("written_as", ["rankings", "comparisons"])
def test_memorizing_each_persons_training_order_stays_at_chance(with_memorizer, written_as):
    data = rankings_data()
    if (
        written_as == "comparisons"
    ):  # a ranking dataset written as all its pairwise comparisons (issue 15, 5a)
        data = PreferenceData(comparisons=ranking_pairs(data.rankings), name="all pairs")
    r = run_seed(data, 0, cfg(), featurizer=None)
    coll = r.cells["collaborative"]["memorizer"]
    assert coll["n_pairs"] >= 100 and coll["n_persons"] >= 40
    # no test pair has an item of the person's training judgments: the memorizer says exactly 1/2 everywhere
    assert coll["accuracy"] == pytest.approx(0.5, abs=1e-12)
    # ... although it reproduces the person's training order, and a split of pairs would hand it the answers
    rest, held, test = collaborative_holdout(data, 0.4, np.random.default_rng(0))
    m = Memorizer().fit(rest, pairwise_table(rest))
    own = pairwise_table(rest)
    assert M.mean_person_accuracy(own["user_id"], m.predict_proba(own)) > 0.95
    pw = pairwise_table(data)
    pick = np.random.default_rng(1).random(len(pw)) < 0.2  # the old hold-out: a share of each person's pairs
    leaky = Memorizer().fit(PreferenceData(comparisons=pw[~pick]), pw[~pick])
    assert M.mean_person_accuracy(pw[pick]["user_id"], leaky.predict_proba(pw[pick])) > 0.8


def test_held_out_items_never_touch_the_persons_training_judgments():
    data = rankings_data(seed=3)
    rest, held, test = collaborative_holdout(data, 0.3, np.random.default_rng(5))
    assert len(test) and held
    for u, a, b in zip(test["user_id"], test["chosen_id"], test["rejected_id"]):
        assert (u, a) in held and (u, b) in held
    train = pairwise_table(rest)
    touched = {(u, i) for col in ("chosen_id", "rejected_id") for u, i in zip(train["user_id"], train[col])}
    assert not touched & held
    # every held-out item was judged by at least two other persons
    judges = pairwise_table(data).melt(id_vars="user_id", value_vars=["chosen_id", "rejected_id"])
    n = judges.drop_duplicates(["user_id", "value"]).groupby("value").size()
    assert all(n[i] >= 3 for _, i in held)


@pytest.mark.parametrize("judges", [4, 20])
def test_a_held_out_item_keeps_its_crowd_in_training(judges):
    """Each person holds out 20% of their items, but no item loses more than ceil(20%) of its judges (and never
    more than leaves two): without the cap, persons spend their share on the same few eligible items and the
    training crowd of a held-out item is far thinner than the crowd the oracle reads."""
    rng = np.random.default_rng(judges)
    n_persons, n_items = 40, 60
    per = judges * n_items // n_persons
    rows = [
        (f"u{u}", f"t{i}", float(rng.integers(5)))
        for u in range(n_persons)
        for i in rng.choice(n_items, size=per, replace=False)
    ]
    data = PreferenceData(
        ratings=pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).assign(prompt="")
    )
    n = data.ratings.groupby("item_id").size()
    rest, held, _ = collaborative_holdout(data, 0.2, np.random.default_rng(1))
    holders = pd.Series([i for _, i in held]).value_counts()
    left = rest.ratings.groupby("item_id").size()
    assert len(held) >= 0.15 * len(data.ratings)  # the persons still hold out (nearly) their share
    for item, h in holders.items():
        assert h <= max(1, int(np.ceil(0.2 * n[item]))) and left[item] >= 2, item


def test_rankings_fill_both_cells_and_the_crowd_reads_them(with_memorizer):
    data = rankings_data(consensus=3.0, seed=2)
    r = run_seed(data, 0, cfg(), featurizer=None)
    for cell in ("collaborative", "unseen_items"):
        assert r.cells[cell]["crowd"]["n_pairs"] > 20, cell
    # a shared order: the leave-one-out crowd knows it (it used to answer 1/2 on rankings)
    assert r.cells["collaborative"]["crowd"]["accuracy"] > 0.75
    assert r.notes == {}


def test_an_empty_cell_says_why(with_memorizer):
    r = run_seed(rankings_data(), 0, cfg(collab_frac=0.0), featurizer=None)
    assert "collaborative" not in r.cells
    assert "collab_frac is 0" in r.notes["collaborative"]
    sparse = rankings_data(n_persons=2, seed=1)  # two persons: nobody's item was judged by two others
    r = run_seed(sparse, 0, cfg(unseen_user_frac=0.0), featurizer=None)
    assert "judged by >= 2 other persons" in r.notes["collaborative"]


def test_empty_cells_say_why_in_results_json_and_markdown(with_memorizer):
    from personalign.evaluate.protocol import evaluate
    from personalign.evaluate.report import markdown

    sparse = rankings_data(n_persons=2, seed=1)  # every item judged by at most 2 persons
    res = evaluate(sparse, cfg(unseen_user_frac=0.0, seeds=2), show_progress=False)
    notes = res["cell_notes"]
    assert res["cells"]["collaborative"] == {} and "judged by >= 2 other persons" in notes["collaborative"]
    assert "seeds" not in notes["collaborative"]  # both seeds, one reason
    assert res["kshot"] == {} and "no unseen persons" in notes["kshot"]
    md = markdown(res)
    assert f"_this cell is empty: {notes['collaborative']}_" in md
    assert f"_no k-shot curve: {notes['kshot']}_" in md
    assert "see the protocol" not in md and "no reason was recorded" not in md


def test_a_cell_without_figures_names_the_models_and_why_they_were_skipped():
    from personalign.evaluate.aggregate import missing_figures_notes

    out = {
        "cells": {"collaborative": {}, "unseen_items": {"bt": {}}},
        "kshot": {},
        "skipped_models": {"svd": "needs ratings"},
    }
    notes = missing_figures_notes(out, ["bt"], ("collaborative", "unseen_items"))
    assert set(notes) == {"collaborative", "kshot"}
    assert "no model run (bt)" in notes["collaborative"] and "svd (needs ratings)" in notes["collaborative"]
    assert "adapts to new persons" in notes["kshot"]


def test_single_prompt_tuning_split_is_grouped_by_item():
    # one prompt (the case 5b): the inner split must hold out items, not a random share of judgments
    data = PreferenceData(
        comparisons=ranking_pairs(rankings_data(n_items=30, per=10).rankings.assign(prompt="q"))
    )
    comps = data.comparisons
    assert comps["prompt"].nunique() == 1
    tr, va, info = tuning_split(comps, 0.2, seed=0)
    assert info["unit"] == "item" and len(tr) and len(va)
    seen = set(tr["chosen_id"]) | set(tr["rejected_id"])
    # both items of every validation pair are unseen in the inner training pairs, as in the test cells
    assert all(a not in seen and b not in seen for a, b in zip(va["chosen_id"], va["rejected_id"]))
    assert set(tr["prompt"]) == {"q"}  # the rows come back as they were


def _memorized_accuracy(tr: pd.DataFrame, va: pd.DataFrame) -> float:
    """Accuracy on ``va`` of each person's own training order (wins minus losses of an item in ``tr``), ties
    counted as half: exactly 1/2 when the validation pairs say nothing a person's training pairs did."""
    s: dict[tuple[str, str], float] = {}
    for u, a, b in zip(tr["user_id"], tr["chosen_id"], tr["rejected_id"]):
        s[(u, a)] = s.get((u, a), 0.0) + 1.0
        s[(u, b)] = s.get((u, b), 0.0) - 1.0
    d = np.array(
        [
            s.get((u, a), 0.0) - s.get((u, b), 0.0)
            for u, a, b in zip(va["user_id"], va["chosen_id"], va["rejected_id"])
        ]
    )
    return float(np.mean((d > 0) + 0.5 * (d == 0)))


def test_inner_validation_gives_memorizing_a_person_nothing():
    # rankings of one prompt: a mixed pair (one held-out, one training item) leaks through the person's judgments
    # of the training item; validation pairs of two held-out items do not
    comps = ranking_pairs(rankings_data(n_items=30, per=10).rankings.assign(prompt=""))
    tr, va, _ = tuning_split(comps, 0.2, seed=0)
    assert _memorized_accuracy(tr, va) == 0.5
    from personalign.data.splits import split_by_items

    tr_mixed, va_mixed = split_by_items(comps, 0.2, seed=0)  # the early-stopping split: mixed pairs kept
    assert _memorized_accuracy(tr_mixed, va_mixed) > 0.6  # the leak the tuning split no longer has


def test_personal_rank_is_chosen_on_the_grouped_split():
    from personalign.data.synthetic import generate_population
    from personalign.evaluate.featurize import all_texts, make_featurizer
    from personalign.features import HashingEncoder

    pop = generate_population(
        persons=60, comparisons_per_person=20, alpha=0.1, heldout_prompt_frac=0.0, seed=1
    )
    feat = make_featurizer(HashingEncoder(dim=32), all_texts(pop), show_progress=False)
    c = cfg(
        models=("lowrank",), rank=4, tune_l2_basis=(30.0, 3000.0), model_params={"lowrank": {"max_iter": 30}}
    )
    r = run_seed(pop, 0, c, feat)
    ch = r.chosen["lowrank"]
    losses = ch["inner_val_log_loss"]
    keys = {k for k in losses if not k.endswith(" shared only")}
    # the penalty over its grid at the full rank, then the smaller ranks at the chosen penalty
    assert {"rank=4,l2_basis=30", "rank=4,l2_basis=3000", "rank=0"} <= keys and len(keys) == 4
    assert any(k.startswith("rank=2,") for k in keys)
    # every personal candidate is also scored with its personal part folded into the population's reward
    assert {k + " shared only" for k in keys if k != "rank=0"} == set(losses) - keys
    assert ch["inner_fits"] == 4 and ch["fitted_rank"] in (0, 2, 4)
    label = "rank=0" if ch["fitted_rank"] == 0 else f"rank={ch['fitted_rank']},l2_basis={ch['l2_basis']:g}"
    removed = ch["personal_part"].startswith("removed")
    assert losses[label + (" shared only" if removed else "")] == min(losses.values())
    assert ch["rank"] == (0 if removed else ch["fitted_rank"])
    assert ch["inner_split"]["unit"] == "prompt" and ch["tuning_seconds"] > 0


class _Fake:
    """A model whose validation probability is set by its rank and whether it is shared only."""

    p = {(2, False): 0.6, (2, True): 0.7, (0, False): 0.55}

    def __init__(self, rank: int, l2_basis: float | None = None, shared: bool = False) -> None:
        self.rank, self.l2_basis, self.shared = rank, l2_basis, shared

    def fit(self, data):
        return self

    def predict_proba(self, pairs):
        return np.full(len(pairs), self.p[(self.rank, self.shared)])

    def shared_only(self):
        return _Fake(0 if self.shared else self.rank, self.l2_basis, shared=True)


@pytest.mark.parametrize("shared_wins", [True, False])
def test_tuning_keeps_a_personal_part_only_where_it_beats_its_collapsed_control(monkeypatch, shared_wins):
    from personalign.data.synthetic import generate_population
    from personalign.evaluate.tuning import tune_personal

    monkeypatch.setattr(
        _Fake, "p", {(2, False): 0.6, (2, True): 0.7 if shared_wins else 0.58, (0, False): 0.55}
    )
    pop = generate_population(persons=40, comparisons_per_person=20, alpha=0.1, seed=1)
    model, ch = tune_personal(_Fake, pop, 2, [0, 2], (30.0,), seed=0)
    assert ch["fitted_rank"] == 2 and model.shared is shared_wins
    assert ch["rank"] == (0 if shared_wins else 2)
    assert ch["personal_part"].startswith("removed" if shared_wins else "kept")


@pytest.mark.parametrize("name", ["lowrank", "hybrid"])
def test_shared_only_scores_as_the_collapsed_model_and_adapts_to_nothing(name):
    from personalign.data.synthetic import generate_population
    from personalign.features import HashingEncoder, PairFeaturizer
    from personalign.models import make_model

    pop = generate_population(persons=30, comparisons_per_person=20, alpha=1.0, seed=0)
    feat = PairFeaturizer(HashingEncoder(64))
    m = make_model(name, rank=2, featurizer=feat, max_iter=30, prior_scale=1.0).fit(pop)  # "auto" may pick 0
    # persons and the prior mean set well away from zero, so that folding ``B m`` (and ``v_i^T m``) matters
    rng = np.random.default_rng(0)
    m.unit_means_ = rng.normal(size=m.unit_means_.shape)
    m.prior_mean_ = rng.normal(size=m.prior_mean_.shape)
    c = pop.comparisons.iloc[:60]
    args = (c["user_id"].tolist(), c["prompt"].tolist(), c["chosen"].tolist())
    so = m.shared_only()
    assert so.K_ == 0 and m.K_ == 2 and so.get_params()["rank"] == 0
    np.testing.assert_allclose(so.score(*args), m.collapsed().score(*args), atol=1e-9)
    assert np.abs(m.score(*args) - so.score(*args)).max() > 1e-6  # the personal part did something
    post = so.adapt(c.iloc[:20])
    assert post.mean.shape == (0,)
    np.testing.assert_allclose(so.score_posterior(post, args[1], args[2]), so.score(*args), atol=1e-9)


@pytest.mark.parametrize("consensus", [3.0, 0.0])
def test_the_item_prior_is_chosen_on_a_collaborative_inner_split(consensus):
    """Items whose order everybody shares earn a weak item prior (their judgments carry to other persons); items
    judged by noise alone earn the strongest one on the grid (their judgments carry nothing)."""
    from personalign.evaluate.featurize import all_texts, make_featurizer
    from personalign.features import HashingEncoder

    data = rankings_data(n_persons=60, n_items=30, per=12, consensus=consensus, seed=3)
    # 4 hashed dimensions cannot tell 30 items apart: what is learned about an item is its item bias
    feat = make_featurizer(HashingEncoder(dim=4), all_texts(data), show_progress=False)
    grid = (0.3, 3.0, 30.0)
    c = cfg(
        models=("hybrid",),
        rank=2,
        tune_l2_basis=(30.0,),
        tune_ranks=(0,),
        tune_l2_item=grid,
        model_params={"hybrid": {"max_iter": 60}},
    )
    r = run_seed(data, 0, c, feat)
    prior = r.chosen["hybrid"]["item_prior"]
    losses = {float(k): v for k, v in prior["val_log_loss"].items()}
    assert set(losses) == set(grid) and prior["l2_item"] == min(losses, key=losses.get)
    assert prior["split"]["val_pairs"] >= 30
    if consensus:
        assert prior["l2_item"] < 30.0 and losses[30.0] - min(losses.values()) > 0.02
    else:
        assert prior["l2_item"] == 30.0


def test_a_configured_item_prior_is_not_tuned():
    from personalign.evaluate.featurize import all_texts, make_featurizer
    from personalign.features import HashingEncoder

    data = rankings_data(n_persons=30, n_items=20, per=10, consensus=3.0, seed=4)
    feat = make_featurizer(HashingEncoder(dim=4), all_texts(data), show_progress=False)
    c = cfg(
        models=("hybrid",),
        rank=2,
        tune_l2_basis=(30.0,),
        tune_ranks=(0,),
        model_params={"hybrid": {"max_iter": 30, "l2_item": 5.0}},
    )
    r = run_seed(data, 0, c, feat)
    assert "item_prior" not in r.chosen["hybrid"]


def test_tune_l2_item_must_be_positive():
    from personalign.errors import ConfigError

    with pytest.raises(ConfigError, match="tune_l2_item"):
        EvalConfig(tune_l2_item=(1.0, 0.0)).check()


def test_crowd_reach_counts_the_other_judges_each_side_reads():
    from personalign.evaluate.holdout import crowd_reach

    rows = [(u, i, r) for u in ("u1", "u2", "u3") for i, r in (("A", 1.0), ("B", 3.0), ("C", 2.0))]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    ratings["response"] = ratings["item_id"]
    whole = PreferenceData(ratings=ratings)
    # u1's judgments of A and B are held out; u3 is an unseen person, outside the training data
    keep = ~(((ratings.user_id == "u1") & ratings.item_id.isin(["A", "B"])) | (ratings.user_id == "u3"))
    fit = PreferenceData(ratings=ratings[keep])
    test = pd.DataFrame({"user_id": ["u1"], "chosen_id": ["B"], "rejected_id": ["A"]})
    assert crowd_reach(whole, fit, test) == {"crowd_oracle": 2.0, "training": 1.0}
    assert crowd_reach(whole, fit, test.iloc[:0]) == {}


@pytest.mark.parametrize("collab_shared_wins", [True, False])
def test_a_kept_personal_part_must_also_win_on_the_collaborative_split(monkeypatch, collab_shared_wins):
    """A model with item parameters keeps a personal part that won on held-out items only if it also beats its
    collapsed control on held-out judgments of items others judged (the collaborative cell's own question)."""
    from personalign.data.synthetic import generate_population
    from personalign.evaluate import tuning

    monkeypatch.setattr(_Fake, "p", {(2, False): 0.6, (2, True): 0.58, (0, False): 0.55})
    made = []

    def make(**params):
        made.append(params)
        return _Fake(params["rank"], params.get("l2_basis"))

    monkeypatch.setattr(tuning, "collaborative_split", lambda *a, **k: ("inner", "val"))
    monkeypatch.setattr(tuning, "tune_item_prior", lambda *a, **k: {"l2_item": 3.0})
    losses = {"personal": 0.5, "shared_only": 0.4 if collab_shared_wins else 0.6}
    monkeypatch.setattr(tuning, "collaborative_check", lambda *a, **k: losses)
    pop = generate_population(persons=40, comparisons_per_person=20, alpha=0.1, seed=1)
    model, ch = tuning.tune_personal(make, pop, 2, [0, 2], (30.0,), seed=0, item_grid=(3.0,))
    assert all(p.get("l2_item") == 3.0 for p in made)  # every fit at the chosen item prior
    assert ch["fitted_rank"] == 2 and ch["collaborative_check"] == losses
    assert model.shared is collab_shared_wins and ch["rank"] == (0 if collab_shared_wins else 2)
    assert ch["personal_part"] == (
        "removed: its collapsed control was better on held-out judgments of items others judged"
        if collab_shared_wins
        else "kept"
    )
