"""Bad inputs found by fuzzing the service (issue 18): each is refused with a 422 JSON error, nothing is stored, and
a person whose stored data predates a check (a NULL rating) still reads. In-process app via FastAPI TestClient."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from personalign.serve import db as sdb
from personalign.serve.app import create_app
from personalign.serve.service import ServeConfig

PROMPT = "How should I start learning to cook?"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from personalign.experiments.models import train_small_model

    return train_small_model(tmp_path_factory.mktemp("fuzz-model") / "m", rank=4, seed=0)


@pytest.fixture(scope="module")
def app_client(model_dir: Path, tmp_path_factory) -> Iterator[tuple[TestClient, dict, str]]:
    """(client, admin headers, database url) of an app on a fresh SQLite file."""
    admin = secrets.token_urlsafe(16)
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz-db') / 'serve.db'}"
    app = create_app(ServeConfig(model_dir=str(model_dir), db_url=url, admin_keys=[admin]))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, {"Authorization": f"Bearer {admin}"}, url


def post_raw(c: TestClient, path: str, body: str, h: dict):
    """POST a literal JSON text (so NaN/Infinity reach the server exactly as a fuzzer sends them)."""
    return c.post(path, content=body.encode(), headers={**h, "content-type": "application/json"})


def assert_422(r) -> dict:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"]["status"] == 422 and body["error"]["code"] == "validation_error"
    return body


def n_judgments(url: str, person_id: str) -> int:
    eng = sdb.make_engine(url)
    try:
        with eng.connect() as conn:
            j = sdb.judgments
            return conn.execute(
                select(func.count()).select_from(j).where(j.c.person_id == person_id)
            ).scalar()
    finally:
        eng.dispose()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("field", ["rating", "weight"])
def test_non_finite_numbers_refused(app_client, number: str, field: str) -> None:
    c, h, url = app_client
    values = {"rating": "1", "weight": "1", field: number}
    body = f'{{"kind":"rating","prompt":"p","response":"r","rating":{values["rating"]},"weight":{values["weight"]}}}'
    err = assert_422(post_raw(c, "/v1/persons/nan1/feedback", body, h))
    assert any(d["loc"][-1] == field for d in err["error"]["detail"])
    cmp_body = f'{{"kind":"comparison","prompt":"p","chosen":"a","rejected":"b","weight":{number}}}'
    assert_422(post_raw(c, "/v1/persons/nan1/feedback", cmp_body, h))
    assert n_judgments(url, "nan1") == 0
    assert c.get("/v1/persons/nan1", headers=h).status_code == 200


def test_boolean_rating_refused_numbers_accepted(app_client) -> None:
    c, h, url = app_client
    for bad in ("false", "true", '"3"'):
        body = f'{{"kind":"rating","prompt":"p","response":"r","rating":{bad}}}'
        assert_422(post_raw(c, "/v1/persons/boolr/feedback", body, h))
    assert_422(
        post_raw(
            c,
            "/v1/persons/boolr/feedback",
            '{"kind":"comparison","chosen":"a","rejected":"b","weight":true}',
            h,
        )
    )
    assert n_judgments(url, "boolr") == 0
    # ints and floats are still numbers
    for i, good in enumerate(("3", "4.5")):
        body = f'{{"kind":"rating","prompt":"p","response":"r{i}","rating":{good}}}'
        r = post_raw(c, "/v1/persons/boolr/feedback", body, h)
        assert r.status_code == 200, r.text
    assert r.json()["pairs_folded"] == 1 and n_judgments(url, "boolr") == 2


def test_null_rating_stored_before_is_skipped(app_client) -> None:
    """A NaN rating accepted by an older version was stored as NULL; reads, replays and later ratings skip it."""
    c, h, url = app_client
    eng = sdb.make_engine(url)
    with sdb.write_tx(eng) as conn:
        sdb.ensure_person(conn, "legacy")
        conn.execute(
            sdb.judgments.insert().values(
                person_id="legacy", kind="rating", prompt=PROMPT, response="old", rating=None, weight=1.0,
                created_at=sdb.now(),
            )
        )  # fmt: skip
    eng.dispose()
    r = c.get("/v1/persons/legacy", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["n_ratings"] == 1
    # a new rating of the same prompt has nothing usable to compare with, so it folds nothing (and does not fail)
    body = {"kind": "rating", "prompt": PROMPT, "response": "new", "rating": 3}
    r = c.post("/v1/persons/legacy/feedback", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["pairs_folded"] == 0
    r = c.post("/v1/persons/legacy/feedback", json={**body, "response": "newer", "rating": 1}, headers=h)
    assert r.status_code == 200 and r.json()["pairs_folded"] == 1  # only the finite earlier rating
    assert c.get("/v1/persons/legacy", headers=h).status_code == 200


@pytest.mark.parametrize(
    "query",
    ["offset=1180591620717411303424", "offset=-1", "limit=0", "limit=-5", "limit=1180591620717411303424",
     "limit=100000", "offset=abc"],
)  # fmt: skip
def test_pagination_bounded(app_client, query: str) -> None:
    c, h, _ = app_client
    assert_422(c.get(f"/v1/persons?{query}", headers=h))


def test_pagination_in_range(app_client) -> None:
    c, h, _ = app_client
    assert c.post("/v1/persons/page-a/keys", headers=h).status_code == 201
    r = c.get(f"/v1/persons?offset={2**62}&limit=10000", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["persons"] == []
    listed = c.get("/v1/persons?offset=0&limit=1000", headers=h).json()["persons"]
    assert "page-a" in [p["person_id"] for p in listed]


def test_empty_request_id_refused(app_client) -> None:
    c, h, url = app_client
    body = {"kind": "comparison", "prompt": PROMPT, "chosen": "a", "rejected": "b", "request_id": ""}
    assert_422(c.post("/v1/persons/rid1/feedback", json=body, headers=h))
    assert_422(c.post("/v1/persons/rid2/feedback", json=body, headers=h))
    assert n_judgments(url, "rid1") == n_judgments(url, "rid2") == 0
    ok = c.post("/v1/persons/rid1/feedback", json={**body, "request_id": "x"}, headers=h)
    again = c.post("/v1/persons/rid1/feedback", json={**body, "request_id": "x"}, headers=h)
    assert ok.status_code == again.status_code == 200 and again.json()["duplicate"] is True


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/persons/nul/feedback", {"kind": "comparison", "prompt": "p\u0000", "chosen": "a", "rejected": "b"}),
        ("/v1/persons/nul/feedback", {"kind": "comparison", "chosen": "a\u0000b", "rejected": "b"}),
        ("/v1/persons/nul/feedback", {"kind": "comparison", "chosen": "a", "rejected": "\u0000"}),
        ("/v1/persons/nul/feedback", {"kind": "comparison", "chosen": "a", "rejected": "b", "request_id": "\u0000"}),
        ("/v1/persons/nul/feedback", {"kind": "rating", "response": "r\u0000", "rating": 1}),
        ("/v1/persons/nul/score", {"prompt": "\u0000", "candidates": ["a"]}),
        ("/v1/persons/nul/rank", {"candidates": ["a", "b\u0000"]}),
        ("/v1/persons/nul/suggest", {"pairs": [{"a": "x\u0000", "b": "y"}]}),
        ("/v1/persons/nul/keys", {"label": "\u0000"}),
        ("/v1/admin/model/reload", {"model_dir": "/tmp/\u0000"}),
    ],
)  # fmt: skip
def test_nul_characters_refused(app_client, path: str, body: dict) -> None:
    c, h, url = app_client
    assert_422(c.post(path, json=body, headers=h))
    assert n_judgments(url, "nul") == 0


def test_nul_in_key_id_refused(app_client) -> None:
    c, h, _ = app_client
    assert_422(c.delete("/v1/keys/ab%00cd", headers=h))


def test_feedback_kind_required_as_documented(app_client) -> None:
    c, h, url = app_client
    schemas = c.get("/openapi.json").json()["components"]["schemas"]
    for name, kind in (("ComparisonFeedback", "comparison"), ("RatingFeedback", "rating")):
        assert "kind" in schemas[name]["required"], name
        assert "default" not in schemas[name]["properties"]["kind"]
        assert schemas[name]["properties"]["kind"]["const"] == kind
    no_kind = {"prompt": PROMPT, "chosen": "a", "rejected": "b"}
    assert_422(c.post("/v1/persons/kindless/feedback", json=no_kind, headers=h))
    assert n_judgments(url, "kindless") == 0
    r = c.post("/v1/persons/kindless/feedback", json={**no_kind, "kind": "comparison"}, headers=h)
    assert r.status_code == 200, r.text
