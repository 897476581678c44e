"""Bringing one's own persons table: ``--users FILE`` and ``--user-columns`` wherever data is read."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from _cli import run_cli as _run
from personalign.data import read_data
from personalign.errors import DataError

AGES = {"u0": "18-29", "u1": "30-49", "u2": "50+", "u3": "30-49"}


def _comparisons(path, with_age=False):
    rows = []
    for u in AGES:
        for i in range(3):
            row = {"user_id": u, "prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
            if with_age:
                row["age"] = AGES[u]
            rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_users_file_joins_every_format_of_users_table(tmp_path):
    data = _comparisons(tmp_path / "c.jsonl")
    users = pd.DataFrame({"user_id": list(AGES), "age": list(AGES.values()), "extra": range(4)})
    for name in ("u.csv", "u.tsv", "u.jsonl", "u.parquet"):
        f = tmp_path / name
        if name.endswith("parquet"):
            users.to_parquet(f)
        elif name.endswith("jsonl"):
            users.to_json(f, orient="records", lines=True)
        else:
            users.to_csv(f, index=False, sep="\t" if name.endswith("tsv") else ",")
        d = read_data(data, users=f)
        got = dict(zip(d.users["user_id"], d.users["age"]))
        assert got == AGES, name
        assert "age" in d.demographic_columns
        assert d.meta["users_file"]["persons_described"] == 4
        assert d.meta["users_file"]["persons_not_described"] == 0


def test_users_file_counts_the_undescribed_and_drops_the_absent(tmp_path):
    data = _comparisons(tmp_path / "c.jsonl")
    f = tmp_path / "u.csv"
    pd.DataFrame({"user_id": ["u0", "u1", "nobody"], "age": ["a", "b", "c"]}).to_csv(f, index=False)
    d = read_data(data, users=f)
    assert set(d.users["user_id"]) == {"u0", "u1"}  # a person who judged nothing is not added
    assert d.meta["users_file"]["persons_not_described"] == 2


def test_a_person_listed_twice_differently_is_an_error_naming_the_rows(tmp_path):
    data = _comparisons(tmp_path / "c.jsonl")
    f = tmp_path / "u.csv"
    pd.DataFrame({"user_id": ["u0", "u1", "u0"], "age": ["a", "b", "c"]}).to_csv(f, index=False)
    with pytest.raises(DataError, match=r"u\.csv: row 2.*'u0' is listed in rows 0 and 2"):
        read_data(data, users=f)
    # an exact repeat is not a conflict
    pd.DataFrame({"user_id": ["u0", "u0"], "age": ["a", "a"]}).to_csv(f, index=False)
    assert read_data(data, users=f).users.set_index("user_id").loc["u0", "age"] == "a"


def test_a_column_that_disagrees_with_the_data_is_an_error(tmp_path):
    data = _comparisons(tmp_path / "c.jsonl", with_age=True)
    f = tmp_path / "u.csv"
    pd.DataFrame({"user_id": ["u0"], "age": ["99+"]}).to_csv(f, index=False)
    with pytest.raises(DataError, match="'u0' has age='18-29' in the data and '99\\+' in the users file"):
        read_data(data, users=f, user_columns=["age"])


def test_cli_user_columns_and_users_reach_inspect_and_audit(tmp_path, monkeypatch, capsys):
    data = _comparisons(tmp_path / "c.jsonl", with_age=True)
    code, out, err = _run(monkeypatch, capsys, "data", "inspect", data, "--json", tmp_path / "a.json")
    assert code == 0, err
    assert json.loads((tmp_path / "a.json").read_text())["demographics"] == {}
    code, out, err = _run(
        monkeypatch, capsys, "data", "inspect", data, "--user-columns", "age", "--json", tmp_path / "b.json"
    )
    assert code == 0, err
    assert json.loads((tmp_path / "b.json").read_text())["demographics"]["age"]["distinct"] == 3
    f = tmp_path / "u.csv"
    pd.DataFrame({"user_id": list(AGES), "group": ["x", "y", "x", "y"]}).to_csv(f, index=False)
    code, out, err = _run(
        monkeypatch,
        capsys,
        "data",
        "convert",
        data,
        "--users",
        f,
        "--user-columns",
        "age",
        "--out",
        tmp_path / "t",
    )
    assert code == 0, err
    back = read_data(tmp_path / "t")
    assert dict(zip(back.users["user_id"], back.users["group"])) == {
        "u0": "x",
        "u1": "y",
        "u2": "x",
        "u3": "y",
    }
    assert set(back.users.columns) >= {"age", "group"}


def test_cli_bad_users_file_is_one_error_line(tmp_path, monkeypatch, capsys):
    data = _comparisons(tmp_path / "c.jsonl")
    f = tmp_path / "u.csv"
    pd.DataFrame({"person": ["u0"], "age": ["a"]}).to_csv(f, index=False)
    code, out, err = _run(monkeypatch, capsys, "data", "inspect", data, "--users", f)
    assert code == 2 and "Traceback" not in err
    assert "u.csv" in err and "no column 'user_id'" in err
    code, out, err = _run(monkeypatch, capsys, "data", "inspect", data, "--users", tmp_path / "none.csv")
    assert code == 2 and "none.csv" in err and "Traceback" not in err
    code, out, err = _run(
        monkeypatch,
        capsys,
        "data",
        "inspect",
        "../shared/nothing",
        "--format",
        "toxicity",
        "--user-columns",
        "a",
    )
    assert code == 2 and "Traceback" not in err
