"""`personalign data convert`: a folder of one file per table that every command reads back as the original,
and TRL-ready comparisons (`--kind comparisons`) that `datasets` reads as a dense table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from _cli import run_cli as _run
from personalign.data import PreferenceData, read_data
from personalign.data.io import write_data
from personalign.data.synthetic import SyntheticConfig, generate_population

TABLES = ("comparisons", "ratings", "rankings", "votes", "users", "items")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small synthetic population (demographics, item metadata) as one canonical Parquet file."""
    data = generate_population(SyntheticConfig(persons=30, comparisons_per_person=12, seed=3))
    data.meta.pop("truth")  # a Python object, no table: the convert test of the population folder covers it
    path = tmp_path_factory.mktemp("src") / "pop.parquet"
    write_data(data, path)
    return path


def _mixed() -> PreferenceData:
    """Every kind of judgment at once, with nulls, lists, ties and weights."""
    return PreferenceData(
        comparisons=pd.DataFrame(
            {
                "user_id": ["a", "b"],
                "prompt": ["p", "p"],
                "chosen": ["x", "y"],
                "rejected": ["y", "x"],
                "tie": [False, True],
                "weight": [1.0, 0.5],
            }
        ),
        ratings=pd.DataFrame(
            {
                "user_id": ["a", "a", "b"],
                "prompt": ["p"] * 3,
                "response": ["x", "y", "x"],
                "rating": [1, 3, 5],
            }
        ),
        rankings=pd.DataFrame({"user_id": ["a"], "prompt": ["p"], "responses": [["x", "y", "z"]]}),
        votes=pd.DataFrame(
            {"user_id": ["a", "b"], "prompt": ["q", "q"], "response": ["s", "s"], "vote": [1, -1]}
        ),
        users=pd.DataFrame({"user_id": ["a", "b"], "age": [30.0, np.nan], "gender": ["f", "m"]}),
        name="mixed",
        meta={"source": "hand-made", "version": [1, 2]},
    )


def _assert_same(a: PreferenceData, b: PreferenceData) -> None:
    for t in TABLES:
        if len(getattr(a, t)) or len(getattr(b, t)):
            assert_frame_equal(getattr(a, t), getattr(b, t), obj=t)
    assert (a.name, a.rating_scale, a.meta) == (b.name, b.rating_scale, b.meta)


@pytest.mark.parametrize("out_format", ["jsonl", "parquet"])
def test_folder_round_trip_of_every_kind(tmp_path, monkeypatch, capsys, out_format):
    src = tmp_path / "mixed.parquet"
    write_data(_mixed(), src)
    out = tmp_path / "tables"
    code, stdout, err = _run(
        monkeypatch, capsys, "data", "convert", src, "--out", out, "--out-format", out_format
    )
    assert code == 0, err
    ext = f".{out_format}"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{t}{ext}" for t in TABLES] + ["manifest.json", "tables.json"]
    ), "one file per table"
    _assert_same(read_data(src), read_data(out))
    if out_format == "jsonl":  # each file is dense: every record has the same fields
        for t in TABLES:
            keys = {tuple(json.loads(line)) for line in (out / f"{t}.jsonl").read_text().splitlines()}
            assert len(keys) == 1, t
    # converting the folder again gives the same folder
    again = tmp_path / "again"
    assert (
        _run(monkeypatch, capsys, "data", "convert", out, "--out", again, "--out-format", out_format)[0] == 0
    )
    _assert_same(read_data(out), read_data(again))


def test_convert_refuses_a_folder_of_other_files(tmp_path, monkeypatch, capsys, source):
    victim = tmp_path / "mine"
    victim.mkdir()
    (victim / "notes.txt").write_text("x")
    code, _, err = _run(monkeypatch, capsys, "data", "convert", source, "--out", victim)
    assert code == 2 and "--overwrite" in err and (victim / "notes.txt").read_text() == "x"
    out = tmp_path / "tables"
    assert _run(monkeypatch, capsys, "data", "convert", source, "--out", out)[0] == 0
    assert (
        _run(monkeypatch, capsys, "data", "convert", source, "--out", out)[0] == 0
    )  # its own output: replaced


def _inspect(monkeypatch, capsys, path, tmp_path, name):
    code, _, err = _run(monkeypatch, capsys, "data", "inspect", path, "--json", tmp_path / f"{name}.json")
    assert code == 0, err
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_train_inspect_and_eval_read_the_folder_as_the_original(tmp_path, monkeypatch, capsys, source):
    from personalign.models import load_model

    folder = tmp_path / "tables"
    code, stdout, err = _run(monkeypatch, capsys, "data", "convert", source, "--out", folder)
    assert code == 0, err
    assert "users.jsonl, items.jsonl, comparisons.jsonl" in " ".join(stdout.split())
    _assert_same(read_data(source), read_data(folder))
    a, b = (_inspect(monkeypatch, capsys, p, tmp_path, n) for p, n in ((source, "a"), (folder, "b")))
    assert a == b and a["demographic_columns"] and a["judgments"]["comparisons"] == 360

    train = ["--model", "lowrank", "--rank", "2", "--encoder", "hashing", "--max-iter", "30"]
    for p, n in ((source, "ma"), (folder, "mb")):
        code, _, err = _run(monkeypatch, capsys, "train", p, *train, "--out", tmp_path / n)
        assert code == 0, err
    ma, mb = load_model(tmp_path / "ma"), load_model(tmp_path / "mb")
    d = read_data(source)
    users, prompt = d.user_ids[:5], d.comparisons["prompt"].iloc[0]
    resp = list(d.comparisons["chosen"].iloc[:5])
    np.testing.assert_array_equal(ma.score(users, prompt, resp), mb.score(users, prompt, resp))

    ev = ["--models", "bt,lowrank", "--seeds", "1", "--k", "0,2", "--encoder", "hashing", "--rank", "2"]
    ev += ["--max-train-pairs", "20", "--max-test-pairs", "10", "--active-max-k", "0", "--harmless", "none"]
    for p, n in ((source, "ea"), (folder, "eb")):
        code, _, err = _run(monkeypatch, capsys, "eval", p, *ev, "--out", tmp_path / n)
        assert code == 0, err
    ra, rb = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("ea", "eb"))
    assert ra["cells"] and ra["cells"] == rb["cells"]


def test_trl_comparisons_are_a_dense_table_of_texts(tmp_path, monkeypatch, capsys, source):
    out = tmp_path / "trl.jsonl"
    code, stdout, err = _run(
        monkeypatch, capsys, "data", "convert", source, "--kind", "comparisons", "--out", out
    )
    assert code == 0, err
    orig = read_data(source).comparisons
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(orig) == 360
    # TRL's columns first, texts rather than ids; timestamps are data the comparisons carry
    assert {tuple(r) for r in records} == {("prompt", "chosen", "rejected", "user_id", "timestamp")}
    assert [r["chosen"] for r in records] == list(orig["chosen"])
    assert [r["rejected"] for r in records] == list(orig["rejected"])
    try:
        import datasets
    except ImportError:
        frame = pd.read_json(out, lines=True)
        assert list(frame.columns[:4]) == ["prompt", "chosen", "rejected", "user_id"]
    else:
        ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
        assert ds.column_names == ["prompt", "chosen", "rejected", "user_id", "timestamp"]
        assert ds.num_rows == 360 and ds.features["chosen"].dtype == "string"
        assert ds[0]["prompt"] == orig["prompt"].iloc[0] and ds[-1]["user_id"] == orig["user_id"].iloc[-1]
    back = read_data(out).comparisons  # personalign reads it back as the same comparisons
    cols = ["user_id", "prompt", "chosen", "rejected", "tie", "weight", "chosen_id", "rejected_id"]
    assert_frame_equal(back[cols], orig[cols])


def test_trl_comparisons_keep_ties_and_weights_and_derive_from_ratings(tmp_path, monkeypatch, capsys):
    src = tmp_path / "mixed.parquet"
    write_data(_mixed(), src)
    out = tmp_path / "c.jsonl"
    assert _run(monkeypatch, capsys, "data", "convert", src, "--kind", "comparisons", "--out", out)[0] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["tie"], r["weight"]) for r in rows] == [(False, 1.0), (True, 0.5)]
    # ratings only: the comparisons are derived by the one pairing rule, and said so
    ratings = tmp_path / "r.jsonl"
    ratings.write_text(
        "\n".join(
            json.dumps({"user_id": u, "prompt": "q", "response": t, "rating": r})
            for u, t, r in [("a", "x", 1), ("a", "y", 4), ("b", "x", 5), ("b", "y", 2)]
        )
    )
    code, stdout, err = _run(
        monkeypatch, capsys, "data", "convert", ratings, "--kind", "comparisons", "--out", out
    )
    assert code == 0, err
    assert "derived from the ratings" in stdout
    pairs = {
        (r["user_id"], r["chosen"], r["rejected"]) for r in map(json.loads, out.read_text().splitlines())
    }
    assert pairs == {("a", "y", "x"), ("b", "x", "y")}
    code, _, err = _run(
        monkeypatch, capsys, "data", "convert", ratings, "--kind", "comparisons", "--out", tmp_path / "d"
    )
    assert code == 2 and "--kind writes one file" in err
