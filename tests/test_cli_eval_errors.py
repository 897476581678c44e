"""`eval` and `audit` on bad input, through the real entry point: one `error:` line, exit 2, no traceback, nothing
written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "personalign", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    rows = [
        {"user_id": f"u{u}", "prompt": "", "response": f"t{i}", "rating": float((u * i) % 5 + 1)}
        for u in range(8)
        for i in range(6)
    ]
    path = d / "ratings.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def comparisons_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("comparisons")
    rows = [
        {"user_id": f"u{u}", "prompt": "", "chosen": f"t{i}", "rejected": f"t{i + 1}"}
        for u in range(6)
        for i in range(5)
    ]
    path = d / "comparisons.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    bad = d / "model"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    return path


EVAL = ["--encoder", "hashing", "--harmless", "none"]
# the cases, through the real entry point (a fresh interpreter per case)
ENTRY_POINT = {
    "seeds 0": ["eval", "synthetic:persons=20", "--seeds", "0", *EVAL],
    "seeds -1": ["eval", "synthetic:persons=20", "--seeds", "-1", *EVAL],
    "bad synthetic spec": ["eval", "synthetic:alpha=abc", *EVAL],
    "permutations -1": ["audit", "{ratings}", "--permutations", "-1"],
}
# more bad options, through the same guard in this process (cheaper)
IN_PROCESS = {
    "k not integers": ["eval", "synthetic:persons=20", "--k", "0,x", *EVAL],
    "collab frac out of range": ["eval", "synthetic:persons=20", "--collab-frac", "1.5", *EVAL],
    "unknown model": ["eval", "synthetic:persons=20", "--models", "nope", *EVAL],
    "missing harmless file": [
        "eval",
        "synthetic:persons=20",
        "--encoder",
        "hashing",
        "--harmless",
        "nofile.jsonl",
    ],
    "negative rank": ["eval", "synthetic:persons=20", "--rank", "-3", *EVAL],
    "missing test data": ["eval", "synthetic:persons=20", "--test", "nothere.csv", *EVAL],
    "max items 1": ["audit", "{ratings}", "--max-items", "1"],
    "min judgments 0": ["audit", "{ratings}", "--min-judgments", "0"],
    # comparison data used to ignore --model: a corrupt one is now read, and refused
    "corrupt model on comparisons": ["audit", "{comparisons}", "--model", "{model}", "--permutations", "0"],
}


def args_for(case: dict, name: str, ratings: Path, out: Path, comparisons: Path | None = None) -> list[str]:
    subs = {"{ratings}": str(ratings)}
    if comparisons is not None:
        subs.update({"{comparisons}": str(comparisons), "{model}": str(comparisons.parent / "model")})
    return [subs.get(a, a) for a in case[name]] + ["--out", str(out)]


@pytest.mark.parametrize("case", sorted(ENTRY_POINT))
def test_bad_input_is_one_error_line_with_exit_2(case, ratings_file, tmp_path):
    out = tmp_path / "out"
    r = run_cli(*args_for(ENTRY_POINT, case, ratings_file, out), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert not out.exists()  # no partial output


@pytest.mark.parametrize("case", sorted(IN_PROCESS))
def test_bad_option_exits_2_before_any_output(
    case, ratings_file, comparisons_file, tmp_path, capsys, monkeypatch
):
    from personalign.cli import app
    from personalign.cli.common import run_guarded

    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    assert run_guarded(app, args_for(IN_PROCESS, case, ratings_file, out, comparisons_file)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1
    assert not out.exists()
