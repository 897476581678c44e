"""`personalign data inspect` and `personalign data convert`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from _cli import run_cli as _run
from personalign.data import read_data


def _ratings_jsonl(path, n_users=4):
    rows = []
    for u in range(n_users):
        for i, r in enumerate((1, 3, 5)):
            rows.append(
                {"user_id": f"u{u}", "prompt": "q", "response": f"answer {i}", "rating": (r + u) % 5 + 1}
            )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_broken_jsonl_line_exits_2_with_file_line_and_field(tmp_path):
    f = tmp_path / "broken.jsonl"
    f.write_text(
        json.dumps({"user_id": "a", "prompt": "p", "chosen": "x", "rejected": "y"})
        + "\n"
        + json.dumps({"user_id": "b", "prompt": "p", "chosen": "x"})
        + "\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", "from personalign.cli import main; main()", "data", "inspect", str(f)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"{f}:2" in proc.stderr and "field 'rejected'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_inspect_prints_counts_and_writes_json(tmp_path, monkeypatch, capsys):
    f = _ratings_jsonl(tmp_path / "r.jsonl")
    out = tmp_path / "report" / "inspect.json"
    code, stdout, _ = _run(monkeypatch, capsys, "data", "inspect", f, "--json", out)
    assert code == 0
    assert "persons" in stdout and "ratings" in stdout and "12" in stdout
    rep = json.loads(out.read_text())
    assert rep["persons"] == 4 and rep["items"] == 3 and rep["judgments"]["ratings"] == 12
    assert rep["judgments_per_person"] == {"min": 3, "median": 3.0, "max": 3}
    assert rep["validation"]["ok"] is True and 0.0 <= rep["contested_share"] <= 1.0


def test_inspect_with_user_col_and_map(tmp_path, monkeypatch, capsys):
    f = tmp_path / "x.csv"
    f.write_text("rater,answer,score,gender\nr1,a,1,f\nr1,b,2,f\nr2,a,2,m\n")
    code, _, err = _run(monkeypatch, capsys, "data", "inspect", f)
    assert code == 2 and "cannot tell the kind" in err
    out = tmp_path / "x.json"
    code, stdout, err = _run(
        monkeypatch,
        capsys,
        "data",
        "inspect",
        f,
        "--user-col",
        "rater",
        "--map",
        "answer=response",
        "--map",
        "score=rating",
        "--json",
        out,
    )
    assert code == 0, err
    assert json.loads(out.read_text())["persons"] == 2
    code, _, err = _run(monkeypatch, capsys, "data", "inspect", f, "--map", "answer")
    assert code == 2 and "OLD=NEW" in err


def test_inspect_reports_validation_findings(tmp_path, monkeypatch, capsys):
    f = tmp_path / "c.jsonl"
    rec = {"user_id": "a", "prompt": "p", "chosen": "same", "rejected": "same"}
    f.write_text(json.dumps(rec) + "\n" + json.dumps(rec) + "\n")
    code, stdout, _ = _run(monkeypatch, capsys, "data", "inspect", f)
    assert code == 0
    assert "self-comparisons" in stdout and "exact duplicate comparisons" in stdout


def test_convert_writes_a_readable_parquet_file(tmp_path, monkeypatch, capsys):
    f = _ratings_jsonl(tmp_path / "r.jsonl")
    out = tmp_path / "out.parquet"
    code, stdout, err = _run(monkeypatch, capsys, "data", "convert", f, "--out", out)
    assert code == 0, err
    back = read_data(out)
    orig = read_data(f)
    assert back.counts() == orig.counts() and back.user_ids == orig.user_ids
    assert sorted(back.ratings["rating"]) == sorted(orig.ratings["rating"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@pytest.mark.parametrize("ext", ["jsonl", "jsonl.gz", "csv"])
def test_convert_refuses_to_mix_tables_in_one_file(tmp_path, monkeypatch, capsys, ext):
    f = _ratings_jsonl(tmp_path / "r.jsonl")
    out = tmp_path / f"x.{ext}"
    code, stdout, err = _run(monkeypatch, capsys, "data", "convert", f, "--out", out)
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    msg = " ".join(err.split())
    # each form, and how to ask for it
    assert "one file per table (--out " in msg and f"--kind comparisons --out {out}" in msg
    assert "x.parquet" in msg and "(items, ratings)" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


def test_convert_error_leaves_no_output(tmp_path, monkeypatch, capsys):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"user_id": "a", "response": "x", "rating": "lots"}\n')
    out = tmp_path / "out.parquet"
    code, _, err = _run(monkeypatch, capsys, "data", "convert", f, "--out", out)
    assert code == 2 and "bad.jsonl:1" in err and "field 'rating'" in err
    assert not out.exists()
    code, _, err = _run(
        monkeypatch,
        capsys,
        "data",
        "convert",
        _ratings_jsonl(tmp_path / "r.jsonl"),
        "--out",
        tmp_path / "out.xlsx",
    )
    assert code == 2 and ".parquet" in err


def test_inspect_real_popquorn(shared_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pq.json"
    code, stdout, _ = _run(
        monkeypatch,
        capsys,
        "data",
        "inspect",
        shared_data / "popquorn/offensiveness/raw_data.csv",
        "--format",
        "popquorn",
        "--json",
        out,
    )
    assert code == 0
    for text in ("262", "1,500", "13,036", "gender", "race", "age", "occupation", "education"):
        assert text in stdout
    rep = json.loads(out.read_text())
    assert (rep["persons"], rep["items"], rep["judgments"]["ratings"]) == (262, 1500, 13036)
    assert rep["demographic_columns"] == ["gender", "race", "age", "occupation", "education"]


def test_inspect_synthetic_sources(tmp_path, monkeypatch, capsys):
    code, out, err = _run(
        monkeypatch,
        capsys,
        "data",
        "synth",
        "--out",
        tmp_path / "pop",
        "--persons",
        "8",
        "--comparisons",
        "3",
        "--heldout-comparisons",
        "0",
    )
    assert code == 0, err
    code, out, _ = _run(monkeypatch, capsys, "data", "inspect", tmp_path / "pop")
    assert code == 0 and "persons" in out and "judgments by person" in out
    code, out, err = _run(monkeypatch, capsys, "data", "inspect", "synthetic:alpha=abc")
    assert code == 2 and "alpha" in err and "a number" in err and "Traceback" not in err
