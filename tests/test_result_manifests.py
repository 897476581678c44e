"""Every result folder holds a ``manifest.json`` that says what made it: the command as typed, the package
versions, the git commit, a hash of each input and of the data, the seeds. Run through the CLI entry point."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from personalign.cli import app
from personalign.cli.common import run_guarded
from personalign.data.io import read_data, write_data
from personalign.data.manifest import data_summary, file_sha256, git_state
from personalign.data.synthetic import generate_population, sample_ratings

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "personalign"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifests")
    pop = generate_population(persons=30, comparisons_per_person=20, alpha=0.1, seed=4)
    comparisons = write_data(pop, root / "pop.parquet")
    ratings = write_data(
        pop.copy(comparisons=pop.comparisons.iloc[:0], ratings=sample_ratings(pop, 12, seed=2).ratings),
        root / "ratings.parquet",
    )
    return {"comparisons": comparisons, "ratings": ratings, "root": root}


@pytest.fixture(scope="module")
def model_dir(files):
    out = files["root"] / "model"
    args = [
        "train",
        str(files["comparisons"]),
        "--encoder",
        "hashing[dim=64]",
        "--rank",
        "2",
        "--max-iter",
        "20",
    ]
    assert run_guarded(app, [*args, "--out", str(out), "--json"]) == 0
    return out


def _run(args: list[str], capsys) -> None:
    code = run_guarded(app, args)
    res = capsys.readouterr()
    assert code == 0, res.err


def _check(folder: Path, args: list[str], kind: str, seeds: list[int], data_file: Path | None) -> dict:
    """The facts every manifest holds, checked against the run that wrote it."""
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert m["kind"] == kind
    assert m["command"] == "personalign " + shlex.join(args)
    assert m["seeds"] == seeds
    assert m["versions"]["personalign"] and m["versions"]["numpy"] and m["versions"]["python"]
    assert m["git"]["personalign"] == git_state(PACKAGE_DIR)
    if data_file is not None:
        digest = hashlib.sha256(data_file.read_bytes()).hexdigest()
        assert {"path": str(data_file), "sha256": digest} in m["inputs"]
        assert m["data"]["sha256"] == data_summary(read_data(data_file))["sha256"]
    return m


def test_eval_writes_a_manifest(files, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", str(files["comparisons"]), "--models", "majority,bt", "--seeds", "2", "--first-seed", "3"]
    args += ["--k", "0,2", "--encoder", "hashing[dim=64]", "--active-max-k", "0", "--harmless", "none"]
    args += ["--max-train-pairs", "20", "--max-test-pairs", "10", "--out", str(out)]
    _run(args, capsys)
    m = _check(out, args, "eval", [3, 4], files["comparisons"])
    assert m["test_data"] is None and m["data"]["persons"] == 30
    assert f"personalign {shlex.join(args)}" in (out / "results.md").read_text()  # the report prints the same


def test_eval_transfer_records_both_datasets(files, tmp_path, capsys):
    out = tmp_path / "transfer"
    args = [
        "eval",
        str(files["comparisons"]),
        "--test",
        str(files["ratings"]),
        "--models",
        "bt",
        "--seeds",
        "1",
    ]
    args += ["--k", "0", "--encoder", "hashing[dim=64]", "--active-max-k", "0", "--harmless", "none"]
    args += ["--max-train-pairs", "20", "--max-test-pairs", "10", "--out", str(out)]
    _run(args, capsys)
    m = _check(out, args, "eval", [0], files["comparisons"])
    assert m["test_data"]["sha256"] == data_summary(read_data(files["ratings"]))["sha256"]
    assert [i["path"] for i in m["inputs"]] == [str(files["comparisons"]), str(files["ratings"])]


def test_eval_pointwise_writes_a_manifest(files, tmp_path, capsys):
    out = tmp_path / "pointwise"
    args = ["eval-pointwise", str(files["ratings"]), "--seeds", "2", "--rank", "0"]
    args += ["--encoder", "hashing[dim=64]", "--out", str(out)]
    _run(args, capsys)
    _check(out, args, "eval-pointwise", [0, 1], files["ratings"])


def test_audit_writes_a_manifest_with_the_model_it_read(files, model_dir, tmp_path, capsys):
    out = tmp_path / "audit"
    args = ["audit", str(files["comparisons"]), "--model", str(model_dir), "--permutations", "0"]
    args += ["--sc-items", "10", "--seed", "5", "--out", str(out)]
    _run(args, capsys)
    m = _check(out, args, "audit", [5], files["comparisons"])
    assert {"path": str(model_dir), "sha256": file_sha256(model_dir)} in m["inputs"]
    assert json.loads((out / "audit.json").read_text())["command"] == m["command"]


def test_bounds_check_writes_a_manifest_with_model_and_policy(files, model_dir, tmp_path, capsys):
    out = tmp_path / "check"
    args = ["bounds", "check", str(files["comparisons"]), "--model", str(model_dir), "--policy", "rules"]
    args += ["--max-persons", "5", "--out", str(out)]
    _run(args, capsys)
    m = _check(out, args, "bounds-check", [], files["comparisons"])
    assert m["policy"] == "rules"
    paths = [Path(i["path"]) for i in m["inputs"]]
    assert model_dir in paths and any(p.name == "rules.yaml" for p in paths)
    assert json.loads((out / "report.json").read_text())["command"] == m["command"]


def test_a_config_free_run_records_no_config(files, tmp_path, capsys):
    out = tmp_path / "audit"
    args = ["audit", str(files["comparisons"]), "--permutations", "0", "--sc-items", "10", "--out", str(out)]
    _run(args, capsys)
    assert _check(out, args, "audit", [0], files["comparisons"])["config"] is None


@pytest.mark.slow
def test_bounds_report_writes_a_manifest(tmp_path, capsys):
    out = tmp_path / "bounds"
    args = ["bounds", "report", "--persons", "40", "--seed", "2", "--no-poisoning", "--out", str(out)]
    _run(args, capsys)
    m = _check(out, args, "bounds-report", [2], None)
    assert m["persons"] == 40 and m["poison_seeds"] == []


def test_demo_writes_a_manifest_at_its_root_and_in_its_result_folders(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--seed", "1", "--only", "population", "--only", "audit", "--out", str(out)]
    _run(args, capsys)
    root = _check(out, args, "demo", [1], None)
    assert root["quick"] is True and root["only"] == ["population", "audit"]
    audit = json.loads((out / "audit" / "manifest.json").read_text())
    assert audit["kind"] == "audit" and audit["seeds"] == [1] and audit["inputs"] == []
    assert audit["command"].startswith("personalign audit synthetic:")  # the rerunnable command, not `demo`
    assert audit["command"] == json.loads((out / "audit" / "audit.json").read_text())["command"]
    assert audit["data"]["persons"] > 0


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_a_written_population_leaves_its_truth_out_instead_of_a_string(tmp_path, suffix):
    """Once written as ``str(truth)``, the truth came back as a string and ``eval`` crashed on it."""
    pop = generate_population(persons=5, comparisons_per_person=3, seed=0)
    assert pop.meta.get("truth") is not None
    back = read_data(write_data(pop, tmp_path / f"pop{suffix}"))
    assert "truth" not in back.meta and back.meta["config"]["persons"] == 5


def _manifest(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _common(m: dict, args: list[str], kind: str) -> None:
    assert m["kind"] == kind and m["command"] == "personalign " + shlex.join(args)
    assert m["versions"]["personalign"] and m["git"]["personalign"] == git_state(PACKAGE_DIR)


def test_data_synth_writes_a_manifest_that_train_reads_past(tmp_path, capsys):
    out = tmp_path / "pop"
    args = ["data", "synth", "--persons", "12", "--comparisons", "8", "--seed", "5", "--out", str(out)]
    _run(args, capsys)
    m = _manifest(out / "manifest.json")
    _common(m, args, "population")
    assert m["seeds"] == [5] and m["data"]["persons"] == 12 and m["data"]["sha256"]
    # the manifest beside the tables does not confuse the folder's format
    args = ["train", str(out), "--encoder", "hashing[dim=32]", "--rank", "1", "--max-iter", "5"]
    _run([*args, "--out", str(tmp_path / "m")], capsys)


@pytest.mark.parametrize("target", ["folder", "tables.parquet"])
def test_data_convert_writes_a_manifest_with_the_input_hash(files, tmp_path, capsys, target):
    out = tmp_path / target
    args = ["data", "convert", str(files["comparisons"]), "--out", str(out)]
    _run(args, capsys)
    where = out / "manifest.json" if target == "folder" else tmp_path / "tables.parquet.manifest.json"
    m = _manifest(where)
    _common(m, args, "converted-data")
    digest = hashlib.sha256(files["comparisons"].read_bytes()).hexdigest()
    assert {"path": str(files["comparisons"]), "sha256": digest} in m["inputs"]
    assert m["data"]["sha256"] == data_summary(read_data(files["comparisons"]))["sha256"]
    if target == "folder":
        assert read_data(out).comparisons.shape == read_data(files["comparisons"]).comparisons.shape


def test_export_reward_writes_a_manifest_naming_the_model(model_dir, tmp_path, capsys):
    out = tmp_path / "reward"
    args = ["export-reward", "--model", str(model_dir), "--out", str(out)]
    _run(args, capsys)
    m = _manifest(out / "manifest.json")
    _common(m, args, "exported-reward")
    assert m["model"] == str(model_dir) and m["user"] is None
    assert [i["path"] for i in m["inputs"]] == [str(model_dir)] and m["inputs"][0]["sha256"]
    _run([*args, "--overwrite"], capsys)  # the guard still knows the folder as its own


def test_export_dpo_writes_a_manifest_beside_its_file(model_dir, tmp_path, capsys):
    cands = tmp_path / "cands.jsonl"
    rows = [
        {"prompt": "Say hi.", "response": r} for r in ("Hi there!", "Hello, friend.", "Hey.", "Greetings.")
    ]
    cands.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    args = ["export-dpo", "--model", str(model_dir), "--candidates", str(cands), "--out", str(out)]
    _run(args, capsys)
    m = _manifest(tmp_path / "pairs.jsonl.manifest.json")
    _common(m, args, "dpo-pairs")
    assert [i["path"] for i in m["inputs"]] == [str(model_dir), str(cands)] and m["persons"] > 0
