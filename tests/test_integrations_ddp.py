"""Data-parallel training: the all-reduce hook on the one training loop, one process and two (gloo, torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _ddp_worker import datasets, fit_one  # noqa: E402
from personalign.data.synthetic import generate_population, read_population, write_population  # noqa: E402
from personalign.features import HashingEncoder, PairFeaturizer  # noqa: E402
from personalign.integrations.distributed import ddp_fit  # noqa: E402
from personalign.models import LowRankBT, TrainingConfig, load_model, model_names  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def population(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pop")
    write_population(generate_population(persons=40, comparisons_per_person=30, seed=3), out)
    return out


def test_world1_ddp_fit_equals_fit(population):
    # one process: ddp_fit is the model's own fit, step for step
    data, _ = read_population(population)
    kw = dict(rank=3, featurizer=PairFeaturizer(HashingEncoder(256)), random_state=0)
    ref = LowRankBT(**kw, training=TrainingConfig(max_iter=100, validation_split="items")).fit(data)
    got = ddp_fit(LowRankBT(**kw, training=TrainingConfig(max_iter=100, validation_split="items")), data)
    np.testing.assert_array_equal(got.mu_, ref.mu_)
    np.testing.assert_array_equal(got.B_, ref.B_)
    np.testing.assert_array_equal(got.unit_means_, ref.unit_means_)
    assert got.history_ == ref.history_


def _proba(model, name: str) -> np.ndarray:
    data, ratings = datasets()
    if name == "ordinal":
        return model.predict_proba(ratings.ratings)
    return model.predict_proba(data.to_comparisons())


def test_two_process_torchrun_matches_single_process_for_every_model(tmp_path):
    out = tmp_path / "ddp"
    worker = Path(__file__).parent / "_ddp_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    res = subprocess.run([*cmd, str(worker), str(out)], capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    names = sorted(model_names(aliases=False))
    assert len(names) >= 9
    for name in names:
        ddp = load_model(out / name, featurizer=PairFeaturizer(HashingEncoder(256)))
        ref = fit_one(name)
        assert type(ddp) is type(ref)
        assert ddp.history_["world_size"] == 2, name
        # the same full-batch objective: the validation loss and the predictions agree up to summation order
        if ref.history_.get("best_val_loss") is not None:
            assert abs(ddp.history_["best_val_loss"] - ref.history_["best_val_loss"]) < 1e-4, name
        p_ddp, p_ref = _proba(ddp, name), _proba(ref, name)
        assert np.max(np.abs(p_ddp - p_ref)) < 5e-3, name


def test_torchrun_entry_point_trains_and_saves(population, tmp_path):
    out = tmp_path / "cli_model"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["-m", "personalign.integrations.distributed", str(population), "--out", str(out)]
    opts = ["--encoder", "hashing", "--rank", "3", "--max-iter", "100", "--backend", "gloo", "--quiet"]
    res = subprocess.run([*cmd, *args, *opts], capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "with 2 process(es) (gloo)" in res.stdout
    data, _ = read_population(population)
    ref = LowRankBT(
        rank=3, featurizer=PairFeaturizer(HashingEncoder(256)), training=TrainingConfig(max_iter=100)
    ).fit(data)
    ddp = load_model(out)
    assert abs(ddp.history_["best_val_loss"] - ref.history_["best_val_loss"]) < 1e-4
    comps = data.to_comparisons()
    assert np.max(np.abs(ddp.predict_proba(comps) - ref.predict_proba(comps))) < 5e-3
