"""`personalign train` accepts every registered model, through the real entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from personalign.cli import app
from personalign.cli.common import run_guarded
from personalign.data.io import write_data
from personalign.data.synthetic import generate_population, sample_ratings
from personalign.models import load_model, model_names


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    pop = generate_population(persons=24, comparisons_per_person=15, seed=6)
    both = pop.copy(ratings=sample_ratings(pop, 8, seed=1).ratings)  # comparisons and ratings in one file
    return write_data(both, tmp_path_factory.mktemp("cli") / "data.parquet")


@pytest.mark.parametrize("name", sorted(model_names(aliases=False)))
def test_train_every_registered_model(name, data_file, tmp_path, capsys):
    out = tmp_path / name
    args = ["train", str(data_file), "--model", name, "--encoder", "hashing", "--rank", "2"]
    args += ["--max-iter", "20", "--group-col", "age_band", "--out", str(out), "--json"]
    assert run_guarded(app, args) == 0
    summary = json.loads(capsys.readouterr().out)
    model = load_model(out)
    assert summary["model"] == type(model).__name__ == model_names()[name].__name__
    assert summary["judgments"] > 0 and summary["personal_dims"] == model.prior().dim
    assert model.training.max_iter == 20 and np.isfinite(model.prior().mean).all()


def test_train_lists_models_and_refuses_an_unknown_one(data_file, tmp_path, capsys):
    assert run_guarded(app, ["train", "--list-models"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in model_names(aliases=False))
    assert run_guarded(app, ["train", str(data_file), "--model", "nope", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "ordinal" in err


def test_score_says_whether_the_person_is_known(data_file, tmp_path, capsys):
    out = tmp_path / "m"
    args = ["train", str(data_file), "--model", "lowrank", "--encoder", "hashing", "--max-iter", "20"]
    assert run_guarded(app, [*args, "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    score = ["score", "--model", str(out), "--prompt", "p", "--response", "a", "--response", "b", "--json"]
    assert run_guarded(app, [*score, "--user", "nobody"]) == 0
    res = capsys.readouterr()
    assert json.loads(res.out)["known_person"] is False and "UserWarning" not in res.err
    assert run_guarded(app, [*score, "--user", load_model(out).units_[0]]) == 0
    assert json.loads(capsys.readouterr().out)["known_person"] is True
