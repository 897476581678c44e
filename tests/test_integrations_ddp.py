"""DistributedDataParallel training: 2 CPU processes (gloo, torchrun) match single-process training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from personalign.data.synthetic import generate_population, read_population, write_population
from personalign.features import HashingEncoder, PairFeaturizer
from personalign.models import LowRankBT, load_model


@pytest.fixture(scope="module")
def population(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pop")
    write_population(generate_population(persons=40, comparisons_per_person=30, seed=3), out)
    return out


def test_world1_ddp_fit_equals_fit(population):
    from personalign.integrations.distributed import ddp_fit

    data, _ = read_population(population)
    kw = dict(rank=3, featurizer=PairFeaturizer(HashingEncoder(256)), random_state=0, max_iter=100)
    ref = LowRankBT(**kw).fit(data)
    got = ddp_fit(LowRankBT(**kw), data)
    np.testing.assert_allclose(got.mu_, ref.mu_, atol=1e-6)
    np.testing.assert_allclose(got.B_, ref.B_, atol=1e-6)
    np.testing.assert_allclose(got.unit_means_, ref.unit_means_, atol=1e-5)


def test_two_process_torchrun_matches_single_process(population, tmp_path):
    out = tmp_path / "ddp_model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "personalign.integrations.distributed",
        str(population),
        "--out",
        str(out),
        "--encoder",
        "hashing",
        "--rank",
        "3",
        "--max-iter",
        "100",
        "--backend",
        "gloo",
        "--quiet",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "with 2 process(es) (gloo)" in res.stdout
    ddp = load_model(out)
    data, _ = read_population(population)
    ref = LowRankBT(rank=3, featurizer=PairFeaturizer(HashingEncoder(256)), random_state=0, max_iter=100).fit(
        data
    )
    assert ddp.history_["world_size"] == 2
    # same full-batch objective: parameters and the training loss agree up to float32 summation order
    assert abs(ddp.history_["best_val_loss"] - ref.history_["best_val_loss"]) < 1e-4
    np.testing.assert_allclose(ddp.mu_, ref.mu_, atol=2e-3)
    np.testing.assert_allclose(ddp.B_, ref.B_, atol=2e-3)
    comps = data.to_comparisons()
    p_ddp, p_ref = ddp.predict_proba(comps), ref.predict_proba(comps)
    assert np.max(np.abs(p_ddp - p_ref)) < 5e-3
    assert np.mean((p_ddp > 0.5) == (p_ref > 0.5)) > 0.99
