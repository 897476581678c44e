"""Persons from the training data are served from their learned posterior, in process (FastAPI TestClient)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from personalign.data.synthetic import generate_population
from personalign.experiments.models import train_small_model
from personalign.models import load_model
from personalign.serve.app import ServeConfig, create_app

ADMIN = {"X-API-Key": "adm"}


@dataclass
class Trained:
    """A saved model, the model loaded back, its training comparisons, and a training prompt with six of its
    responses (texts where the persons' learned weights matter)."""

    model_dir: Path
    model: Any
    comps: pd.DataFrame
    prompt: str
    cands: list[str]


def _data() -> Any:
    return generate_population(persons=60, comparisons_per_person=30, n_prompts=8, seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """A small LowRankBT (rank 4) on a synthetic population of 60 persons."""
    data = _data()
    model_dir = train_small_model(tmp_path_factory.mktemp("trained") / "m", data=data, rank=4, seed=0)
    comps = data.to_comparisons()
    prompt = str(comps["prompt"].iloc[0])
    of_prompt = comps[comps["prompt"] == prompt]
    cands = list(dict.fromkeys([*of_prompt["chosen"], *of_prompt["rejected"]]))[:6]
    return Trained(model_dir, load_model(model_dir), comps, prompt, cands)


@pytest.fixture(scope="module")
def client(trained, tmp_path_factory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("trained-db") / "s.db"
    # the reload test loads a model from its own tmp_path: the model root is the session's temporary folder
    root = str(tmp_path_factory.getbasetemp())
    cfg = ServeConfig(model_dir=str(trained.model_dir), db_url=str(db), admin_keys=["adm"], model_root=root)
    with TestClient(create_app(cfg)) as c:
        yield c


def _person(t: Trained, i: int) -> str:
    return sorted(t.model.user_units_)[i]


def _score(c: TestClient, t: Trained, person: str) -> dict:
    body = {"prompt": t.prompt, "candidates": t.cands}
    r = c.post(f"/v1/persons/{person}/score", headers=ADMIN, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _profile(c: TestClient, person: str) -> dict:
    r = c.get(f"/v1/persons/{person}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def _feedback(c: TestClient, t: Trained, person: str, chosen: str, rejected: str) -> None:
    body = {"kind": "comparison", "prompt": t.prompt, "chosen": chosen, "rejected": rejected}
    r = c.post(f"/v1/persons/{person}/feedback", headers=ADMIN, json=body)
    assert r.status_code == 200, r.text


def _pairs(t: Trained, person: str, rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(person, t.prompt, ch, rj, False, 1.0) for ch, rj in rows],
        columns=["user_id", "prompt", "chosen", "rejected", "tie", "weight"],
    )


def test_trained_person_is_served_their_learned_posterior(client, trained: Trained) -> None:
    t, model = trained, trained.model
    u = _person(t, 0)
    sc = _score(client, t, u)
    assert np.allclose(sc["rewards"], model.score(u, t.prompt, t.cands), atol=1e-5)
    assert sc["personalized"] is True
    # the person's weights differ from the population's, so their rewards do too
    assert not np.allclose(model.posterior(u).mean, model.prior().mean, atol=1e-2)
    assert np.max(np.abs(np.asarray(sc["rewards"]) - np.asarray(sc["population_rewards"]))) > 1e-2
    prof = _profile(client, u)
    assert prof["source"] == "trained" and prof["trained"] is True and prof["n_judgments"] == 0
    assert np.allclose(prof["posterior"]["mean"], model.posterior(u).mean)
    # the comparisons trained on: the person's own, less the ones held out for validation
    n_train = prof["n_training_judgments"]
    assert n_train == model.train_counts_[u]
    assert 0 < n_train <= int((t.comps["user_id"] == u).sum())


def test_every_trained_person_gets_their_own_scores(client, trained: Trained) -> None:
    t, model = trained, trained.model
    a, b = _person(t, 1), _person(t, 2)
    ra, rb = _score(client, t, a)["rewards"], _score(client, t, b)["rewards"]
    assert np.allclose(ra, model.score(a, t.prompt, t.cands), atol=1e-5)
    assert np.allclose(rb, model.score(b, t.prompt, t.cands), atol=1e-5)
    assert not np.allclose(ra, rb, atol=1e-3)


def test_unknown_person_is_served_the_prior(client, trained: Trained) -> None:
    t, model = trained, trained.model
    sc = _score(client, t, "newcomer-1")
    assert sc["personalized"] is False
    assert np.allclose(sc["rewards"], sc["population_rewards"])
    with pytest.warns(UserWarning, match="does not know"):
        assert np.allclose(sc["rewards"], model.score("newcomer-1", t.prompt, t.cands), atol=1e-5)
    prof = _profile(client, "newcomer-1")
    assert prof["source"] == "prior" and prof["trained"] is False and prof["n_training_judgments"] == 0
    assert np.allclose(prof["posterior"]["mean"], model.prior().mean)


def test_feedback_folds_onto_the_trained_posterior(client, trained: Trained) -> None:
    t, model = trained, trained.model
    u, c = _person(t, 3), t.cands
    rows = [(c[2], c[1]), (c[0], c[3])]
    post = model.posterior(u)
    for i, (ch, rj) in enumerate(rows):
        _feedback(client, t, u, ch, rj)
        post = model.update(post, _pairs(t, u, [(ch, rj)]))  # the model's own online update
        prof = _profile(client, u)
        assert prof["source"] == "feedback" and prof["trained"] is True and prof["n_judgments"] == i + 1
        assert np.allclose(prof["posterior"]["mean"], post.mean, atol=1e-6)
    # folding onto the prior would give another belief: the starting point matters
    from_prior = model.update(model.update(model.prior(), _pairs(t, u, rows[:1])), _pairs(t, u, rows[1:]))
    assert not np.allclose(prof["posterior"]["mean"], from_prior.mean, atol=1e-2)
    served = copy.deepcopy(model)  # the shared fixture model stays as trained
    served.add_user("check-" + u, post)
    expected = served.score("check-" + u, t.prompt, t.cands)
    assert np.allclose(_score(client, t, u)["rewards"], expected, atol=1e-5)


def test_deleting_a_trained_person_returns_them_to_the_learned_posterior(client, trained: Trained) -> None:
    t, model = trained, trained.model
    u = _person(t, 4)
    _feedback(client, t, u, t.cands[2], t.cands[1])
    assert _profile(client, u)["source"] == "feedback"
    r = client.delete(f"/v1/persons/{u}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["deleted"]["judgments"] == 1
    prof = _profile(client, u)
    assert prof["source"] == "trained" and prof["exists"] is False and prof["n_judgments"] == 0
    assert np.allclose(prof["posterior"]["mean"], model.posterior(u).mean)
    assert np.allclose(_score(client, t, u)["rewards"], model.score(u, t.prompt, t.cands), atol=1e-5)


def test_reload_replays_feedback_from_the_new_models_learned_posterior(
    client, trained: Trained, tmp_path: Path
) -> None:
    """A stored posterior of another model version is recomputed from that model's start for the person."""
    t = trained
    u, pair = _person(t, 5), (t.cands[3], t.cands[2])
    _feedback(client, t, u, *pair)
    other_dir = train_small_model(tmp_path / "other", data=_data(), rank=3, seed=1)
    other = load_model(other_dir)
    r = client.post("/v1/admin/model/reload", headers=ADMIN, json={"model_dir": str(other_dir)})
    assert r.status_code == 200, r.text
    try:
        expected = other.update(other.posterior(u), _pairs(t, u, [pair]))
        prof = _profile(client, u)
        assert prof["source"] == "feedback"
        assert np.allclose(prof["posterior"]["mean"], expected.mean, atol=1e-6)
    finally:
        r = client.post("/v1/admin/model/reload", headers=ADMIN, json={"model_dir": str(t.model_dir)})
        assert r.status_code == 200, r.text
