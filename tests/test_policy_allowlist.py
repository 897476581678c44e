"""Policy files are data: a ``callable`` scorer may name only callables on the operator's allow-list (the project's
own scorers plus ``--allow-callable``/``allow=``); anything else is refused before its module is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from personalign.bounds import BoundedPolicy, load_policy, policy_from_dict
from personalign.bounds.policy import DEFAULT_CALLABLES, allowed_callables
from personalign.bounds.scorers import build_scorer
from personalign.cli import app
from personalign.cli.common import run_guarded
from personalign.data.io import write_data
from personalign.data.synthetic import generate_population
from personalign.errors import ConfigError

SRC = Path(__file__).resolve().parents[1] / "src"
MOD = "pa_sideeffect_scorer"  # a module whose import leaves a marker file: proof that it was (not) imported


def _policy_text(target: str) -> str:
    return (
        "name: p\nconstraints:\n  - name: c\n"
        f"    scorer: {{type: callable, target: '{target}'}}\n    threshold: 0.5\n    direction: min\n"
    )


@pytest.fixture
def side_module(tmp_path, monkeypatch) -> Path:
    """An importable module that writes ``imported.txt`` when imported; returns the marker's path."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / f"{MOD}.py").write_text(
        "import pathlib, numpy as np\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def ones(prompts, responses):\n    return np.ones(len(responses))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.delitem(sys.modules, MOD, raising=False)
    return marker


def test_a_callable_off_the_list_is_refused_and_never_imported(side_module, tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text(_policy_text(f"{MOD}:ones"))
    with pytest.raises(ConfigError, match=rf"p.yaml: scorer '{MOD}:ones': not on the allow-list"):
        load_policy(pol)
    with pytest.raises(ConfigError, match="not on the allow-list"):
        BoundedPolicy(object(), pol)
    assert not side_module.exists() and MOD not in sys.modules
    # the operator allows it: now it is imported and scores
    bp = BoundedPolicy(object(), pol, allow=[f"{MOD}:ones"])
    assert side_module.exists()
    assert bp.scorers["c"].score("p", ["a", "b"]).tolist() == [1.0, 1.0]


def test_os_system_is_refused_everywhere(tmp_path):
    raw = {
        "constraints": [{"name": "c", "scorer": {"type": "callable", "target": "os:system"}, "threshold": 0}]
    }
    with pytest.raises(ConfigError, match="'os:system': not on the allow-list"):
        policy_from_dict(raw, "x.yaml")
    with pytest.raises(ConfigError, match="not on the allow-list"):
        load_policy(raw)
    # a Policy built in code gets the default list: build_scorer refuses to import it all the same
    pol = policy_from_dict(raw, "x.yaml", allow=["os:system"])
    spec = pol.constraints[0].scorer
    with pytest.raises(ConfigError, match="not on the allow-list"):
        build_scorer(spec)
    # allowing one callable does not allow another
    with pytest.raises(ConfigError, match="'os:system'"):
        policy_from_dict(raw, "x.yaml", allow=["os:getcwd"])


def test_the_project_scorer_is_allowed_by_default():
    assert "personalign.bounds.scorers:response_length" in DEFAULT_CALLABLES
    raw = {
        "constraints": [
            {
                "name": "short",
                "scorer": {"type": "callable", "target": "personalign.bounds.scorers:response_length"},
                "threshold": 5,
                "direction": "max",
            }
        ]
    }
    bp = BoundedPolicy(object(), raw)
    assert bp.scorers["short"].score("p", ["abc", "abcdefgh"]).tolist() == [3.0, 8.0]
    assert bp.check("p", ["abc", "abcdefgh"])["satisfied"].tolist() == [True, False]


@pytest.mark.parametrize("bad", ["os", "os:", ":system", "os:system()", "a b:c", "os:sys tem"])
def test_a_malformed_allow_entry_is_refused(bad):
    with pytest.raises(ConfigError, match="expected 'module:name'"):
        allowed_callables([bad])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> tuple[Path, Path]:
    ws = tmp_path_factory.mktemp("allow")
    good = write_data(generate_population(persons=4, comparisons_per_person=5, seed=1), ws / "good.jsonl")
    args = [
        "train",
        str(good),
        "--encoder",
        "hashing",
        "--max-iter",
        "5",
        "--rank",
        "2",
        "--out",
        str(ws / "m"),
    ]
    assert run_guarded(app, args) == 0
    return ws / "m", good


def _cli(args: list[str], cwd: Path, pythonpath: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "personalign", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": pythonpath, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )


def test_cli_refuses_with_one_error_line_and_imports_nothing(side_module, model_dir, tmp_path):
    model, data = model_dir
    pol = tmp_path / "p.yaml"
    pol.write_text(_policy_text(f"{MOD}:ones"))
    pp = f"{SRC}:{tmp_path / 'mods'}"
    cases = [
        ["bounds", "validate", str(pol)],
        [
            "bounds",
            "check",
            str(data),
            "--policy",
            str(pol),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "o"),
        ],
        ["export-reward", "--model", str(model), "--policy", str(pol), "--out", str(tmp_path / "r")],
    ]
    for args in cases:
        r = _cli(args, tmp_path, pp)
        assert r.returncode == 2, (args, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        assert f"scorer '{MOD}:ones': not on the allow-list (pass --allow-callable" in lines[0]
        assert "Traceback" not in r.stderr
    assert not side_module.exists()
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()
    r = _cli(["bounds", "validate", str(pol), "--allow-callable", f"{MOD}:ones"], tmp_path, pp)
    assert r.returncode == 0, r.stderr
    assert side_module.exists() is False  # validate vets the list; it builds no scorer


def test_cli_os_system(tmp_path):
    pol = tmp_path / "evil.yaml"
    pol.write_text(_policy_text("os:system"))
    r = _cli(["bounds", "validate", str(pol)], tmp_path, str(SRC))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: {pol}: scorer 'os:system': not on the allow-list (pass --allow-callable os:system to allow it)"
    )


def test_service_refuses_a_policy_off_the_list(side_module, model_dir, tmp_path):
    from personalign.serve.app import ServeConfig, create_app

    pol = tmp_path / "p.yaml"
    pol.write_text(_policy_text(f"{MOD}:ones"))
    cfg = ServeConfig(model_dir=str(model_dir[0]), db_url=str(tmp_path / "db.sqlite"), policy=str(pol))
    with pytest.raises(ConfigError, match="not on the allow-list"):
        create_app(cfg)
    assert not side_module.exists()
    cfg.allow_callables = [f"{MOD}:ones"]
    app_ = create_app(cfg)
    assert np.allclose(app_.state.service.holder.current.bounded.scorers["c"].score("p", ["x"]), 1.0)
