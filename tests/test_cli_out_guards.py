"""--out of every command that writes a result folder (eval, eval-pointwise, audit, bounds check, bounds report)
and of train-ddp / export-dpo: an existing folder that is not an earlier output of that command is refused unless
--overwrite, and a result folder is replaced atomically (a temporary sibling renamed into place)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from personalign.cli import app
from personalign.cli.common import run_guarded
from personalign.data.io import write_data
from personalign.data.synthetic import generate_population

TRAIN = ["--encoder", "hashing", "--max-iter", "5", "--rank", "2"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("outguard")
    write_data(generate_population(persons=6, comparisons_per_person=6, seed=3), ws / "good.jsonl")
    rows = [
        {"user_id": f"u{u}", "prompt": "", "response": f"t{i}", "rating": float((u * i) % 5 + 1)}
        for u in range(8)
        for i in range(6)
    ]
    pd.DataFrame(rows).to_csv(ws / "ratings.csv", index=False)
    assert run_guarded(app, ["train", str(ws / "good.jsonl"), *TRAIN, "--out", str(ws / "model")]) == 0
    (ws / "cands.jsonl").write_text('{"prompt": "p", "responses": ["a", "b", "c"]}\n')
    return ws


# command -> (argv with {ws} and {out}, the document an earlier run leaves in --out)
COMMANDS = {
    "eval": (
        ["eval", "synthetic:persons=20", "--seeds", "1", "--encoder", "hashing", "--harmless", "none"],
        "results.json",
    ),
    "audit": (["audit", "{ws}/ratings.csv", "--permutations", "0"], "audit.json"),
    "bounds check": (
        ["bounds", "check", "{ws}/good.jsonl", "--model", "{ws}/model", "--policy", "rules"],
        "report.json",
    ),
}


def _argv(cmd: str, ws: Path, out: Path, *extra: str) -> list[str]:
    args, _ = COMMANDS[cmd]
    return [a.replace("{ws}", str(ws)) for a in args] + ["--out", str(out), *extra]


def _victim(parent: Path) -> Path:
    v = parent / "victim"
    (v / "sub").mkdir(parents=True)
    (v / "notes.txt").write_text("mine")
    return v


def _siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_result_out_is_guarded_and_replaced_whole(cmd, ws, tmp_path, capsys):
    main = COMMANDS[cmd][1]
    victim = _victim(tmp_path)
    assert run_guarded(app, _argv(cmd, ws, victim)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "is not a result folder" in err and "pass --overwrite" in err
    assert (victim / "notes.txt").read_text() == "mine" and (victim / "sub").is_dir()
    assert _siblings(tmp_path) == ["victim"]
    # a file in the way: refused too
    f = tmp_path / "file"
    f.write_text("mine")
    assert run_guarded(app, _argv(cmd, ws, f)) == 2 and f.read_text() == "mine"
    f.unlink()
    # --overwrite: the folder is replaced whole (nothing of the old one is left, no temporary sibling)
    assert run_guarded(app, _argv(cmd, ws, victim, "--overwrite")) == 0
    names = set(_siblings(victim))
    assert main in names and "notes.txt" not in names and "sub" not in names
    assert _siblings(tmp_path) == ["victim"]
    # an earlier result of the same command is replaced without --overwrite
    (victim / main).write_text('{"stale": true}')
    assert run_guarded(app, _argv(cmd, ws, victim)) == 0
    assert "stale" not in (victim / main).read_text()
    assert _siblings(tmp_path) == ["victim"]


def test_a_result_folder_of_another_command_is_not_ours(ws, tmp_path, capsys):
    out = tmp_path / "a"
    assert run_guarded(app, _argv("audit", ws, out)) == 0
    assert run_guarded(app, _argv("bounds check", ws, out)) == 2  # audit.json is not a bounds check's report
    assert "pass --overwrite" in capsys.readouterr().err and (out / "audit.json").is_file()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text("[1, 2]")  # the name alone is not enough: not our document
    assert run_guarded(app, _argv("eval", ws, tmp_path / "b")) == 2


def test_a_failure_while_writing_leaves_the_old_folder(ws, tmp_path, monkeypatch):
    out = tmp_path / "check"
    assert run_guarded(app, _argv("bounds check", ws, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import personalign.bounds.check as check

    def broken(rep, path, write_json=True):
        (Path(path) / "report.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(check, "write_check", broken)
    with pytest.raises(OSError, match="disk full"):
        run_guarded(app, _argv("bounds check", ws, out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _siblings(tmp_path) == ["check"]  # the temporary sibling is gone


def test_eval_pointwise_is_guarded(ws, tmp_path, capsys):
    victim = _victim(tmp_path)
    args = ["eval-pointwise", str(ws / "ratings.csv"), "--seeds", "1", "--rank", "0", "--encoder", "hashing"]
    assert run_guarded(app, [*args, "--out", str(victim)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (victim / "notes.txt").is_file()


def test_bounds_report_is_guarded(tmp_path, capsys):
    victim = _victim(tmp_path)
    assert run_guarded(app, ["bounds", "report", "--out", str(victim), "--persons", "20"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (victim / "notes.txt").is_file()


def test_train_ddp_refuses_before_starting_workers(ws, tmp_path, capsys):
    victim = _victim(tmp_path)
    args = ["train-ddp", str(ws / "good.jsonl"), "--out", str(victim), "--nproc", "1"]
    assert run_guarded(app, args) == 2
    err = capsys.readouterr()
    assert "pass --overwrite" in err.err and "torch.distributed.run" not in err.out  # no worker was started
    assert (victim / "notes.txt").read_text() == "mine" and _siblings(tmp_path) == ["victim"]


def test_export_dpo_refuses_a_foreign_folder_but_writes_a_file(ws, tmp_path, capsys):
    victim = _victim(tmp_path)
    base = ["export-dpo", "--model", str(ws / "model"), "--candidates", str(ws / "cands.jsonl")]
    assert run_guarded(app, [*base, "--out", str(victim)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (victim / "notes.txt").is_file()
    assert run_guarded(app, [*base, "--out", str(victim), "--overwrite"]) == 0
    assert not (victim / "notes.txt").exists()
    # a second run over its own dataset folder needs no --overwrite
    assert run_guarded(app, [*base, "--out", str(victim)]) == 0
