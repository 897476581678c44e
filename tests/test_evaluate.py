"""Evaluation: metrics on hand-computed cases, baselines, protocol determinism, collapsed control, CLI files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personalign.data.core import PreferenceData
from personalign.data.pairs import pointwise_pairs
from personalign.evaluate import metrics as M
from personalign.evaluate.baselines import CrowdOracle, ItemMean, crowd_pointwise
from personalign.evaluate.protocol import EvalConfig, collaborative_holdout, held_only, run_seed


# ------------------------------------------------------------------------------------------- metrics
def test_per_person_average_differs_from_per_pair():
    # person a: 10 pairs, all right; person b: 2 pairs, both wrong
    uid = ["a"] * 10 + ["b"] * 2
    p = [0.9] * 10 + [0.2] * 2
    assert M.pair_accuracy(p) == pytest.approx(10 / 12)
    assert M.mean_person_accuracy(uid, p) == pytest.approx(0.5)
    pp = M.per_person_accuracy(uid, p)
    assert pp["a"] == 1.0 and pp["b"] == 0.0


def test_tie_counts_half_and_worst_decile():
    assert list(M.pair_correct([0.5, 0.7, 0.3])) == [0.5, 1.0, 0.0]
    pp = pd.Series(np.linspace(0, 1, 20), index=[f"u{i}" for i in range(20)])
    # worst 10% of 20 persons = the two lowest
    assert M.worst_fraction(pp, 0.1) == pytest.approx((0 + 1 / 19) / 2)


def test_ece_of_calibrated_predictor_is_near_zero_and_overconfident_is_not():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(len(p)) < p).astype(float)
    assert M.ece(p, y) < 0.01
    over = np.where(p > 0.5, 0.99, 0.01)
    assert M.ece(over, y) > 0.2
    assert M.brier(p, y) < M.brier(over, y)
    # symmetrized pairs: a model saying 0.75 on pairs it gets right 75% of the time is calibrated
    p2 = np.where(rng.random(100_000) < 0.75, 0.75, 0.25)
    ps, ys = M.symmetrize(p2)
    assert M.ece(ps, ys) < 0.01


def test_worst_group_and_gap():
    pp = pd.Series({"a": 0.9, "b": 0.8, "c": 0.5, "d": 0.6, "e": 0.7, "f": 0.7})
    users = pd.DataFrame(
        {
            "user_id": list("abcdef"),
            "gender": ["m", "m", "w", "w", "x", "x"],
            "age": ["y", "y", "y", "o", "o", "o"],
        }
    )
    g = M.group_accuracy(pp, users, min_persons=2)
    assert g["gender"] == pytest.approx({"m": 0.85, "w": 0.55, "x": 0.7})
    assert g["age"] == pytest.approx({"y": 0.7333333, "o": 0.6666667})
    w = M.worst_group(g)
    assert (w["column"], w["group"]) == ("gender", "w")
    assert w["accuracy"] == pytest.approx(0.55) and w["gap"] == pytest.approx(0.30)
    # groups under min_persons are left out
    assert M.group_accuracy(pp, users, min_persons=3) == {
        "age": pytest.approx({"y": 0.7333333, "o": 0.6666667})
    }


def test_interval_and_paired_difference():
    iv = M.interval([0.70, 0.72, 0.74])
    assert iv["mean"] == pytest.approx(0.72) and iv["std"] == pytest.approx(0.02)
    # t(0.975, 2) = 4.303
    assert iv["ci95"][1] - iv["mean"] == pytest.approx(4.303 * 0.02 / np.sqrt(3), rel=1e-3)
    d = M.paired_difference([0.71, 0.73, 0.75, 0.72, 0.74], [0.70, 0.72, 0.74, 0.71, 0.73])
    assert d["mean"] == pytest.approx(0.01) and d["significant"]  # constant difference: interval excludes 0
    d2 = M.paired_difference([0.70, 0.75, 0.68], [0.72, 0.70, 0.71])
    assert not d2["significant"]


def test_pair_contested():
    items = pd.Series({"i1": True, "i2": False, "i3": False})
    c = M.pair_contested(["i1", "i2", "i2"], ["i2", "i3", "zz"], items)
    assert c[0] == 1.0 and c[1] == 0.0 and np.isnan(c[2])


# ------------------------------------------------------------------------------------------ baselines
def _ratings(rows):
    return PreferenceData(
        ratings=pd.DataFrame(rows, columns=["user_id", "response", "rating"]).assign(prompt="")
    )


def test_crowd_oracle_leaves_the_person_out():
    # item x: u1 rates 5, others rate 1; item y: everybody 3. For u1 the crowd says y > x; its own 5 is excluded.
    d = _ratings(
        [("u1", "x", 5), ("u2", "x", 1), ("u3", "x", 1), ("u1", "y", 3), ("u2", "y", 3), ("u3", "y", 3)]
    )
    pt = d.pointwise(passes=False)
    pairs = pointwise_pairs(pt)
    crowd = CrowdOracle().fit(d, pairs)
    u1 = pairs[pairs["user_id"] == "u1"]
    assert (u1["chosen"] == "x").all()
    assert crowd.predict_proba(u1)[0] < 0.5  # the crowd of others disagrees with u1
    maj = ItemMean().fit(d, pairs)
    assert maj.scores_ == pytest.approx({pt["item_id"][0]: 7 / 3, pt["item_id"][3]: 3.0})


def test_crowd_plus_offset_learns_a_lenient_rater():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        base = rng.integers(1, 4)
        for u in range(6):
            rows.append((f"u{u}", f"t{i}", float(base + (1 if u == 0 else 0))))
    d = _ratings(rows)
    pt = d.pointwise(passes=False)
    train, test = pt[pt["response"] < "t2"], pt[pt["response"] >= "t2"]
    pred = crowd_pointwise(pt, train, test.reset_index(drop=True))
    t0 = (test["user_id"] == "u0").to_numpy()
    err_crowd = np.abs(pred["crowd"][t0] - test["rating"].to_numpy()[t0]).mean()
    err_off = np.abs(pred["crowd+offset"][t0] - test["rating"].to_numpy()[t0]).mean()
    assert err_off < 0.5 * err_crowd


# ---------------------------------------------------------------------------------------- protocol
def test_pointwise_pairs_and_collaborative_holdout():
    rows = [(f"u{u}", f"t{i}", float((i * (u + 1)) % 5)) for u in range(5) for i in range(10)]
    d = _ratings(rows)
    rng = np.random.default_rng(0)
    rest, held, _ = collaborative_holdout(d, 0.2, rng)
    assert len(held) == 5 * 2 and len(rest.ratings) == 50 - 10
    pairs = pointwise_pairs(held_only(d.pointwise(passes=False), held), rng=rng)
    both = [
        (u, a) in held and (u, b) in held
        for u, a, b in zip(pairs["user_id"], pairs["chosen_id"], pairs["rejected_id"])
    ]
    assert len(pairs) and all(both)
    # every pair: chosen scored higher by that person
    sc = {(u, i): s for u, i, s in zip(d.ratings["user_id"], d.ratings["item_id"], d.ratings["rating"])}
    assert all(
        sc[(u, a)] > sc[(u, b)] for u, a, b in zip(pairs["user_id"], pairs["chosen_id"], pairs["rejected_id"])
    )


def test_collaborative_pairs_do_not_leak_training_labels():
    # labels are coin flips, so nothing can predict a held-out label; a model that memorizes each person's
    # training labels must stay at chance on the collaborative pairs (a held-out item paired with a training item
    # would hand it the answer: the pair exists only when the two labels differ)
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"t{i}", float(rng.integers(2))) for u in range(60) for i in range(30)]
    d = _ratings(rows)
    rest, held, _ = collaborative_holdout(d, 0.2, rng)
    known = {
        (u, i): s for u, i, s in zip(rest.ratings["user_id"], rest.ratings["item_id"], rest.ratings["rating"])
    }
    pairs = pointwise_pairs(held_only(d.pointwise(passes=False), held), rng=rng)
    assert len(pairs) > 100

    def memorizer(u: str, a: str, b: str) -> float:
        # P(a > b): a known 0 or a known 1 decides a pair of two different binary labels
        if (u, a) in known:
            return float(known[(u, a)])
        if (u, b) in known:
            return 1.0 - float(known[(u, b)])
        return 0.5

    p = np.array(
        [memorizer(u, a, b) for u, a, b in zip(pairs["user_id"], pairs["chosen_id"], pairs["rejected_id"])]
    )
    acc = M.pair_correct(p).mean()
    assert abs(acc - 0.5) < 1e-9  # no pair has a training item in it, so the memorizer always says 0.5


@pytest.fixture(scope="module")
def tiny_population():
    from personalign.data.synthetic import generate_population

    return generate_population(
        persons=80, comparisons_per_person=25, alpha=0.1, heldout_prompt_frac=0.0, seed=3
    )


@pytest.fixture(scope="module")
def hashing_featurizer(tiny_population):
    from personalign.evaluate.protocol import all_texts, make_featurizer
    from personalign.features import HashingEncoder

    return make_featurizer(HashingEncoder(dim=64), all_texts(tiny_population), show_progress=False)


def _cfg(**kw):
    base = dict(
        models=("majority", "bt", "lowrank"),
        seeds=1,
        ks=(0, 2, 5),
        max_train_pairs=30,
        max_test_pairs=20,
        rank=2,
        active_max_k=5,
        model_params={"bt": {"max_iter": 60}, "lowrank": {"max_iter": 60}},
    )
    base.update(kw)
    return EvalConfig(**base)


def test_protocol_is_deterministic_by_seed(tiny_population, hashing_featurizer):
    cfg = _cfg()
    a = run_seed(tiny_population, 7, cfg, hashing_featurizer)
    b = run_seed(tiny_population, 7, cfg, hashing_featurizer)
    for cell in a.cells:
        for m in a.cells[cell]:
            assert a.cells[cell][m]["accuracy"] == b.cells[cell][m]["accuracy"]
            assert a.cells[cell][m]["n_pairs"] == b.cells[cell][m]["n_pairs"]
    assert a.kshot["lowrank"]["random"][5]["accuracy"] == b.kshot["lowrank"]["random"][5]["accuracy"]

    def timeless(chosen):
        return {k: v for k, v in chosen.items() if k != "tuning_seconds"}

    assert timeless(a.chosen["lowrank"]) == timeless(b.chosen["lowrank"])
    # the active curve exists exactly when tuning kept a personal part (rank 0 has nothing to ask about)
    want = {0, 2, 5} if a.chosen["lowrank"]["rank"] > 0 else set()
    assert set(a.kshot["lowrank"]["active"]) == set(b.kshot["lowrank"]["active"]) == want
    c = run_seed(tiny_population, 8, cfg, hashing_featurizer)
    assert (
        c.cells["unseen_items"]["bt"]["n_pairs"] != a.cells["unseen_items"]["bt"]["n_pairs"]
        or c.cells["unseen_items"]["bt"]["accuracy"] != a.cells["unseen_items"]["bt"]["accuracy"]
    )


def test_collapsed_equals_aggregated_when_people_are_alike(hashing_featurizer):
    from personalign.data.synthetic import generate_population
    from personalign.evaluate.protocol import all_texts, make_featurizer
    from personalign.features import HashingEncoder

    alike = generate_population(
        persons=80, comparisons_per_person=25, n_profiles=1, person_noise=0.0, heldout_prompt_frac=0.0, seed=4
    )
    feat = make_featurizer(HashingEncoder(dim=64), all_texts(alike), show_progress=False)
    r = run_seed(alike, 0, _cfg(models=("bt", "lowrank"), ks=(0,)), feat)
    u = r.cells["unseen_items"]
    # the low-rank model with every person at the prior mean is an aggregated model: same accuracy as BT
    assert abs(u["lowrank"]["collapsed"]["accuracy"] - u["bt"]["accuracy"]) < 0.03
    # the aggregated model's collapsed control is itself
    assert u["bt"]["collapsed"]["accuracy"] == u["bt"]["accuracy"]


def test_cli_writes_all_files(tmp_path):
    from typer.testing import CliRunner

    from personalign.cli import app

    out = tmp_path / "res"
    r = CliRunner().invoke(
        app,
        [
            "eval",
            "synthetic:persons=60,comparisons_per_person=20,alpha=0.1",
            "--models",
            "majority,choix,bt,lowrank",
            "--seeds",
            "2",
            "--k",
            "0,2",
            "--encoder",
            "hashing",
            "--out",
            str(out),
            "--max-train-pairs",
            "20",
            "--max-test-pairs",
            "10",
            "--rank",
            "2",
            "--active-max-k",
            "2",
            "--harmless",
            "none",
        ],
    )
    assert r.exit_code == 0, r.output
    for f in ("results.json", "results.md", "index.html", "kshot.png", "per_person.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    row = res["cells"]["unseen_items"]["lowrank"]
    assert len(row["accuracy"]["values"]) == 2 and row["personal_gain"]["ci95"][0] is not None
    assert "oracle" in res["cells"]["unseen_items"]  # synthetic data brings its true-reward oracle
    md = (out / "results.md").read_text()
    assert "personal gain" in md and "collapsed" in md and "k=2" in md


def test_cli_bad_model_exits_2(tmp_path):
    from typer.testing import CliRunner

    from personalign.cli import app
    from personalign.errors import ConfigError

    r = CliRunner().invoke(
        app,
        [
            "eval",
            "synthetic:persons=20",
            "--models",
            "nope",
            "--out",
            str(tmp_path),
            "--encoder",
            "hashing",
            "--harmless",
            "none",
        ],
    )
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError)


def test_attribute_features_are_the_true_attributes_and_need_a_truth():
    from personalign.data.synthetic import generate_population
    from personalign.errors import ConfigError
    from personalign.evaluate.protocol import attribute_featurizer

    pop = generate_population(persons=30, comparisons_per_person=10, seed=2)
    feat = attribute_featurizer(pop)
    truth = pop.meta["truth"]
    items = pop.items.iloc[:25]
    phi = feat.transform(items["prompt"].astype(str).tolist(), items["text"].astype(str).tolist())
    np.testing.assert_array_equal(
        phi, truth.item_attrs[truth.item_index(items["item_id"])].astype(np.float32)
    )
    # with these features the true reward is linear: the oracle's own weights reproduce its rewards
    u = str(truth.user_ids[0])
    w = truth.person_weights([u])[0]
    np.testing.assert_allclose(phi @ w, truth.true_reward([u] * len(items), items["item_id"]), rtol=1e-5)
    real = PreferenceData(comparisons=pop.comparisons, items=pop.items)
    with pytest.raises(ConfigError, match="synthetic"):
        attribute_featurizer(real)


def test_sentence_pair_mode_pre_encodes_sentences():
    from personalign.evaluate.protocol import make_featurizer
    from personalign.features import HashingEncoder

    class Counting(HashingEncoder):
        calls = 0

        def encode(self, texts, show_progress=False):
            Counting.calls += 1
            return super().encode(texts, show_progress)

    feat = make_featurizer(
        Counting(dim=16), ["Hello there. How are you?", "Fine."], False, pair_mode="sentences"
    )
    assert feat.mode == "sentences" and feat.dim_out == 48
    calls = Counting.calls
    phi = feat.transform(["Fine."], ["Hello there. How are you?"])
    assert phi.shape == (1, 48)
    assert Counting.calls == calls  # every sentence was encoded up front


def test_mixture_in_the_protocol_finds_two_opposed_camps():
    # two profiles, nearly pure memberships: the latent-class mixture must beat its collapsed control and
    # aggregated BT, and the k-shot curve of the mixture must rise from its prior
    from personalign.data.synthetic import generate_population
    from personalign.evaluate.protocol import attribute_featurizer

    pop = generate_population(
        persons=120, comparisons_per_person=30, n_profiles=2, alpha=0.01, heldout_prompt_frac=0.2, seed=5
    )
    cfg = _cfg(
        models=("bt", "mixture"),
        ks=(0, 10),
        max_train_pairs=30,
        max_test_pairs=30,
        rank=2,
        model_params={"mixture": {"n_classes": 2}},
    )
    rises = []
    for seed in range(3):
        r = run_seed(pop, seed, cfg, attribute_featurizer(pop))
        u = r.cells["unseen_items"]["mixture"]
        assert u["accuracy"] - u["collapsed"]["accuracy"] > 0.03  # measured 0.034-0.050
        assert u["accuracy"] > r.cells["unseen_items"]["bt"]["accuracy"] + 0.03  # measured 0.042-0.056
        k = r.kshot["mixture"]["random"]
        rises.append(k[10]["accuracy"] - k[0]["accuracy"])
        # the camps predict held-out judgments, so the likelihood power the mixture chose trusts them
        assert r.chosen["mixture"]["likelihood_power"] > 0
    # one seed's curve over 24 new persons is noisy (measured -0.016, +0.057, +0.089): the mean must rise
    assert np.mean(rises) > 0.03


def camps_ratings(n_persons: int = 80, n_items: int = 30, per: int = 20, seed: int = 0) -> PreferenceData:
    """Two camps rating the same items in opposite directions (1-5), each person a random share of the items."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=n_items)
    rows = []
    for u in range(n_persons):
        sign = 1.0 if u % 2 else -1.0
        for i in rng.choice(n_items, per, replace=False):
            r = np.clip(np.round(3 + 1.5 * sign * taste[i] + rng.normal(0, 0.5)), 1, 5)
            rows.append((f"u{u:02d}", f"item {i}", float(r)))
    return _ratings(rows).copy()


def test_svd_learns_camps_from_other_peoples_ratings_and_is_skipped_on_comparisons():
    pytest.importorskip("surprise")
    data = camps_ratings()
    data.rating_scale = (1.0, 5.0)
    cfg = _cfg(models=("svd", "majority"), ks=(0,), collab_frac=0.3, active=False)
    r = run_seed(data, 0, cfg, featurizer=None)
    svd = r.cells["collaborative"]["svd"]
    # the item biases alone (collapsed) know the average, which the camps split; the factors know the camp
    assert svd["accuracy"] > svd["collapsed"]["accuracy"] + 0.2
    assert svd["accuracy"] > r.cells["collaborative"]["majority"]["accuracy"] + 0.2
    from personalign.evaluate.candidates import available_models

    comps = data.as_comparison_data()
    models, skipped = available_models(_cfg(models=("svd", "bt")), comps)
    assert models == ("bt",) and "no ratings" in skipped["svd"]


@pytest.mark.slow
def test_the_hybrid_does_not_collapse_where_its_item_stage_overfits():
    """Regression (synthetic alpha 10, seed 3, about a minute): the final refit's item-factor stage only raised
    the held-out loss, early stopping kept its least bad round, the person prior's EM ran away on it, and the
    hybrid fell to chance (52.2 collaborative, 51.4 unseen, against BT's 66.9 and 61.8)."""
    from personalign.data.io import read_data
    from personalign.evaluate.protocol import evaluate

    data = read_data("synthetic:alpha=10,persons=600,comparisons_per_person=40")
    cfg = EvalConfig(models=("bt", "hybrid"), seeds=1, first_seed=3, active_max_k=0, ks=(0,))
    res = evaluate(data, cfg, show_progress=False)
    for cell in ("collaborative", "unseen_items"):
        acc = {m: res["cells"][cell][m]["accuracy"]["mean"] for m in ("bt", "hybrid")}
        assert acc["hybrid"] > acc["bt"] - 0.02, (cell, acc)
