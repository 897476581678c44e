"""The synthetic pluralistic population: determinism, heterogeneity, label noise, harm, text carrying attributes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personalign.data import PreferenceData
from personalign.data.synthetic import (
    ATTRIBUTES,
    PopulationTruth,
    SyntheticConfig,
    _dirichlet,
    _formal,
    _informal,
    _sigmoid,
    _texts,
    generate_population,
    oracle_accuracy,
    preference_agreement,
    read_population,
    sample_comparisons,
    sample_ratings,
    write_population,
)
from personalign.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def pop() -> PreferenceData:
    return generate_population(
        SyntheticConfig(persons=600, comparisons_per_person=40, adversarial_frac=0.1, seed=3)
    )


def test_deterministic_by_seed():
    cfg = SyntheticConfig(persons=80, comparisons_per_person=10, seed=11)
    a, b = generate_population(cfg), generate_population(cfg)
    pd.testing.assert_frame_equal(a.comparisons, b.comparisons)
    pd.testing.assert_frame_equal(a.users, b.users)
    pd.testing.assert_frame_equal(a.items, b.items)
    np.testing.assert_array_equal(a.meta["truth"].weights, b.meta["truth"].weights)
    c = generate_population(SyntheticConfig(persons=80, comparisons_per_person=10, seed=12))
    assert not c.comparisons["chosen_id"].equals(a.comparisons["chosen_id"])
    assert not np.allclose(c.meta["truth"].weights, a.meta["truth"].weights)


def test_structure(pop):
    cfg = pop.meta["config"]
    c, items, users = pop.comparisons, pop.items, pop.users
    assert len(c) == cfg["persons"] * cfg["comparisons_per_person"]
    assert c.groupby("user_id").size().eq(cfg["comparisons_per_person"]).all()
    assert (c["chosen_id"] != c["rejected_id"]).all()
    # both responses answer the comparison's prompt, and the ids name the texts
    by_id = items.set_index("item_id")
    assert (by_id.loc[c["chosen_id"], "text"].to_numpy() == c["chosen"].to_numpy()).all()
    assert (by_id.loc[c["rejected_id"], "prompt"].to_numpy() == c["prompt"].to_numpy()).all()
    assert {f"attr_{a}" for a in ATTRIBUTES} <= set(items.columns)
    assert items["domain"].nunique() >= 7 and items["prompt"].nunique() >= 30
    assert not items["item_id"].duplicated().any()
    assert set(users.columns) >= {"user_id", "age_band", "region", "education", "profile", "adversarial"}
    assert users["adversarial"].sum() == 60
    # training comparisons never use held-out prompts, and every domain keeps some held-out prompt
    held = set(pop.meta["heldout_prompts"])
    assert held and not (set(c["prompt"]) & held)
    assert items[items["heldout_prompt"]]["domain"].nunique() == items["domain"].nunique()


def test_dirichlet_valid_for_tiny_and_large_alpha():
    rng = np.random.default_rng(0)
    for alpha in (1e-3, 0.01, 1.0, 100.0):
        pi = _dirichlet(alpha, 2000, 4, rng)
        assert np.isfinite(pi).all() and np.allclose(pi.sum(1), 1.0) and (pi >= 0).all()
    assert _dirichlet(0.01, 2000, 4, rng).max(1).mean() > 0.95  # near one profile
    assert _dirichlet(100.0, 2000, 4, rng).max(1).mean() < 0.35  # near the average


def test_alpha_controls_how_much_people_differ():
    def agreement(alpha):
        d = generate_population(SyntheticConfig(persons=400, comparisons_per_person=1, alpha=alpha, seed=5))
        return preference_agreement(d.meta["truth"], seed=1)

    lo, hi = agreement(0.01), agreement(10.0)
    assert hi > 0.8  # alike: most pairs of persons order responses the same way
    assert lo < 0.7  # differ: profiles disagree often
    assert hi - lo > 0.15


def test_labels_follow_bradley_terry_rate(pop):
    # the chosen response is the one with prob p; the expected share of labels agreeing with the true ordering
    # is mean(max(p, 1 - p)); the drawn labels must match it within sampling error (n = 24,000)
    acc = oracle_accuracy(pop)
    n = acc["n"]
    se = np.sqrt(acc["bayes"] * (1 - acc["bayes"]) / n)
    assert abs(acc["realized"] - acc["bayes"]) < 4 * se
    # lower temperature gives labels closer to the true reward
    cold = generate_population(
        SyntheticConfig(persons=300, comparisons_per_person=40, temperature=0.1, seed=3)
    )
    hot = generate_population(
        SyntheticConfig(persons=300, comparisons_per_person=40, temperature=5.0, seed=3)
    )
    assert oracle_accuracy(cold)["realized"] > 0.95
    assert 0.5 < oracle_accuracy(hot)["realized"] < oracle_accuracy(pop)["realized"]


def test_bt_calibration_against_probabilities(pop):
    # P(a > b) computed from the truth, for the pair in a random orientation, against how often a was chosen
    truth = pop.meta["truth"]
    c = pop.comparisons
    rng = np.random.default_rng(0)
    flip = rng.random(len(c)) < 0.5
    a = np.where(flip, c["rejected_id"], c["chosen_id"])
    b = np.where(flip, c["chosen_id"], c["rejected_id"])
    p = truth.preference_prob(c["user_id"], a, b)
    a_won = ~flip
    for lo, hi in ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)):
        sel = (p >= lo) & (p < hi)
        if sel.sum() > 400:
            se = np.sqrt(0.25 / sel.sum())
            assert abs(a_won[sel].mean() - p[sel].mean()) < 4 * se + 0.01, (lo, hi)


def test_harm_dispreferred_by_ordinary_and_preferred_by_adversarial(pop):
    truth = pop.meta["truth"]
    c = pop.comparisons
    harm = pop.items.set_index("item_id")["attr_harm"]
    ch, rj = harm.loc[c["chosen_id"]].to_numpy(), harm.loc[c["rejected_id"]].to_numpy()
    mixed = ch != rj
    adv = pop.users.set_index("user_id")["adversarial"].loc[c["user_id"]].to_numpy()
    harmful_won = ch[mixed] == 1
    assert harmful_won[~adv[mixed]].mean() < 0.05
    assert harmful_won[adv[mixed]].mean() > 0.8
    # in the truth: ordinary harm weight strongly negative, adversarial positive
    assert (truth.weights[~truth.adversarial, -1] < -4).all() and (
        truth.weights[truth.adversarial, -1] > 2
    ).all()


def test_attributes_really_in_text(pop):
    t = _texts()
    items = pop.items
    for row in items.itertuples(index=False):
        dom = t["domains"][row.domain]
        spec = next(p for p in dom["prompts"] if p["prompt"] == row.prompt)
        text = row.text
        # the register rewrites contractions, so look for each fragment as the register writes it
        reg = {0.0: _informal, 1.0: _formal}.get(row.attr_formality, lambda s: s)

        def has(fragments, text=text, reg=reg):
            return any(reg(f) in text for f in fragments)

        assert has(dom["harmful"]) == bool(row.attr_harm), text
        assert has([spec["technical"]]) == bool(row.attr_technical), text
        assert has(dom["jokes"]) == bool(row.attr_humor), text
        assert has(t["warm"]["formal"] + t["warm"]["informal"]) == (row.attr_warmth == 1.0), text
        assert has(t["cold"]) == (row.attr_warmth == 0.0), text
        assert has(t["hedge_open"]) == (row.attr_directness == 0.0), text
        assert has(t["direct_open"]) == (row.attr_directness == 1.0), text
        assert has(t["formal_open"]) == (row.attr_formality == 1.0), text
        assert has(t["informal_open"]) == (row.attr_formality == 0.0), text
        n_points = sum(reg(p)[1:] in text for p in spec["points"])  # first letter may be lowercased
        assert n_points == {0.0: 1, 0.5: 2, 1.0: len(spec["points"])}[row.attr_detail], text
        if row.attr_formality == 1.0:
            assert "n't" not in text and "'re " not in text  # no contractions in the formal register
    # harmful responses carry unsafe advice that safe ones never contain
    unsafe = [f for d in t["domains"].values() for f in d["harmful"]] + t["insults"]
    safe_text = " ".join(items.loc[items["attr_harm"] == 0, "text"])
    assert not any(f[:40] in safe_text for f in unsafe)


def test_true_reward_matches_weights(pop):
    truth = pop.meta["truth"]
    u = truth.user_ids[:5]
    m = truth.item_ids[:5]
    r = truth.true_reward(u, m)
    expected = np.einsum("na,na->n", truth.weights[:5], truth.item_attrs[:5])
    np.testing.assert_allclose(r, expected)
    with pytest.raises(DataError, match="unknown user_id"):
        truth.true_reward(["nobody"], m[:1])


def test_context_dependence_shifts_weights_by_domain():
    d = generate_population(
        SyntheticConfig(persons=50, comparisons_per_person=5, context_dependence=1.0, seed=2)
    )
    truth = d.meta["truth"]
    u = truth.user_ids[0]
    w_a = truth.person_weights([u], truth.domains[0])
    w_b = truth.person_weights([u], truth.domains[1])
    assert np.abs(w_a - w_b).max() > 0.1
    assert w_a[0, -1] == w_b[0, -1]  # harm is not context dependent
    # rewards of items in a domain use that domain's weights
    items = d.items[d.items["domain"] == truth.domains[1]].head(3)
    r = truth.true_reward([u] * 3, items["item_id"])
    np.testing.assert_allclose(r, items[[f"attr_{a}" for a in ATTRIBUTES]].to_numpy() @ w_b[0])


def test_demographics_correlate_with_profiles(pop):
    users = pop.users
    for col in ("age_band", "region", "education"):
        top = users.groupby("profile")[col].agg(lambda s: s.value_counts(normalize=True).iloc[0])
        assert (top > 0.6).all(), col  # signal 0.7 plus chance
    none = generate_population(SyntheticConfig(persons=20, comparisons_per_person=2, demographics=False))
    assert "age_band" not in none.users.columns


def test_heldout_comparisons_and_oracle(pop):
    test = sample_comparisons(pop, 15, prompts="heldout", seed=4)
    assert len(test.comparisons) == 600 * 15
    assert set(test.comparisons["prompt"]) <= set(pop.meta["heldout_prompts"])
    assert set(test.comparisons["user_id"]) == set(pop.comparisons["user_id"])
    some = sample_comparisons(pop, 3, prompts="train", users=["u000", "u001"], seed=4)
    assert set(some.comparisons["user_id"]) == {"u000", "u001"} and len(some.comparisons) == 6
    per = oracle_accuracy(test, by_person=True)
    assert len(per) == 600 and (per["n"] == 15).all()
    assert per["bayes"].between(0.5, 1.0).all()
    overall = oracle_accuracy(test)
    assert abs(per["bayes"].mean() - overall["bayes"]) < 1e-9  # equal counts per person
    with pytest.raises(ConfigError):
        sample_comparisons(pop, 1, prompts="nonsense")
    with pytest.raises(DataError, match="no synthetic ground truth"):
        oracle_accuracy(PreferenceData())


def test_ratings_view(pop):
    r = sample_ratings(pop, 8, seed=1)
    assert len(r.ratings) == 600 * 8 and r.rating_scale == (1.0, 5.0)
    assert r.ratings["rating"].between(1, 5).all() and r.ratings["rating"].nunique() >= 4
    assert not r.ratings.duplicated(["user_id", "item_id"]).any()
    truth = pop.meta["truth"]
    true = truth.true_reward(r.ratings["user_id"], r.ratings["item_id"])
    assert np.corrcoef(true, r.ratings["rating"])[0, 1] > 0.6


def test_bad_config_is_a_clear_error():
    for bad in ({"alpha": 0}, {"temperature": -1}, {"adversarial_frac": 1.5}, {"responses_per_prompt": 1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            generate_population(SyntheticConfig(persons=5, **bad))


def test_write_and_read_round_trip(tmp_path, pop):
    small = generate_population(SyntheticConfig(persons=30, comparisons_per_person=5, seed=9))
    test = sample_comparisons(small, 4)
    summary = write_population(small, tmp_path / "pop", test)
    assert json.loads((tmp_path / "pop" / "summary.json").read_text())["persons"] == summary["persons"] == 30
    data, held = read_population(tmp_path / "pop")
    pd.testing.assert_frame_equal(
        data.comparisons.reset_index(drop=True).astype(str), small.comparisons.astype(str), check_dtype=False
    )
    assert isinstance(data.meta["truth"], PopulationTruth)
    np.testing.assert_allclose(data.meta["truth"].weights, small.meta["truth"].weights, atol=1e-6)
    assert oracle_accuracy(held)["n"] == 120
    assert not list((tmp_path / "pop").glob("*.tmp"))
    with pytest.raises(DataError, match="missing"):
        read_population(tmp_path)


def test_cli_synth(tmp_path):
    from typer.testing import CliRunner

    from personalign.cli import app

    res = CliRunner().invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(tmp_path / "s"),
            "--persons",
            "40",
            "--comparisons",
            "6",
            "--adversarial",
            "0.1",
            "--seed",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "oracle accuracy" in res.output
    data, held = read_population(tmp_path / "s")
    assert data.n_users == 40 and len(data.comparisons) == 240 and data.users["adversarial"].sum() == 4


def test_ten_thousand_by_fifty():
    d = generate_population(SyntheticConfig(persons=10_000, comparisons_per_person=50, seed=0))
    assert len(d.comparisons) == 500_000 and d.n_users == 10_000
    assert d.comparisons["user_id"].value_counts().eq(50).all()
    assert len(d.items) == 640 and d.meta["truth"].weights.shape == (10_000, len(ATTRIBUTES))


def test_sigmoid_is_stable():
    x = np.array([-1e4, -5.0, 0.0, 5.0, 1e4])
    s = _sigmoid(x)
    assert np.isfinite(s).all() and s[0] == 0.0 and s[2] == 0.5 and s[-1] == 1.0


def test_demo_step(tmp_path):
    from rich.console import Console

    from personalign.demo.context import DemoContext
    from personalign.demo.population import population_step

    ctx = DemoContext(out=tmp_path, quick=True, seed=0, console=Console(record=True, width=120))
    population_step(ctx)
    text = ctx.console.export_text()
    assert "oracle accuracy" in text and "adversarial" in text
    pop, test = ctx.state["population"], ctx.state["population_test"]
    assert pop.n_users == 500 and set(test.comparisons["prompt"]) <= set(pop.meta["heldout_prompts"])
    assert (tmp_path / "population" / "population.parquet").is_file()
    assert (tmp_path / "population" / "truth.json").is_file()
