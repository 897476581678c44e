"""A person's control of their own data over the API (in process): list judgments, undo one, reset to the
population, export everything, and who may do which."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text

from personalign.experiments.models import train_small_model
from personalign.models import load_model
from personalign.serve import db as sdb
from personalign.serve.app import ServeConfig, create_app

ADMIN = {"X-API-Key": "adm"}
PROMPT = "Which answer suits you?"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return train_small_model(tmp_path_factory.mktemp("pd-model") / "m", rank=4, seed=0)


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Any:
    return load_model(model_dir)


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pd-db") / "s.db"


@pytest.fixture(scope="module")
def client(model_dir: Path, db_path: Path) -> Iterator[TestClient]:
    cfg = ServeConfig(model_dir=str(model_dir), db_url=str(db_path), admin_keys=["adm"])
    with TestClient(create_app(cfg)) as c:
        yield c


def key_for(c: TestClient, person: str) -> dict[str, str]:
    r = c.post(f"/v1/persons/{person}/keys", headers=ADMIN, json={"label": "test"})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def comparison(chosen: str, rejected: str) -> dict:
    return {"kind": "comparison", "prompt": PROMPT, "chosen": chosen, "rejected": rejected}


def send(c: TestClient, person: str, h: dict, body: dict) -> int:
    r = c.post(f"/v1/persons/{person}/feedback", headers=h, json=body)
    assert r.status_code == 200, r.text
    return r.json()["judgment_id"]


def fold(model: Any, start: Any, person: str, pairs: list[tuple[str, str]]) -> Any:
    """``start`` with these comparisons folded one at a time by the model's own update()."""
    post = start
    for ch, rj in pairs:
        row = [(person, PROMPT, ch, rj, False, 1.0)]
        df = pd.DataFrame(row, columns=["user_id", "prompt", "chosen", "rejected", "tie", "weight"])
        post = model.update(post, df)
    return post


def stored_posterior(c: TestClient, person: str) -> dict:
    r = c.get(f"/v1/persons/{person}/export", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["stored"]["posterior"]


def assert_error(r: Any, status: int) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["code"] and err["message"]


def test_list_judgments_pages_and_bounds(client: TestClient) -> None:
    h = key_for(client, "lister")
    ids = [send(client, "lister", h, comparison(f"long answer {i}", f"short {i}")) for i in range(5)]
    page = client.get("/v1/persons/lister/judgments?limit=2&offset=1", headers=h).json()
    assert [j["id"] for j in page["judgments"]] == ids[1:3]
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert page["judgments"][0]["chosen"] == "long answer 1" and page["judgments"][0]["kind"] == "comparison"
    everything = client.get("/v1/persons/lister/judgments", headers=ADMIN).json()
    assert [j["id"] for j in everything["judgments"]] == ids
    assert_error(client.get("/v1/persons/lister/judgments?limit=1001", headers=h), 422)
    assert_error(client.get("/v1/persons/lister/judgments?offset=-1", headers=h), 422)
    assert_error(client.get("/v1/persons/lister/judgments"), 401)


def test_another_persons_key_reaches_nothing(client: TestClient) -> None:
    owner, other = key_for(client, "owner"), key_for(client, "intruder")
    jid = send(client, "owner", owner, comparison("a", "b"))
    for method, path in [
        ("GET", "/v1/persons/owner/judgments"),
        ("DELETE", f"/v1/persons/owner/judgments/{jid}"),
        ("POST", "/v1/persons/owner/reset"),
        ("GET", "/v1/persons/owner/export"),
        ("DELETE", "/v1/persons/owner"),
    ]:
        assert_error(client.request(method, path, headers=other), 403)
    # the intruder cannot undo the owner's judgment through their own path either: it is not theirs
    assert_error(client.delete(f"/v1/persons/intruder/judgments/{jid}", headers=other), 404)
    assert client.get("/v1/persons/owner/judgments", headers=owner).json()["total"] == 1


def test_undo_refolds_the_remaining_judgments_onto_the_learned_posterior(client: TestClient, model) -> None:
    u = sorted(model.user_units_)[0]  # a person the model was trained on: they start from their posterior
    h = key_for(client, u)
    pairs = [("first text", "second text"), ("third text", "fourth"), ("fifth one", "sixth one")]
    ids = [send(client, u, h, comparison(ch, rj)) for ch, rj in pairs]
    r = client.delete(f"/v1/persons/{u}/judgments/{ids[1]}", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["n_judgments"] == 2 and r.json()["starts_from"] == "trained"
    want = fold(model, model.posterior(u), u, [pairs[0], pairs[2]])
    got = stored_posterior(client, u)
    assert np.allclose(got["mean"], want.mean, atol=1e-8) and np.allclose(got["cov"], want.cov, atol=1e-8)
    prof = client.get(f"/v1/persons/{u}", headers=h).json()
    assert np.allclose(prof["posterior"]["mean"], want.mean, atol=1e-8) and prof["n_judgments"] == 2
    # scores use the recomputed posterior, not a cached one with the undone judgment
    sc = client.post(f"/v1/persons/{u}/score", headers=h, json={"prompt": PROMPT, "candidates": ["x", "y z"]})
    assert np.allclose(sc.json()["rewards"], model.score_posterior(want, PROMPT, ["x", "y z"]), atol=1e-5)
    assert_error(client.delete(f"/v1/persons/{u}/judgments/{ids[1]}", headers=h), 404)  # already undone
    # undoing the last ones serves the start again
    for jid in (ids[0], ids[2]):
        assert client.delete(f"/v1/persons/{u}/judgments/{jid}", headers=h).status_code == 200
    prof = client.get(f"/v1/persons/{u}", headers=h).json()
    assert prof["source"] == "trained" and np.allclose(prof["posterior"]["mean"], model.posterior(u).mean)


def test_undoing_a_rating_recomputes_the_comparisons_it_made(client: TestClient, model) -> None:
    h = key_for(client, "rater")

    def rate(resp: str, value: float) -> int:
        return send(
            client, "rater", h, {"kind": "rating", "prompt": PROMPT, "response": resp, "rating": value}
        )

    rate("answer A", 1.0)
    mid = rate("answer B", 3.0)
    rate("answer C", 2.0)
    assert client.delete(f"/v1/persons/rater/judgments/{mid}", headers=h).status_code == 200
    # left: A rated 1 and C rated 2, i.e. one comparison C > A (B's comparisons went with it)
    want = fold(model, model.prior(), "rater", [("answer C", "answer A")])
    got = stored_posterior(client, "rater")
    assert got["n"] == 1 and np.allclose(got["mean"], want.mean, atol=1e-8)


def test_reset_serves_the_population_even_to_a_trained_person(client: TestClient, model) -> None:
    u = sorted(model.user_units_)[1]
    h = key_for(client, u)
    send(client, u, h, comparison("one", "two"))
    r = client.post(f"/v1/persons/{u}/reset", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["deleted_judgments"] == 1 and r.json()["starts_from"] == "prior"
    prof = client.get(f"/v1/persons/{u}", headers=h).json()
    assert prof["source"] == "prior" and prof["trained"] is True and prof["starts_from"] == "prior"
    assert prof["n_judgments"] == 0 and np.allclose(prof["posterior"]["mean"], model.prior().mean)
    sc = client.post(f"/v1/persons/{u}/score", headers=h, json={"prompt": PROMPT, "candidates": ["x", "y z"]})
    assert sc.json()["personalized"] is False
    assert np.allclose(sc.json()["rewards"], sc.json()["population_rewards"])
    # feedback after the reset folds onto the prior, and so does an undo
    send(client, u, h, comparison("three", "four"))
    jid = send(client, u, h, comparison("five", "six"))
    client.delete(f"/v1/persons/{u}/judgments/{jid}", headers=h)
    want = fold(model, model.prior(), u, [("three", "four")])
    assert np.allclose(stored_posterior(client, u)["mean"], want.mean, atol=1e-8)
    assert client.get(f"/v1/persons/{u}/judgments", headers=h).json()["total"] == 1  # key still works
    # deleting the person removes the reset as well: the learned posterior is back
    assert client.delete(f"/v1/persons/{u}", headers=ADMIN).status_code == 200
    prof = client.get(f"/v1/persons/{u}", headers=ADMIN).json()
    assert prof["source"] == "trained" and np.allclose(prof["posterior"]["mean"], model.posterior(u).mean)


def test_reset_of_nobody_is_404(client: TestClient) -> None:
    assert_error(client.post("/v1/persons/never-seen/reset", headers=ADMIN), 404)


def test_export_holds_everything_but_secrets(client: TestClient, db_path: Path) -> None:
    r = client.post("/v1/persons/exporter/keys", headers=ADMIN, json={"label": "phone"})
    key = r.json()["key"]
    h = {"Authorization": f"Bearer {key}"}
    ids = [send(client, "exporter", h, comparison(f"c{i}", f"r{i}")) for i in range(3)]
    r = client.get("/v1/persons/exporter/export", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"] == 'attachment; filename="personalign-exporter.json"'
    body = r.json()
    assert body["person_id"] == "exporter" and [j["id"] for j in body["judgments"]] == ids
    assert body["profile"]["n_judgments"] == 3 and body["stored"]["n_judgments"] == 3
    assert len(body["stored"]["posterior"]["mean"]) == 4
    assert [k["label"] for k in body["keys"]] == ["phone"]
    with sdb.make_engine(db_path, pool_size=1).connect() as conn:
        key_hash = conn.execute(select(sdb.api_keys.c.key_hash)).scalars().all()
    assert key not in r.text and not any(kh in r.text for kh in key_hash)


def test_migration_adds_the_reset_column_to_an_old_database(tmp_path: Path) -> None:
    engine = sdb.make_engine(tmp_path / "old.db", pool_size=1)
    sdb.migrate(engine)
    with engine.begin() as conn:  # turn it into a version-1 database
        conn.execute(text("ALTER TABLE persons DROP COLUMN start_from"))
        conn.execute(text("DROP TABLE served_model"))
        conn.execute(text("DELETE FROM schema_version WHERE version >= 2"))
    assert sdb.migrate(engine) == sdb.SCHEMA_VERSION == 3
    with engine.connect() as conn:
        assert "start_from" in {c["name"] for c in inspect(conn).get_columns("persons")}
        assert "served_model" in inspect(conn).get_table_names()
    assert sdb.migrate(engine) == 3  # idempotent
    engine.dispose()
