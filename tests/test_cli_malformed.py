"""Malformed input to every command ends in one ``error:`` line on stderr, exit 2, no traceback and nothing written
to --out; an --out that holds someone else's files is refused unless --overwrite."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from personalign.cli import app
from personalign.cli.common import run_guarded
from personalign.data.io import write_data
from personalign.data.synthetic import generate_population

SRC = Path(__file__).resolve().parents[1] / "src"
DEEP = "[" * 100_000 + "]" * 100_000
TRAIN = ["--encoder", "hashing", "--max-iter", "5", "--rank", "2"]


def _write(ws: Path, name: str, content: str | bytes) -> Path:
    p = ws / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def _policy(dims: str = "all", threshold: str = "0.5") -> str:
    return (
        "name: p\nconstraints:\n  - name: h\n    scorer: {type: regex, patterns: [forbidden]}\n"
        f"    threshold: {threshold}\n    direction: max\npersonalize: {{dims: {dims}}}\n"
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A folder of good and malformed inputs, and one trained model."""
    ws = tmp_path_factory.mktemp("malformed")
    good = write_data(generate_population(persons=6, comparisons_per_person=5, seed=3), ws / "good.jsonl")
    assert run_guarded(app, ["train", str(good), *TRAIN, "--out", str(ws / "model")]) == 0
    binary = bytes(range(256)) * 8
    files: dict[str, str | bytes] = {
        "header.csv": "user_id,prompt,chosen,rejected\n",
        "ragged.csv": 'user_id,prompt,chosen,rejected\nu,p,a,b\nu,"p,a\n',
        "deep.jsonl": DEEP + "\n",
        "deep.json": DEEP,
        "notjson.jsonl": '{"user_id": "u", "prompt": "p", "chosen": "a", "rejected": "b"}\n{oops\n',
        "list.jsonl": "[1, 2, 3]\n",
        "binary.jsonl": binary,
        "empty.jsonl": "",
        "dict.json": '{"a": 1}',
        "garbage.parquet": b"PAR1 not really parquet",
        "plain.jsonl.gz": '{"user_id": "u"}\n',
        "models/list/config.json": "[1, 2]",
        "models/deep/config.json": DEEP,
        "models/broken/config.json": "{not json",
        "models/binary/config.json": binary,
        "models/other/config.json": '{"format_version": 1, "model_class": "NoSuchModel"}',
        "pol/binary.yaml": binary,
        "pol/good.yaml": _policy(dims="[0, 1]"),
        "pol/nan.yaml": _policy(threshold=".nan"),
        "pol/inf.yaml": _policy(threshold=".inf"),
        "pol/negdim.yaml": _policy(dims="[-1]"),
        "pol/bigdim.yaml": _policy(dims="[0, 99]"),
        "pol/list.yaml": "- 1\n- 2\n",
        "pol/badyaml.yaml": "name: [unclosed\n",
        "pol/unknown.yaml": "name: p\nnot_a_field: 1\n",
        "pol/badtoml.toml": "name = \n",
        "pol/policy.txt": "name: p\n",
    }
    for name, content in files.items():
        _write(ws, name, content)
    (ws / "emptydir").mkdir()
    (ws / "pol" / "folder.yaml").mkdir()
    with gzip.open(ws / "deep.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(DEEP + "\n")
    return ws


BAD_DATA = ["header.csv", "deep.jsonl", "deep.json", "notjson.jsonl", "list.jsonl", "binary.jsonl"]
MORE_DATA = ["ragged.csv", "empty.jsonl", "dict.json", "garbage.parquet", "plain.jsonl.gz", "deep.jsonl.gz"]
MORE_DATA += ["missing.jsonl", "emptydir"]
BAD_MODELS = ["list", "deep", "broken", "binary", "other", "missing"]

CASES: dict[str, list[str]] = {}
for f in BAD_DATA:  # each malformed file through each command that reads data
    CASES[f"inspect-{f}"] = ["data", "inspect", "{ws}/" + f]
    CASES[f"convert-{f}"] = ["data", "convert", "{ws}/" + f, "--out", "{out}"]
    CASES[f"train-{f}"] = ["train", "{ws}/" + f, *TRAIN, "--out", "{out}"]
    CASES[f"audit-{f}"] = ["audit", "{ws}/" + f, "--permutations", "0", "--out", "{out}"]
    CASES[f"eval-{f}"] = ["eval", "{ws}/" + f, "--seeds", "1", "--encoder", "hashing", "--out", "{out}"]
for f in MORE_DATA:
    CASES[f"inspect-{f}"] = ["data", "inspect", "{ws}/" + f]
CASES["bounds-check-header.csv"] = [
    "bounds",
    "check",
    "{ws}/header.csv",
    "--model",
    "{ws}/model",
    "--out",
    "{out}",
]
for m in BAD_MODELS:
    CASES[f"score-model-{m}"] = ["score", "--model", "{ws}/models/" + m, "--user", "u", "--response", "a"]
CASES["score-model-emptydir"] = ["score", "--model", "{ws}/emptydir", "--user", "u", "--response", "a"]
CASES["audit-model-list"] = ["audit", "{ws}/good.jsonl", "--model", "{ws}/models/list", "--out", "{out}"]
CASES["bounds-check-model-list"] = [
    *["bounds", "check", "{ws}/good.jsonl", "--model", "{ws}/models/list", "--out", "{out}"],
]
CASES.update(
    {
        "inspect-json-is-folder": ["data", "inspect", "{ws}/good.jsonl", "--json", "{ws}/emptydir"],
        "inspect-unknown-format": ["data", "inspect", "{ws}/good.jsonl", "--format", "nope"],
        "convert-out-is-folder": ["data", "convert", "{ws}/good.jsonl", "--out", "{ws}/pol"],
        "train-rank-negative": [
            "train",
            "{ws}/good.jsonl",
            "--encoder",
            "hashing",
            "--rank",
            "-3",
            "--out",
            "{out}",
        ],
        "train-rank-not-int": ["train", "{ws}/good.jsonl", "--rank", "abc", "--out", "{out}"],
        "train-unknown-model": ["train", "{ws}/good.jsonl", "--model", "nope", "--out", "{out}"],
        "train-unknown-encoder": ["train", "{ws}/good.jsonl", "--encoder", "nope", "--out", "{out}"],
        "train-out-foreign-folder": ["train", "{ws}/good.jsonl", *TRAIN, "--out", "{ws}/pol"],
        "eval-seeds-0": ["eval", "{ws}/good.jsonl", "--seeds", "0", "--encoder", "hashing", "--out", "{out}"],
        "eval-seeds-negative": [
            "eval",
            "{ws}/good.jsonl",
            "--seeds",
            "-1",
            "--encoder",
            "hashing",
            "--out",
            "{out}",
        ],
        "eval-synthetic-alpha": ["eval", "synthetic:alpha=abc", "--seeds", "1", "--out", "{out}"],
        "eval-k-not-ints": ["eval", "{ws}/good.jsonl", "--k", "a,b", "--seeds", "1", "--out", "{out}"],
        "audit-permutations-negative": ["audit", "{ws}/good.jsonl", "--permutations", "-1", "--out", "{out}"],
        "audit-polarity": ["audit", "{ws}/good.jsonl", "--polarity", "sideways", "--out", "{out}"],
        "audit-missing-data": ["audit", "{ws}/missing.jsonl", "--out", "{out}"],
    }
)
POLICIES = ["binary.yaml", "folder.yaml", "nan.yaml", "inf.yaml", "negdim.yaml", "list.yaml", "badyaml.yaml"]
POLICIES += ["unknown.yaml", "badtoml.toml", "policy.txt", "missing.yaml"]
for p in POLICIES:
    CASES[f"validate-{p}"] = ["bounds", "validate", "{ws}/pol/" + p]
for p in ["binary.yaml", "folder.yaml", "nan.yaml", "negdim.yaml", "bigdim.yaml", "missing.yaml"]:
    CASES[f"check-{p}"] = [
        *["bounds", "check", "{ws}/good.jsonl", "--model", "{ws}/model", "--policy", "{ws}/pol/" + p],
        *["--out", "{out}"],
    ]
# what the error names, for the cases where a wrong reason would also give exit 2
EXPECT = {
    "inspect-header.csv": "no records",
    "train-deep.jsonl": "nested too deeply",
    "inspect-deep.json": "nested too deeply",
    "inspect-deep.jsonl.gz": "nested too deeply",
    "inspect-json-is-folder": "is a folder",
    "score-model-list": "expected a JSON object, got list",
    "score-model-deep": "invalid JSON",
    "eval-seeds-0": "seeds",
    "eval-seeds-negative": "seeds",
    "eval-synthetic-alpha": "alpha",
    "audit-permutations-negative": "--permutations",
    "train-rank-negative": "rank must be an integer >= 0",
    "train-out-foreign-folder": "pass --overwrite to replace it",
    "validate-binary.yaml": "not a text file",
    "check-binary.yaml": "not a text file",
    "validate-folder.yaml": "is a folder",
    "check-folder.yaml": "is a folder",
    "validate-nan.yaml": "constraints[0].threshold': must be a finite number",
    "check-nan.yaml": "constraints[0].threshold': must be a finite number",
    "validate-inf.yaml": "constraints[0].threshold': must be a finite number",
    "validate-negdim.yaml": "personalize.dims",
    "check-negdim.yaml": "personalize.dims",
    "check-bigdim.yaml": "personalize.dims': dimension(s) [99] out of range",
}
# a few through the installed entry point in a fresh interpreter: proves there is no traceback anywhere
SUBPROCESS = {"inspect-header.csv", "train-deep.jsonl", "validate-nan.yaml", "score-model-list"}


def _run_case(args: list[str], ws: Path, out: Path, capsys, subprocess_run: bool) -> tuple[int, str]:
    argv = [a.replace("{ws}", str(ws)).replace("{out}", str(out)) for a in args]
    if not subprocess_run:
        rc = run_guarded(app, argv)
        return rc, capsys.readouterr().err
    env = {**os.environ, "PYTHONPATH": str(SRC), "NO_COLOR": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "personalign", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    return res.returncode, res.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_input_is_one_error_line(case, ws, tmp_path, capsys):
    out = tmp_path / "out"
    before = {p.name for p in ws.iterdir()}
    rc, err = _run_case(CASES[case], ws, out, capsys, case in SUBPROCESS)
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [
        ln for ln in err.splitlines() if ln.strip() and not ln.lstrip().startswith(("encoding", "fitting"))
    ]
    assert lines and lines[0].startswith("error:"), err
    assert EXPECT.get(case, "") in err, err
    assert not out.exists() and not any(p.name.startswith(".out.") for p in tmp_path.iterdir())
    assert {p.name for p in ws.iterdir()} == before  # nothing written beside the inputs either
    assert not any((ws / "emptydir").iterdir())


def test_the_good_policy_passes(ws, capsys):
    """The malformed policies differ from this one only in the broken field."""
    assert run_guarded(app, ["bounds", "validate", str(ws / "pol" / "good.yaml")]) == 0
    out = ws.parent / f"{ws.name}-check"
    args = ["bounds", "check", str(ws / "good.jsonl"), "--model", str(ws / "model")]
    assert run_guarded(app, [*args, "--policy", str(ws / "pol" / "good.yaml"), "--out", str(out)]) == 0
    assert (out / "report.json").is_file()


def test_cases_cover_every_command():
    assert len(CASES) >= 50
    heads = {a[0] if a[0] not in ("data", "bounds") else " ".join(a[:2]) for a in CASES.values()}
    assert {"data inspect", "data convert", "train", "score", "eval", "audit", "bounds check"} <= heads
    assert "bounds validate" in heads


# ------------------------------------------------------------------------------------------ --out protection
def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "notes.txt").write_text("x")
    return victim


def test_train_refuses_a_folder_that_is_not_a_model(ws, tmp_path):
    victim = _victim(tmp_path)
    args = ["train", str(ws / "good.jsonl"), *TRAIN, "--out", str(victim)]
    env = {**os.environ, "PYTHONPATH": str(SRC), "NO_COLOR": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "personalign", *args], capture_output=True, text=True, env=env
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error:") and "pass --overwrite to replace it" in res.stderr
    assert (victim / "notes.txt").read_text() == "x" and (victim / "sub").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no temporary or .old folder left


def test_train_refuses_a_file_and_overwrite_replaces_it(ws, tmp_path, capsys):
    target = tmp_path / "model"
    target.write_text("mine")
    args = ["train", str(ws / "good.jsonl"), *TRAIN, "--out", str(target)]
    assert run_guarded(app, args) == 2
    assert "pass --overwrite" in capsys.readouterr().err and target.read_text() == "mine"
    assert run_guarded(app, [*args, "--overwrite"]) == 0
    assert (target / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the old file is gone, not hidden


def test_overwrite_replaces_a_foreign_folder_and_a_model_replaces_a_model(ws, tmp_path):
    victim = _victim(tmp_path)
    args = ["train", str(ws / "good.jsonl"), *TRAIN, "--out", str(victim)]
    assert run_guarded(app, [*args, "--overwrite"]) == 0
    assert sorted(p.name for p in victim.iterdir()) == [
        "README.md",
        "config.json",
        "manifest.json",
        "model.safetensors",
    ]
    first = (victim / "config.json").read_text()
    # an earlier model folder of ours is replaced without --overwrite (atomically: a fresh folder renamed in)
    assert run_guarded(app, [*args[:-2], "--seed", "1", "--rank", "3", "--out", str(victim)]) == 0
    assert (victim / "config.json").read_text() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def test_empty_folder_is_fine(ws, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_guarded(app, ["train", str(ws / "good.jsonl"), *TRAIN, "--out", str(empty)]) == 0
    assert (empty / "config.json").is_file()


def test_export_reward_refuses_a_foreign_folder(ws, tmp_path, capsys):
    victim = _victim(tmp_path)
    args = ["export-reward", "--model", str(ws / "model"), "--out", str(victim)]
    assert run_guarded(app, args) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (victim / "notes.txt").read_text() == "x"
