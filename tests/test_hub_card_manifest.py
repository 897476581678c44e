"""Model folders as a teammate meets them: pushed to and pulled from a Hub-style repository (a local hub folder,
never the network), with a model card and a reproducibility manifest, readable by group and others."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from personalign.bounds import load_policy
from personalign.cli import app
from personalign.cli.common import run_guarded
from personalign.data.io import read_data, write_data
from personalign.data.manifest import data_summary
from personalign.data.synthetic import generate_population
from personalign.errors import ConfigError
from personalign.features import HashingEncoder, PairFeaturizer
from personalign.models import LowRankBT, PersonalModel, TrainingConfig, load_model
from personalign.models.hub import HUB_DIR_ENV

PROMPT = "How do I start running?"
ANSWERS = ["Start with three short runs a week.", "Lace up and go, haha!", "Consult a doctor first."]
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "personalign"


@pytest.fixture(scope="module")
def data():
    return generate_population(persons=40, comparisons_per_person=40, alpha=0.05, seed=3)


def _fit(data, seed: int = 0) -> LowRankBT:
    model = LowRankBT(
        rank=2,
        featurizer=PairFeaturizer(HashingEncoder(128)),
        training=TrainingConfig(max_iter=30),
        # a fixed scale: "auto" may rightly choose 0 (everybody served the population) on this small hashed
        # population, and these tests need persons whose rewards differ
        prior_scale=1.0,
        random_state=seed,
    )
    return model.fit(data)


@pytest.fixture(scope="module")
def model(data):
    return _fit(data)


def _scores(m: PersonalModel, users: list[str]) -> np.ndarray:
    return np.stack([m.score(u, PROMPT, ANSWERS) for u in users])


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _git_head() -> str | None:
    try:
        r = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True
        )
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


# ------------------------------------------------------------------------------------------ the hub
def test_push_then_pull_by_repo_id_scores_identically(model, data, tmp_path):
    hub = tmp_path / "hub"
    where = model.push_to_hub("team/runner-prefs", hub_dir=hub)
    assert Path(where) == hub / "team" / "runner-prefs"
    assert {"model.safetensors", "config.json", "README.md", "manifest.json"} <= {
        p.name for p in Path(where).iterdir()
    }
    users = list(model.units_[:3]) + ["somebody-new"]
    with pytest.warns(UserWarning):
        before = _scores(model, users)
    pulled = PersonalModel.from_pretrained("team/runner-prefs", hub_dir=hub)
    assert type(pulled) is LowRankBT
    with pytest.warns(UserWarning):
        after = _scores(pulled, users)
    np.testing.assert_array_equal(before, after)
    assert not np.allclose(before[0], before[1])  # two persons, two rewards: the test can tell models apart


def test_the_hub_folder_from_the_environment_and_load_model(model, tmp_path, monkeypatch):
    hub = tmp_path / "shared-drive"
    monkeypatch.setenv(HUB_DIR_ENV, str(hub))
    model.push_to_hub("team/env-model")
    u = model.units_[0]
    np.testing.assert_array_equal(
        load_model("team/env-model").score(u, PROMPT, ANSWERS), model.score(u, PROMPT, ANSWERS)
    )
    card = (hub / "team" / "env-model" / "README.md").read_text()
    assert 'from_pretrained("team/env-model")' in card and "# LowRankBT: team/env-model" in card


def test_a_second_push_replaces_the_repository(data, tmp_path):
    hub = tmp_path / "hub"
    first, second = _fit(data, seed=0), _fit(data, seed=1)
    first.push_to_hub("team/m", hub_dir=hub)
    second.push_to_hub("team/m", hub_dir=hub)
    u = first.units_[0]
    pulled = load_model("team/m", hub_dir=hub)
    np.testing.assert_array_equal(pulled.score(u, PROMPT, ANSWERS), second.score(u, PROMPT, ANSWERS))
    assert json.loads((hub / "team" / "m" / "manifest.json").read_text())["seeds"] == [1]
    assert [p.name for p in (hub / "team").iterdir()] == ["m"]  # no temporary folder left beside it


def test_hub_errors_are_clear(model, tmp_path):
    hub = tmp_path / "hub"
    with pytest.raises(ConfigError, match="not a repository id"):
        model.push_to_hub("no-owner", hub_dir=hub)
    with pytest.raises(ConfigError, match=r"no repository team/absent in the hub"):
        PersonalModel.from_pretrained("team/absent", hub_dir=hub)


def test_revisions_are_refused_by_the_local_hub_not_ignored(model, tmp_path):
    hub = tmp_path / "hub"
    model.push_to_hub("team/rev", hub_dir=hub, revision="main")  # the one revision a local hub has
    assert load_model("team/rev", hub_dir=hub, revision="main").units_ == model.units_
    with pytest.raises(ConfigError, match="revision 'v2'.*keeps only the latest push"):
        model.push_to_hub("team/rev", hub_dir=hub, revision="v2")
    with pytest.raises(ConfigError, match="revision 'v1'.*Hugging Face Hub"):
        load_model("team/rev", hub_dir=hub, revision="v1")


def test_a_path_that_looks_like_a_repo_id_is_a_folder_first(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model.save_pretrained(Path("team") / "local")
    monkeypatch.setenv(HUB_DIR_ENV, str(tmp_path / "empty-hub"))
    assert load_model("team/local").units_ == model.units_


# ------------------------------------------------------------------------------------------ the card
def test_the_card_holds_versions_data_hash_metrics_intended_use_and_bounds(model, data, tmp_path):
    out = model.save_pretrained(tmp_path / "m", policy=load_policy("rules"))
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(card)
    assert meta["library_name"] == "personalign" and "LowRankBT" in meta["tags"]
    manifest = json.loads((out / "manifest.json").read_text())
    v = manifest["versions"]
    assert f"personalign {v['personalign']}" in card and f"torch {v['torch']}" in card
    assert f"numpy {v['numpy']}" in card
    sha = data_summary(data)["sha256"]
    assert model.training_data_["sha256"] == sha and f"content sha256 `{sha}`" in card
    assert f"{data.n_users} persons" in card
    best = model.history_["best_val_loss"]
    assert f"| best_val_loss | {round(best, 6)} |" in card
    assert "## Intended use and limits" in card and "Not a safety filter by itself" in card
    rules = load_policy("rules")
    assert f"Policy `{rules.name}`" in card and f"rho = {rules.trust_region.rho}" in card
    for c in rules.constraints:
        assert f"`{c.name}`" in card
    assert "Seed: 0" in card


def test_a_card_without_a_policy_says_the_scores_are_unbounded(model, tmp_path):
    card = (model.save_pretrained(tmp_path / "m") / "README.md").read_text()
    section = card.split("## Bounds in force")[1].split("##")[0]
    assert "None attached" in section and "unbounded" in section
    assert "Command: none recorded (saved from the library)" in card


# ------------------------------------------------------------------------------------------ the manifest
def test_the_manifest_holds_versions_commit_data_hash_seeds_and_command(data, tmp_path, capsys):
    src = write_data(data, tmp_path / "pop.parquet")
    out = tmp_path / "model"
    args = ["train", str(src), "--encoder", "hashing[dim=64]", "--rank", "2", "--max-iter", "20"]
    args += ["--seed", "7", "--out", str(out), "--json"]
    assert run_guarded(app, args) == 0
    capsys.readouterr()
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "model" and m["model_class"] == "LowRankBT"
    assert m["command"] == "personalign " + shlex.join(args)  # rerunnable as typed, quoting included
    assert m["seeds"] == [7]
    for pkg in ("personalign", "torch", "numpy", "pandas", "python"):
        assert m["versions"][pkg], pkg
    assert m["inputs"] == [{"path": str(src), "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}]
    assert (
        m["data"]["sha256"]
        == data_summary(read_data(src))["sha256"]
        == load_model(out).training_data_["sha256"]
    )
    assert m["data"]["judgments"] == len(data.comparisons) and m["data"]["persons"] == data.n_users
    head = _git_head()
    if head is None:
        assert m["git"]["personalign"] is None
    else:
        assert m["git"]["personalign"]["commit"] == head and isinstance(
            m["git"]["personalign"]["dirty"], bool
        )
    card = (out / "README.md").read_text()
    assert f"Command: `{m['command']}`" in card and "Seed: 7" in card


def test_the_data_hash_follows_the_content_not_the_file(data, tmp_path):
    """The same judgments written twice hash the same; one changed judgment changes the hash."""
    a = data_summary(data)["sha256"]
    assert data_summary(data.copy())["sha256"] == a
    flipped = data.comparisons.copy()
    flipped.loc[0, ["chosen", "rejected"]] = flipped.loc[0, ["rejected", "chosen"]].to_numpy()
    assert data_summary(data.copy(comparisons=flipped))["sha256"] != a


# ------------------------------------------------------------------------------------------ file modes
def _modes(root: Path) -> tuple[set[int], set[int]]:
    files = {stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}
    dirs = {stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")] if p.is_dir()}
    return files, dirs


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_model_folders_are_readable_as_the_umask_allows(model, tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        saved = model.save_pretrained(tmp_path / "m")
        pushed = Path(model.push_to_hub("team/modes", hub_dir=tmp_path / "hub"))
    finally:
        os.umask(old)
    for root in (saved, pushed):
        assert _modes(root) == ({file_mode}, {dir_mode}), root
