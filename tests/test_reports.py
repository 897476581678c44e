"""The shared report rendering (personalign.reports) and the three reports built on it: evaluation, audit and
bounds check. Each test goes through the real rendering functions."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personalign.data.core import PreferenceData
from personalign.reports import counts_text, markdown_to_html, md_table, shorten, verdict_word
from personalign.reports import plots as rp

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "synthetic-alpha0.1"


# ----------------------------------------------------------------------------------------- shared layer
def test_markdown_backticks_become_code_and_tables_get_tooltips_and_numeric_cells():
    md = "Run `personalign eval` now.\n\n" + md_table(["model", "acc"], [["low-rank BT", "71.5 ± 1.4"]])
    html = markdown_to_html(md, {"acc": "per-person accuracy"})
    assert "<code>personalign eval</code>" in html and "`" not in html
    assert '<th style="text-align:right" title="per-person accuracy">acc</th>' in html
    assert re.search(r'<td[^>]*class="num"[^>]*>71\.5 ± 1\.4</td>', html)
    assert '<div class="table-wrap"><table>' in html  # the scrolling box of the sticky header


def test_counts_print_readably_not_as_a_dict():
    assert counts_text({"comparisons": 0, "ratings": 13036, "rankings": 0, "votes": 0}) == "13,036 ratings"
    assert counts_text({"comparisons": 1200, "rankings": 40}) == "1,200 comparisons and 40 rankings"
    assert counts_text({"votes": 0}) == "no judgments"


def test_shorten_cuts_at_a_word_and_marks_the_cut():
    s = shorten("It is telling how the people in this thread are choosing to attack him rather", 40)
    assert len(s) <= 40 and s.endswith("…") and not s[:-1].endswith(" ")
    assert shorten("short text", 40) == "short text"


def test_verdict_word_follows_the_interval():
    assert verdict_word(0.01, 0.05) == "helps"
    assert verdict_word(-0.05, -0.01) == "hurts"
    assert verdict_word(-0.01, 0.02) == "does not clearly help"


def test_kshot_axis_ticks_are_the_k_values():
    plt = rp.pyplot()
    fig, ax = plt.subplots()
    ks = [0, 1, 2, 5, 10, 20, 50]
    ax.plot(ks, np.linspace(50, 70, len(ks)))
    rp.kshot_axis(ax, ks)
    fig.canvas.draw()
    assert list(ax.get_xticks()) == ks
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in ks]
    # log(1 + k) spacing: k = 0 is drawn, and the gap 1 -> 2 is narrower than 0 -> 1
    x = ax.transData.transform(np.c_[[0, 1, 2], [60, 60, 60]])[:, 0]
    assert 0 < x[2] - x[1] < x[1] - x[0]
    plt.close(fig)


def _legend_outside(fig, ax) -> bool:
    fig.canvas.draw()
    leg = ax.get_legend().get_window_extent()
    box = ax.get_window_extent()
    return leg.x0 >= box.x1 or leg.y1 <= box.y0


# ------------------------------------------------------------------------------------------ evaluation
@pytest.fixture()
def committed_results(tmp_path):
    """A committed evaluation folder's results.json, copied (the original stays untouched)."""
    dst = tmp_path / "res"
    dst.mkdir()
    shutil.copy(COMMITTED / "results.json", dst / "results.json")
    return dst


def test_eval_plots_have_titles_chance_lines_legends_outside_and_k_ticks(committed_results):
    from personalign.evaluate.report import groups_figure, kshot_figure, per_person_figure

    res = json.loads((committed_results / "results.json").read_text())
    fig = kshot_figure(res)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in res["config"]["ks"]]
    assert ax.get_title(loc="left") and ax.get_xlabel() and ax.get_ylabel()
    assert any(line.get_label() == "chance (50%)" and line.get_ydata()[0] == 50 for line in ax.get_lines())
    assert _legend_outside(fig, ax)
    for fig in (groups_figure(res), per_person_figure(res)):
        axes = fig.axes
        assert all(a.get_xlabel() for a in axes[-1:]) and axes[0].get_title(loc="left")
        assert all(any(ln.get_label() == "chance (50%)" for ln in a.get_lines()) for a in axes)
        legend_ax = next(a for a in axes if a.get_legend() is not None)
        assert _legend_outside(fig, legend_ax)
    rp.pyplot().close("all")


def test_rerender_keeps_results_json_byte_identical_and_writes_the_new_look(committed_results):
    from typer.testing import CliRunner

    from personalign.cli import app

    before = (committed_results / "results.json").read_bytes()
    r = CliRunner().invoke(app, ["report", str(committed_results)])
    assert r.exit_code == 0, r.output
    assert (committed_results / "results.json").read_bytes() == before
    res = json.loads(before)
    md = (committed_results / "results.md").read_text()
    html = (committed_results / "index.html").read_text()
    # one verdict line per cell, the command that reproduces the folder, a glossary, no raw dicts
    verdicts = re.findall(r"^> - \*\*(.+?)\*\*: personalization \(low-rank BT\) \*\*(.+?)\*\*", md, re.M)
    assert [v[0] for v in verdicts] == [
        "Seen persons, items others judged",
        "Seen persons, unseen items",
        f"New persons after k={max(res['config']['ks'])}",
    ]
    gain = res["cells"]["unseen_items"]["lowrank"]["personal_gain"]
    assert verdicts[1][1] == verdict_word(*gain["ci95"])
    assert res["command"] in md and "## Glossary" in md and "{'" not in md
    assert "<h2>Glossary</h2>" in html and "<code>results.json</code>" in html and "`" not in html
    assert re.search(r'<th[^>]*title="Personalized minus collapsed', html)  # a column's meaning on hover
    assert "<details><summary>All columns" in html  # the long table folded
    assert all(
        (committed_results / p).stat().st_size > 5000 for p in ("kshot.png", "groups.png", "per_person.png")
    )


def test_rerender_refuses_what_is_not_an_evaluation(tmp_path):
    from personalign.errors import DataError
    from personalign.evaluate.report import rerender

    (tmp_path / "results.json").write_text('{"summary": {}}')
    with pytest.raises(DataError, match="field 'cells'"):
        rerender(tmp_path)


def test_demo_records_an_eval_command_that_reproduces_its_run(tmp_path, monkeypatch):
    """The demo's evaluate step prints a `personalign eval` command; run through the CLI, it hands the protocol
    the same data, configuration and encoder as the step does."""
    import shlex

    from typer.testing import CliRunner

    import personalign.evaluate.protocol as protocol
    from personalign.cli import app
    from personalign.data.synthetic import SyntheticConfig, generate_population
    from personalign.demo.evaluate import eval_command, step_config, synthetic_spec

    data = generate_population(SyntheticConfig(persons=320, comparisons_per_person=8, adversarial_frac=0.02))
    cfg = step_config(data, quick=True, seed=0)
    assert cfg.max_persons == 300
    cmd = eval_command(synthetic_spec(data.meta["config"]), cfg, "hashing", tmp_path / "out")
    seen = {}

    class Stop(Exception):
        pass

    def capture(d, c, encoder=None, **kw):
        seen.update(data=d, cfg=c, encoder=encoder)
        raise Stop

    monkeypatch.setattr(protocol, "evaluate", capture)
    argv = shlex.split(cmd)
    assert argv[:2] == ["personalign", "eval"]
    r = CliRunner().invoke(app, argv[1:])
    assert isinstance(r.exception, Stop), r.output
    assert seen["cfg"].to_dict() == cfg.to_dict()
    pd.testing.assert_frame_equal(seen["data"].comparisons, data.comparisons)
    pd.testing.assert_frame_equal(seen["data"].users, data.users)
    enc = getattr(seen["encoder"], "encoder", seen["encoder"])  # the CLI's encoder sits in a disk cache
    assert "hashing" in type(enc).__name__.lower()


# ----------------------------------------------------------------------------------------------- audit
def _rated_with_texts(n_per: int = 12) -> PreferenceData:
    """Two camps rating six items with opposite views; items carry their text."""
    texts = {i: f"Statement {i}: a sentence about topic {i} that people judge differently" for i in "pqrstu"}
    rows, users = [], []
    rng = np.random.default_rng(0)
    for g, high in (("X", "pqt"), ("Y", "rsu")):
        for k in range(n_per + (3 if g == "X" else 0)):
            uid = f"{g}{k}"
            users.append({"user_id": uid, "camp": g})
            for i in "pqrstu":
                y = (5.0 if i in high else 1.0) + rng.choice([-1.0, 0.0, 0.0])
                rows.append({"user_id": uid, "response": texts[i], "item_id": i, "rating": max(1.0, y)})
    return PreferenceData(ratings=pd.DataFrame(rows), users=pd.DataFrame(users), rating_scale=(1.0, 5.0))


def test_audit_report_reads_well(tmp_path):
    from personalign.audit import run_audit, write_audit

    data = _rated_with_texts()
    res = run_audit(data, group_by=["camp"], n_permutations=9)
    write_audit(res, tmp_path, command="personalign audit camps.parquet --out x")
    html = (tmp_path / "report.html").read_text()
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert "built-in method" not in html and "{'" not in html
    assert f"{doc['persons']} persons, {doc['items']} items" in html
    assert re.search(r'<p class="verdict"><b>Verdict.</b> This data holds \w+', html)
    assert "<h2>Glossary</h2>" in html and "personalign audit camps.parquet --out x" in html
    numbers = [int(n) for n in re.findall(r"<h2>(\d+)\. ", html)]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    # item texts, not ids, name the winners (the full text on hover)
    winner = doc["social_choice"]["main"]["winners"]["borda"][0]
    assert doc["item_text"][winner] and doc["item_text"][winner][:30] in html
    # the worst group's difference carries its interval
    gap = doc["worst_group"]["gap_vs_rest"]
    assert gap["ci95"][0] <= gap["mean"] <= gap["ci95"][1]
    assert f"{100 * gap['mean']:+.1f} [{100 * gap['ci95'][0]:+.1f}, {100 * gap['ci95'][1]:+.1f}]" in html


def test_audit_of_comparisons_numbers_its_sections_from_one(tmp_path):
    from personalign.audit import run_audit, write_audit
    from personalign.data.synthetic import generate_population

    data = generate_population(persons=40, comparisons_per_person=12, seed=1)
    write_audit(run_audit(data, n_permutations=9), tmp_path)
    html = (tmp_path / "report.html").read_text()
    numbers = [int(n) for n in __import__("re").findall(r"<h2>(\d+)\. ", html)]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    # comparison data is audited on item pairs: the structure test runs and its verdict leads the report
    assert "Is there learnable personal structure?" in html and "<h2>Glossary</h2>" in html
    write_audit(run_audit(data, n_permutations=0), tmp_path / "off")
    assert "Personal structure was not tested here" in (tmp_path / "off" / "report.html").read_text()


def test_fit_gap_interval_finds_a_worse_group_and_not_a_random_one():
    from personalign.audit.groups import fit_gap_interval

    rng = np.random.default_rng(0)
    acc = np.r_[rng.normal(0.70, 0.05, 60), rng.normal(0.85, 0.05, 200)]
    n = np.full(len(acc), 20)
    worse = fit_gap_interval(acc, n, np.arange(len(acc)) < 60)
    assert worse["ci95"][1] < 0 < worse["ci95"][1] - worse["mean"] + 0.2
    assert worse["mean"] == pytest.approx(acc[:60].mean() - acc[60:].mean())
    random = fit_gap_interval(acc, n, rng.random(len(acc)) < 0.3, seed=1)
    assert random["ci95"][0] < random["mean"] < random["ci95"][1]
    assert abs(random["mean"]) < abs(worse["mean"])
    assert fit_gap_interval(acc, n, np.zeros(len(acc), bool)) is None


def test_majority_graph_has_a_legend_and_item_text_labels(tmp_path):
    from personalign.audit import run_audit
    from personalign.audit.report import majority_graph_figure

    data = _rated_with_texts()
    res = run_audit(data, group_by=["camp"], n_permutations=9)
    fig = majority_graph_figure(res, res["item_text"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts if ". " in t.get_text()]
    assert labels and all("Statement" in t for t in labels)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "top item of the aggregated reward" in legend
    has_cycle = bool(res["social_choice"]["main"]["_cycle_idx"])
    assert ("item on the majority cycle drawn" in legend) == has_cycle
    rp.pyplot().close(fig)


# ---------------------------------------------------------------------------------------- bounds check
def _check_report(with_max: float = 0.0) -> dict:
    return {
        "policy": "default",
        "items": 640,
        "items_satisfying": 0.87,
        "constraint_pass_rates": {"harmless": 0.875},
        "thresholds": {"harmless": 0.5},
        "held_out_rates": {
            "harmless": {
                "miss": {"rate": 0.04, "lo": 0.02, "hi": 0.07, "n": 300},
                "over_block": {"rate": 0.1, "lo": 0.07, "hi": 0.14, "n": 300},
                "epsilon": 0.05,
                "confidence": 0.95,
                "calibration": "binomial",
            }
        },
        "separable_pairs": 1147,
        "persons": 3,
        "violation_without": {"mean": 0.3, "max": 0.5, "worst_person": "u_2"},
        "violation_with": {"mean": with_max / 3, "max": with_max},
        "per_person": [
            {"person": "u_0", "violation_without": 0.1, "violation_with": 0.0},
            {"person": "u_1", "violation_without": 0.3, "violation_with": 0.0},
            {"person": "u_2", "violation_without": 0.5, "violation_with": with_max},
        ],
        "command": "personalign bounds check d.parquet --model m",
    }


def test_bounds_check_report_has_a_verdict_an_interval_and_a_glossary(tmp_path):
    from personalign.bounds.check import check_html, check_markdown, rerender_check

    md = check_markdown(_check_report())
    assert md.startswith("# bounds check: policy default\n")
    assert "> **Verdict.** The policy removes every violation on this data" in md
    assert re.search(r"a drop of 30\.0 points \[\d+\.\d, \d+\.\d\]", md)
    assert "`personalign bounds check d.parquet --model m`" in md and "## Glossary" in md
    assert "4.0% [2.0, 7.0] of 300" in md and "<= 0.05 at 95%" in md
    assert "u\\_2" in md  # ids are escaped for Markdown
    assert "lowers violations but does not remove them" in check_markdown(_check_report(0.2))
    html = check_html(_check_report())
    assert "<code>personalign bounds check d.parquet --model m</code>" in html and "<h2>Glossary</h2>" in html
    assert 'title="Share of the data' in html and "u_2" in html
    (tmp_path / "report.json").write_text(json.dumps(_check_report()))
    before = (tmp_path / "report.json").read_bytes()
    files = rerender_check(tmp_path)
    assert set(files) == {"md", "html"} and (tmp_path / "report.json").read_bytes() == before


def test_texts_a_plot_font_cannot_draw_are_detected(monkeypatch):
    monkeypatch.setattr(rp, "installed_fallbacks", lambda: ())
    assert rp.drawable("Uber should be legal") and not rp.drawable("優步應該合法")
    monkeypatch.setattr(rp, "installed_fallbacks", lambda: ("Noto Sans CJK TC",))
    assert rp.drawable("優步應該合法")


def _bounds_result(poisoning: bool = True) -> dict:
    kinds = {
        "ordinary": {
            "violation_without_mean": 0.15,
            "violation_without_max": 0.4,
            "violation_with_mean": 0.0,
            "violation_with_max": 0.0,
        }
    }
    viol = {
        "max_over_persons_without": 0.93,
        "max_over_persons_with": 0.0,
        "mean_without": 0.24,
        "mean_with": 0.0,
        "refused_pairs_with": 0.96,
        "by_kind": kinds,
        "scorer_on_universal_pairs": {"safe_pass_rate": 0.036, "unsafe_block_rate": 1.0},
        "drop": {"mean": 0.237, "ci95": [0.207, 0.269]},
    }
    tax = {
        "persons": 70,
        "true_reward_of_choice_raw": 1.9,
        "true_reward_of_choice_bounded": 1.95,
        "true_reward_oracle": 3.4,
        "tax_mean": -0.05,
        "tax_sd_over_persons": 0.2,
        "tax_worst_person": 0.7,
        "refused_prompt_share": 0.6,
        "heldout_accuracy_per_person": {"raw": {"mean": 0.66}},
    }
    monitors = {
        "probes": 24,
        "by_kind": [
            {
                "kind": "ordinary",
                "persons": 70,
                "bubble_flag_rate": 0.0,
                "drift": 0.04,
                "sycophancy_excess": 0.05,
            }
        ],
    }
    pois = [
        {
            "cap": c,
            "fraction": f,
            "shift_mean": s,
            "shift_sd": 0.1,
            "unsafe_win_rate": 0.2,
            "attacker_weight_share": 0.1,
        }
        for c, f, s in (("none", 0.1, 0.82), ("median", 0.1, 0.12))
    ]
    return {
        "command": "personalign bounds report --out x",
        "persons": 200,
        "universal_pairs": 224,
        "violations": {"default.yaml": viol},
        "tax": {"default.yaml": tax},
        "monitors": monitors,
        "poisoning": pois if poisoning else [],
        "poison_seeds": [0, 1] if poisoning else [],
    }


@pytest.mark.parametrize("poisoning", [True, False])
def test_bounds_report_has_a_verdict_intervals_words_and_a_glossary(poisoning):
    """The bounds report states its verdict with the refusal cost, intervals for every claimed drop, readable
    column names, embedded figures and a glossary; no raw Python objects."""
    from personalign.experiments.bounds_report import html, markdown

    md = markdown(_bounds_result(poisoning))
    verdict = md.split("**Verdict.**", 1)[1].split("\n", 1)[0]
    assert "93.0% -> 0.0%" in verdict and "+23.7 [+20.7, +26.9]" in verdict and "refused 96.0%" in verdict
    assert ("82.0 points uncapped and 12.0 with the median cap" in verdict) == poisoning
    assert "Command: `personalign bounds report --out x`" in md
    assert "-0.050 [-0.097, -0.003]" in md  # tax: mean ± 1.96 sd / sqrt(70)
    assert "bubble flagged (%)" in md and "bubble_flag_rate" not in md
    assert ("poisoning.png" in md) == poisoning and "![" in md and "## Glossary" in md
    assert "<built-in" not in md and "{'" not in md
    page = html(md)
    assert '<img src="violations.png"' in page and "Verdict." in page and "<h1" in page
