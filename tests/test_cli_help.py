"""`--help` of every command, nested groups included, and `--version`, through the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer

from personalign.cli import app, main

SRC = Path(__file__).resolve().parents[1] / "src"


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the app, as the words that name it (the root is ``()``)."""
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = []

    def walk(cmd, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not getattr(sub, "hidden", False):
                walk(sub, (*path, name))

    walk(root, ())
    return paths


PATHS = _command_paths()


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``personalign ARGS`` through ``personalign.cli.main``, the console script's function."""
    monkeypatch.setattr(sys, "argv", ["personalign", *args])
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_the_tree_has_the_nested_groups():
    names = {" ".join(p) for p in PATHS}
    assert {"data inspect", "data convert", "data synth", "bounds check", "train", "eval", "serve"} <= names
    assert len(PATHS) >= 20


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "personalign")
def test_help_of_every_command(path, monkeypatch, capsys):
    code, out, err = _main(monkeypatch, capsys, *path, "--help")
    assert code == 0, err
    assert "Traceback" not in out + err and err == ""
    assert "Usage:" in out and ("personalign " + " ".join(path)).strip() in " ".join(out.split())
    assert len(out.strip().splitlines()) >= 3  # usage, a description, the options


def test_version_in_process_and_as_a_program(monkeypatch, capsys):
    code, out, err = _main(monkeypatch, capsys, "--version")
    assert (code, out.strip(), err) == (0, f"personalign {version('personalign')}", "")
    env = {**os.environ, "PYTHONPATH": str(SRC), "NO_COLOR": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "personalign", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0 and res.stdout.strip() == f"personalign {version('personalign')}"
    assert res.stderr == ""
