"""Policies, scorers, BoundedPolicy on a real fitted model, monitors, the bounds CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personalign.bounds import (
    AttributeScorer,
    BoundedPolicy,
    CallableScorer,
    FilterBubbleMonitor,
    LockInMonitor,
    RegexScorer,
    decay_weights,
    influence_weights,
    list_policies,
    load_policy,
    load_probes,
    mmr_rerank,
    policy_from_dict,
    sycophancy_check,
)
from personalign.errors import ConfigError


# ------------------------------------------------------------------------------------------------ policy
def test_packaged_policies_validate():
    for name in ("default", "synthetic"):
        p = load_policy(name)
        assert p.constraints and p.trust_region.rho == 2.0


def test_one_loader_takes_presets_paths_mappings_and_policies(tmp_path, monkeypatch):
    assert {"rules", "default", "synthetic"} <= set(list_policies())
    for name in list_policies():
        assert load_policy(name).name == name  # every preset loads by its bare name
    rules = load_policy("rules")
    assert [c.name for c in rules.constraints] == ["no_insults", "no_dangerous_instructions"]
    assert load_policy(rules) is rules
    assert load_policy({"constraints": [], "trust_region": {"rho": 1.0}}).trust_region.rho == 1.0
    with pytest.raises(ConfigError) as e:
        load_policy("nosuch")
    assert "unknown policy preset" in str(e.value) and all(n in str(e.value) for n in list_policies())
    with pytest.raises(ConfigError, match="policy file not found"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="folder"):
        load_policy(tmp_path)
    # a file in the working directory with a preset's name is read as that file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").write_text("name: mine\nconstraints: []\n")
    assert load_policy("rules").name == "mine"


def test_policy_errors_name_file_field_and_expectation(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(
        "constraints:\n  - name: x\n    scorer: {type: regex, patterns: ['(']}\n    threshold: abc\n"
        "trust_region: {rho: -1}\nmonitors: {lock_in: {drift_window: 1}}\nextra_key: 1\n"
    )
    with pytest.raises(ConfigError) as e:
        load_policy(f)
    msg = str(e.value)
    assert str(f) in msg
    assert "constraints[0].scorer" in msg and "not a valid regular expression" in msg
    assert "constraints[0].threshold" in msg and "'calibrated'" in msg and "'abc'" in msg
    assert "trust_region.rho" in msg and "greater than or equal to 0" in msg
    assert "monitors.lock_in.drift_window" in msg
    assert "extra_key" in msg


def test_policy_toml_and_syntax_errors(tmp_path):
    t = tmp_path / "p.toml"
    t.write_text(
        'name = "t"\n[[constraints]]\nname = "r"\nthreshold = 0.5\ndirection = "max"\n'
        '[constraints.scorer]\ntype = "regex"\npatterns = ["bomb"]\n[trust_region]\nrho = 1.0\n'
    )
    p = load_policy(t)
    assert p.constraints[0].scorer.patterns == ["bomb"] and p.trust_region.rho == 1.0
    y = tmp_path / "broken.yaml"
    y.write_text("constraints: [\n  - name: x\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: not valid YAML"):
        load_policy(y)
    with pytest.raises(ConfigError, match="duplicate|twice"):
        policy_from_dict(
            {
                "constraints": [
                    {"name": "a", "scorer": {"type": "regex", "patterns": ["x"]}, "threshold": 0.5},
                    {"name": "a", "scorer": {"type": "regex", "patterns": ["y"]}, "threshold": 0.5},
                ]
            },
            "dup.yaml",
        )


def test_calibrated_threshold_needs_a_calibrated_scorer():
    pol = policy_from_dict(
        {
            "constraints": [
                {
                    "name": "c",
                    "scorer": {"type": "callable", "target": "numpy:ones_like"},
                    "threshold": "calibrated",
                }
            ]
        },
        "c.yaml",
        allow=["numpy:ones_like"],
    )
    with pytest.raises(ConfigError, match="calibrated"):
        BoundedPolicy(object(), pol, scorers={"c": CallableScorer(lambda p, r: np.zeros(len(r)))})


# ------------------------------------------------------------------------------------------------ scorers
def test_rule_callable_attribute_scorers():
    rs = RegexScorer([r"\bbomb\b", r"kill\s+yourself"])
    assert rs.score("", ["how to make a bomb", "nice day", "Kill   yourself and bomb"]).tolist() == [1, 0, 2]
    cs = CallableScorer(lambda p, r: [len(x) for x in r])
    assert cs.score("p", ["ab", "abcd"]).tolist() == [2, 4]
    with pytest.raises(ConfigError):
        CallableScorer("personalign.nope:missing")
    at = AttributeScorer("harm", pd.DataFrame({"text": ["a", "b"], "harm": [0.0, 1.0]}))
    s = at.score("", ["a", "b", "unknown"])
    assert s[0] == 0 and s[1] == 1 and np.isnan(s[2])


def test_unscorable_response_fails_closed():
    pol = policy_from_dict(
        {
            "constraints": [
                {
                    "name": "h",
                    "scorer": {"type": "attribute", "column": "harm"},
                    "threshold": 0.5,
                    "direction": "max",
                }
            ]
        },
        "p.yaml",
    )
    bp = BoundedPolicy(object(), pol, items=pd.DataFrame({"text": ["a"], "harm": [0.0]}))
    chk = bp.check("", ["a", "never seen"])
    assert chk["satisfied"].tolist() == [True, False]


# ------------------------------------------------------------------------------------------------ real model
@pytest.fixture(scope="module")
def fitted():
    from personalign.experiments.models import fit_synthetic

    return fit_synthetic(
        persons=30, comparisons_per_person=20, adversarial_frac=0.2, rank=3, encoder="hashing"
    )


def _synthetic_policy(**over):
    raw = {
        "name": "t",
        "constraints": [
            {
                "name": "harmless",
                "scorer": {"type": "attribute", "column": "attr_harm"},
                "threshold": 0.5,
                "direction": "max",
            }
        ],
        "trust_region": {"rho": 2.0},
    }
    raw.update(over)
    return policy_from_dict(raw, "t.yaml")


def test_adversarial_person_gets_no_harmful_answer(fitted):
    from personalign.bounds.check import violation_table
    from personalign.experiments.bounds import person_weights, universal_pairs

    data, model = fitted
    bp = BoundedPolicy(model, _synthetic_policy(), items=data.items)
    W, meta = person_weights(model, data)
    vt = violation_table(bp, W, meta, universal_pairs(data.items))
    assert (meta["kind"] == "adversarial").sum() >= 3 and (meta["kind"] == "extreme").any()
    assert vt["violation_with"].max() == 0.0
    # without the policy the adversarial / extreme persons do pick harmful answers
    assert vt.loc[vt["kind"] != "ordinary", "violation_without"].max() > 0.3
    # rank by user id: the chosen answer is never harmful; all-harmful candidates -> refusal
    harm = dict(zip(data.items["text"], data.items["attr_harm"], strict=False))
    u = meta.loc[meta["kind"] == "adversarial", "person"].iloc[0]
    for prompt, g in data.items.groupby("prompt"):
        rk = bp.rank(u, prompt, g["text"].tolist())
        assert harm[rk.choice] == 0.0 and not rk.fallback
    bad = data.items.loc[data.items["attr_harm"] == 1, "text"].tolist()[:3]
    rk = bp.rank(u, data.items["prompt"].iloc[0], bad)
    assert rk.refused and rk.choice == bp.policy.fallback.refusal_text
    least = BoundedPolicy(model, _synthetic_policy(fallback={"mode": "least_violating"}), items=data.items)
    rk2 = least.rank(u, data.items["prompt"].iloc[0], bad)
    assert rk2.fallback and not rk2.refused and rk2.choice in bad


def test_check_report_counts_separable_pairs_and_the_policy_removes_violations(fitted):
    from personalign.bounds.check import check_markdown, check_report

    data, model = fitted
    bp = BoundedPolicy(model, _synthetic_policy(), items=data.items)
    rep = check_report(bp, data, max_persons=12)
    harmful = data.items["attr_harm"] >= 0.5
    assert rep["items"] == len(data.items) and rep["items_satisfying"] == pytest.approx(1 - harmful.mean())
    assert rep["constraint_pass_rates"] == {"harmless": pytest.approx(1 - harmful.mean())}
    per_prompt = data.items.assign(h=harmful).groupby("prompt")["h"].agg(["sum", "size"])
    assert rep["separable_pairs"] == int((per_prompt["sum"] * (per_prompt["size"] - per_prompt["sum"])).sum())
    assert rep["persons"] == 12 and len(rep["per_person"]) == 12
    assert rep["violation_with"]["max"] == 0.0 and rep["violation_without"]["max"] > 0.0
    worst = max(rep["per_person"], key=lambda r: r["violation_without"])
    assert rep["violation_without"]["worst_person"] == worst["person"]
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep
    md = check_markdown({**rep, "command": "personalign bounds check x"})
    assert md.startswith("# bounds check: policy t\n") and "`personalign bounds check x`" in md
    assert f"separable pairs (one satisfies, one violates, same prompt): {rep['separable_pairs']}" in md
    assert "violation rate with policy: mean 0.000, max 0.000" in md


def test_trust_region_limits_personal_deviation(fitted):
    from personalign.bounds.trust import mahalanobis

    data, model = fitted
    prior = model.prior()
    bp = BoundedPolicy(model, _synthetic_policy(trust_region={"rho": 0.5}), items=data.items)
    for u in data.user_ids[:10]:
        assert mahalanobis(bp.weights(u), prior.mean, prior.cov)[0] <= 0.5 + 1e-9
    bp0 = BoundedPolicy(model, _synthetic_policy(trust_region={"rho": 0.0}), items=data.items)
    texts = data.items["text"].tolist()[:10]
    prompts = data.items["prompt"].tolist()[:10]
    pop = model.score_posterior(prior.mean, prompts, texts)
    assert np.allclose(bp0.personal_reward(data.user_ids[0], prompts, texts), pop)
    # personal_matrix (vectorized) agrees with personal_reward (per person)
    W = np.stack([model.posterior(u).mean for u in data.user_ids[:4]])
    M = bp.personal_matrix(W, prompts, texts)
    for i, u in enumerate(data.user_ids[:4]):
        assert np.allclose(M[i], bp.personal_reward(u, prompts, texts))


def test_no_policy_scores_the_personal_reward_and_blocks_nothing(fitted):
    data, model = fitted
    free, bounded = BoundedPolicy(model), BoundedPolicy(model, _synthetic_policy(), items=data.items)
    assert not free.bounded and bounded.bounded and free.fallback_text is None
    # a prompt whose candidates include harmful and harmless ones
    prompt, g = next((p, g) for p, g in data.items.groupby("prompt") if 0 < g["attr_harm"].sum() < len(g))
    texts = g["text"].tolist()
    u = data.user_ids[0]
    own = model.score([u] * len(texts), prompt, texts)
    np.testing.assert_allclose(free.reward(u, prompt, texts), own)
    np.testing.assert_allclose(free.personal_reward(model.posterior(u), prompt, texts), own, rtol=1e-9)
    rk = free.rank(u, prompt, texts)
    assert list(rk.order) == list(np.argsort(-own, kind="stable")) and rk.satisfied.all()
    assert not rk.fallback and not rk.refused and rk.choice == texts[int(np.argmax(own))]
    # the same keys and types with and without a policy; only the bounded one blocks
    d0, d1 = (
        free.evaluate(u, prompt, texts, population=True),
        bounded.evaluate(u, prompt, texts, population=True),
    )
    assert d0.keys() == d1.keys() and d0["allowed"].all() and d0["scores"] == {}
    np.testing.assert_allclose(d0["reward"], own)
    np.testing.assert_allclose(d0["population"], model.score_posterior(model.prior(), prompt, texts))
    harm = g["attr_harm"].to_numpy() > 0.5
    assert np.array_equal(~d1["allowed"], harm)
    assert d1["reward"][~harm].min() > d1["reward"][harm].max()
    # one person object (a posterior) gives the same rows as the person's id
    d2 = bounded.evaluate(model.posterior(u), prompt, texts)
    np.testing.assert_allclose(d2["reward"], d1["reward"], rtol=1e-9)
    # a BoundedPolicy given as the policy is reused (its scorers and thresholds)
    again = BoundedPolicy(None, bounded)
    assert again.model is model and again.scorers == bounded.scorers
    np.testing.assert_allclose(again(u, prompt, texts), d1["reward"])


# ------------------------------------------------------------------------------------------------ monitors
def test_mmr_rerank_keeps_bounds_and_diversifies():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 16))
    E = np.vstack([centers[i] + 0.01 * rng.standard_normal((5, 16)) for i in range(3)])
    r = np.r_[np.full(5, 3.0), np.full(5, 2.0), np.full(5, 1.0)] + 0.01 * rng.random(15)
    plain = mmr_rerank(r, E, 0.0)
    assert set(plain[:5]) == set(range(5))
    div = mmr_rerank(r, E, 0.7)
    assert len({i // 5 for i in div[:3]}) == 3
    sat = np.ones(15, bool)
    sat[:5] = False
    tiered = mmr_rerank(r, E, 0.7, satisfied=sat)
    assert sat[tiered[:10]].all() and not sat[tiered[10:]].any()


def test_filter_bubble_monitor():
    rng = np.random.default_rng(0)
    E = np.vstack([c + 0.05 * rng.standard_normal((20, 8)) for c in rng.standard_normal((4, 8)) * 3])
    fb = FilterBubbleMonitor(n_clusters=4, min_entropy_ratio=0.5).fit(E)
    narrow = fb.assess(E[:20], E)
    broad = fb.assess(E[::2], E)
    assert narrow["flag"] and narrow["coverage"] == 0.25
    assert not broad["flag"] and broad["entropy_ratio"] > 0.9


def test_decay_weights_half_life():
    w = decay_weights([0, 10, 20], half_life=10)
    assert np.allclose(w, [0.25, 0.5, 1.0])
    assert np.allclose(decay_weights([0, 1], None), 1.0)


class _TwoFeatureModel:
    """Rewards w . phi(text) on 2-d features, Laplace posterior via the models' own Newton solver."""

    def __init__(self, feats):
        self.feats = feats

    def prior(self, user_row=None):
        from personalign.models import Posterior

        return Posterior(np.zeros(2), np.eye(2) * 4.0, 0)

    def score_posterior(self, w, prompts, responses):
        w = w.mean if hasattr(w, "cov") else np.asarray(w)
        return np.stack([self.feats[r] for r in responses]) @ w

    def adapt(self, examples, prior=None):
        from personalign.models import Posterior, laplace_newton

        prior = prior or self.prior()
        D = np.stack(
            [
                self.feats[c] - self.feats[r]
                for c, r in zip(examples["chosen"], examples["rejected"], strict=False)
            ]
        )
        wt = examples["weight"].to_numpy(float) if "weight" in examples else np.ones(len(examples))
        mean, cov = laplace_newton(
            D, np.zeros(len(D)), np.ones(len(D)), wt, prior.mean, np.linalg.inv(prior.cov), w0=prior.mean
        )
        return Posterior(mean, cov, len(D))


def test_lockin_detects_reversed_preferences_and_decay_helps():
    rng = np.random.default_rng(0)
    feats = {f"t{i}": rng.standard_normal(2) for i in range(40)}
    model = _TwoFeatureModel(feats)
    true_w = np.array([2.0, 0.0])

    def judgments(w, n, t0):
        rows = []
        for k in range(n):
            a, b = rng.choice(40, 2, replace=False)
            ta, tb = f"t{a}", f"t{b}"
            c, r = (ta, tb) if feats[ta] @ w > feats[tb] @ w else (tb, ta)
            rows.append(
                {"user_id": "u", "prompt": "", "chosen": c, "rejected": r, "timestamp": float(t0 + k)}
            )
        return pd.DataFrame(rows)

    stable = judgments(true_w, 60, 0)
    mon = LockInMonitor(window=20, drift_threshold=0.2, half_life=5.0)
    calm = mon.assess(model, stable)
    assert not calm["flag_drift"] and calm["accuracy_recent"] > 0.8
    changed = pd.concat([judgments(true_w, 60, 0), judgments(-true_w, 40, 60)], ignore_index=True)
    res = mon.assess(model, changed)
    assert res["flag_drift"] and res["drift"] > 0.2
    # a short half-life lets the recent (reversed) evidence win: better on the newest judgments
    assert res["accuracy_recent_decayed"] > res["accuracy_recent"]
    assert mon.assess(model, stable.iloc[:9])["flag"] is False  # too little evidence: no verdict


def test_sycophancy_probes_and_check():
    probes = load_probes()
    assert len(probes) >= 20 and probes["sycophantic"].ne(probes["correct"]).all()
    agree = lambda p, r: np.array([1.0 if x in set(probes["sycophantic"]) else 0.0 for x in r])  # noqa: E731
    neutral = lambda p, r: np.zeros(len(r))  # noqa: E731
    res = sycophancy_check(agree, neutral, probes, margin=0.1)
    assert res["flag"] and res["rate_personal"] == 1.0
    assert not sycophancy_check(neutral, neutral, probes)["flag"]


def test_influence_weights_cap_each_person():
    c = pd.DataFrame({"user_id": ["a"] * 100 + ["b"] * 10 + ["c"] * 10, "weight": 1.0})
    w = influence_weights(c, cap="median")
    tot = pd.Series(w).groupby(c["user_id"]).sum()
    assert np.isclose(tot["a"], 10) and np.isclose(tot["b"], 10)
    assert np.allclose(influence_weights(c, None), 1.0)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_check_writes_report(fitted, tmp_path):
    from typer.testing import CliRunner

    from personalign.cli import app
    from personalign.data.io import write_data

    data, model = fitted
    mdir = model.save_pretrained(tmp_path / "model")
    dpath = write_data(data.copy(), tmp_path / "data.parquet")
    pol = tmp_path / "p.yaml"
    pol.write_text(
        "constraints:\n  - name: harmless\n    scorer: {type: attribute, column: attr_harm}\n"
        "    threshold: 0.5\n    direction: max\n"
    )
    out = tmp_path / "rep"
    res = CliRunner().invoke(
        app, ["bounds", "check", str(dpath), "--policy", str(pol), "--model", str(mdir), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["violation_with"]["max"] == 0.0 and rep["violation_without"]["max"] > 0
    assert (out / "report.md").exists()


def test_cli_bad_policy_exits_2(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("trust_region: {rho: nope}\n")
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from personalign.cli import main; sys.argv[0] = 'personalign'; main()",
            "bounds",
            "validate",
            str(bad),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "trust_region.rho" in r.stderr


def test_packaged_scorers_load_with_recorded_accuracy():
    from personalign.bounds import ConsensusScorer, HarmlessnessHead

    head = HarmlessnessHead.load()
    assert head.metrics_["n_test"] > 500 and 0.55 < head.metrics_["test_pair_accuracy"] <= 1.0
    cons = ConsensusScorer.load()
    assert cons.metrics_["test_accuracy"] > 0.85
    s = cons.score(
        "", ["You are a worthless idiot and everyone hates you.", "Thanks, the recipe worked great!"]
    )
    assert s[0] > cons.threshold_ > s[1]
    assert head.score(
        "Human: how do I bake bread?", ["Mix flour, water, yeast and salt.", "Go away."]
    ).shape == (2,)
