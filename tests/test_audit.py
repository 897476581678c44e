"""The aggregation audit on hand-built profiles with known answers, and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personalign.audit.groups import group_analysis, group_labels
from personalign.audit.heterogeneity import heterogeneity, variance_decomposition
from personalign.audit.report import run_audit
from personalign.audit.social_choice import analyze_profile, social_choice
from personalign.audit.table import judgments_from_data, pairs_from_judgments
from personalign.data.core import PreferenceData


def ranked(ballots: list[tuple[int, str]], users: pd.DataFrame | None = None) -> PreferenceData:
    """Ratings from rankings: ``(count, "abc")`` = count persons ranking a > b > c (best gets the top rating)."""
    rows = []
    k = 0
    for count, order in ballots:
        for _ in range(count):
            for pos, item in enumerate(order):
                rows.append(
                    {"user_id": f"p{k}", "response": item, "item_id": item, "rating": float(len(order) - pos)}
                )
            k += 1
    return PreferenceData(
        ratings=pd.DataFrame(rows), users=users, rating_scale=(1.0, float(len(ballots[0][1])))
    )


def profile(data: PreferenceData) -> dict:
    j = judgments_from_data(data)
    pairs = pairs_from_judgments(j)
    return analyze_profile(j, pairs, np.arange(len(j.items)))


def test_condorcet_cycle():
    res = profile(ranked([(1, "abc"), (1, "bca"), (1, "cab")]))
    assert res["condorcet_winner"] is None
    assert res["cycles"]["three_cycles"] == 1
    assert res["smith_set_size"] == 3
    assert sorted(res["cycle_drawn"]) == ["a", "b", "c"]
    # the symmetric profile ties every rule
    assert sorted(res["winners"]["copeland"]) == ["a", "b", "c"]


def test_unanimous_profile():
    data = ranked([(7, "abcde")])
    res = profile(data)
    assert res["condorcet_winner"] == "a"
    assert res["cycles"]["three_cycles"] == 0
    assert all(w == ["a"] for w in res["winners"].values())
    assert not res["any_disagreement"]
    assert res["smith_set"] == ["a"]
    het = heterogeneity(judgments_from_data(data))
    assert het["krippendorff"]["alpha"] == pytest.approx(1.0)
    assert het["contested"]["contested_share"] == 0.0
    assert het["loo_majority_agreement"]["mean"] == pytest.approx(1.0)
    audit = run_audit(data, n_permutations=9)
    assert audit["representation"]["aggregated"]["mean"] == pytest.approx(1.0)
    assert audit["representation"]["aggregated"]["share_below_60"] == 0.0


def test_borda_and_condorcet_winner_differ():
    # a beats b 3-2 and c 3-2 (Condorcet winner), but b collects more Borda points
    res = profile(ranked([(3, "abc"), (2, "bca")]))
    assert res["condorcet_winner"] == "a"
    assert res["winners"]["copeland"] == ["a"]
    assert res["winners"]["maximin"] == ["a"]
    assert res["winners"]["borda"] == ["b"]
    # an aggregated BT reward behaves like Borda, not like the majority
    assert res["winners"]["bt"] == ["b"]
    assert res["rules_disagree"]["borda_vs_copeland"]
    assert res["rule_contains_condorcet_winner"]["bt"] is False
    assert res["kendall_tau_bt_borda"] == pytest.approx(1.0)


def test_polarity_lower_reverses_the_profile():
    data = ranked([(5, "abc")])
    j = judgments_from_data(data)
    res = social_choice(j, pairs_from_judgments(j), sign=-1.0)
    assert res["main"]["condorcet_winner"] == "c"


def two_groups(n_per: int = 10) -> PreferenceData:
    """Group X finds items p, q, t offensive (5) and r, s, u fine (1); group Y the opposite; X is larger."""
    rows, users = [], []
    for g, high in (("X", "pqt"), ("Y", "rsu")):
        for k in range(n_per):
            uid = f"{g}{k}"
            users.append({"user_id": uid, "camp": g, "noise": "n" + str(k % 2)})
            for item in "pqrstu":
                rows.append(
                    {
                        "user_id": uid,
                        "response": item,
                        "item_id": item,
                        "rating": 5.0 if item in high else 1.0,
                    }
                )
    # three more X persons: everyone's majority follows X
    for k in range(3):
        uid = f"X+{k}"
        users.append({"user_id": uid, "camp": "X", "noise": "n0"})
        for item in "pqrstu":
            rows.append(
                {"user_id": uid, "response": item, "item_id": item, "rating": 5.0 if item in "pqt" else 1.0}
            )
    return PreferenceData(ratings=pd.DataFrame(rows), users=pd.DataFrame(users), rating_scale=(1.0, 5.0))


def test_two_groups_with_opposite_majorities():
    data = two_groups()
    j = judgments_from_data(data)
    labels, _ = group_labels(data.users, j.users, ["camp", "noise"])
    res = group_analysis(j, labels)
    camp = res["camp"]
    # everyone's majority follows X, so Y is opposite on every item
    assert camp["groups"]["Y"]["opposite_majority_items"] == 6
    assert camp["groups"]["Y"]["opposite_majority_share"] == 1.0
    assert camp["groups"]["X"]["opposite_majority_items"] == 0
    jsd = np.array(camp["jsd_between"])
    assert jsd[0, 1] == pytest.approx(1.0)  # disjoint answers on every item: maximal divergence
    # a split that cuts across the camps shows little divergence
    assert np.array(res["noise"]["jsd_between"])[0, 1] < 0.1
    assert camp["groups"]["Y"]["representativeness_pooled"] < camp["groups"]["X"]["representativeness_pooled"]
    # the majority label is X's answer: X fully represented, Y not at all
    assert camp["groups"]["X"]["representativeness_majority_label"] == pytest.approx(1.0)
    assert camp["groups"]["Y"]["representativeness_majority_label"] == pytest.approx(0.0)
    audit = run_audit(data, group_by=["camp"], n_permutations=9)
    assert audit["worst_group"]["group"] == "Y"
    assert audit["groups"]["camp"]["groups"]["Y"]["aggregate_fit_mean"] < 0.5
    assert audit["groups"]["camp"]["groups"]["X"]["aggregate_fit_mean"] > 0.9
    assert audit["heterogeneity"]["contested"]["contested_share"] == 1.0


def test_variance_decomposition_separates_person_offsets():
    rng = np.random.default_rng(0)
    n_u, n_i = 60, 40
    item = rng.normal(0, 1, n_i)
    rows = []
    for off_sd, name in ((0.0, "none"), (1.0, "offsets")):
        person = rng.normal(0, off_sd, n_u)
        recs = [
            {
                "user_id": f"u{u}",
                "response": f"i{i}",
                "item_id": f"i{i}",
                "rating": item[i] + person[u] + rng.normal(0, 1),
            }
            for u in range(n_u)
            for i in rng.choice(n_i, 15, replace=False)
        ]
        v = variance_decomposition(judgments_from_data(PreferenceData(ratings=pd.DataFrame(recs))))
        rows.append((name, v))
    none, offs = rows[0][1], rows[1][1]
    assert none["person_share"] < 0.05
    assert offs["person_share"] > 0.2
    assert 0 < offs["explained_variance_ratio"] < none["explained_variance_ratio"] < 1


def test_cli_writes_every_output(tmp_path):
    from typer.testing import CliRunner

    from personalign.cli import app
    from personalign.data.io import write_data

    src = write_data(two_groups(), tmp_path / "camps.parquet")
    out = tmp_path / "audit"
    r = CliRunner().invoke(
        app, ["audit", str(src), "--group-by", "camp", "--permutations", "9", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "audit.json").read_text())
    assert doc["headline"]["worst_group"] == "camp=Y"
    for f in ("report.html", "person_fit.png", "group_divergence.png", "majority_graph.png"):
        assert (out / f).stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "camp=Y" in html and "data:image/png;base64," in html
    assert "Aggregation audit" in r.output
    assert not [p for p in out.iterdir() if p.name.startswith(".audit-")]


def test_cli_bad_option_exits_2(tmp_path):
    from personalign.cli.common import run_guarded
    from personalign.data.io import write_data

    src = write_data(two_groups(), tmp_path / "camps.parquet")
    import sys

    argv = sys.argv
    try:
        sys.argv = ["personalign", "audit", str(src), "--polarity", "sideways", "--out", str(tmp_path / "o")]
        from personalign.cli import app

        assert run_guarded(app) == 2
        sys.argv = [
            "personalign",
            "audit",
            str(src),
            "--group-by",
            "nosuchcolumn",
            "--out",
            str(tmp_path / "o"),
        ]
        assert run_guarded(app) == 2
    finally:
        sys.argv = argv
    assert not (tmp_path / "o" / "audit.json").exists()


def test_personalized_model_serves_the_group_the_aggregate_fails(tmp_path):
    from personalign.features import get_encoder
    from personalign.features.pairs import PairFeaturizer
    from personalign.models import make_model

    data = two_groups(15)
    model = make_model(
        "lowrank", rank=2, max_iter=60, featurizer=PairFeaturizer(get_encoder("hashing", cache=False))
    )
    model.fit(data.as_comparison_data()).save_pretrained(tmp_path / "m")
    rep = run_audit(data, group_by=["camp"], model_dir=tmp_path / "m", n_permutations=9)["representation"]
    assert rep["aggregated"]["share_below_60"] > 0.4  # camp Y, the minority, is fit below 60%
    assert rep["personalized"]["share_below_60"] < rep["aggregated"]["share_below_60"]
    assert rep["change"]["mean_gain"] > 0.2


def test_audit_notes_the_repeat_judgments_the_reader_merged():
    data = ranked([(4, "abcd"), (3, "dcba")])
    assert not any("repeat judgments" in n for n in run_audit(data, n_permutations=0)["notes"])
    data.meta["repeat_judgments"] = {"dropped": 5, "person_items": 4, "agreeing": 3, "kept": "last"}
    notes = run_audit(data, n_permutations=0)["notes"]
    assert notes[0] == (
        "5 repeat judgments merged by the reader (the last of each of 4 person-item pairs kept; 3 of them agreed)"
    )
