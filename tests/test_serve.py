"""The personalization service, tested over HTTP against the real server (uvicorn in a subprocess on loopback).

Runs on SQLite; when PERSONALIGN_TEST_PG_URL is set (e.g. ``export PERSONALIGN_TEST_PG_URL=$(scripts/start_postgres.sh)``)
every test also runs against PostgreSQL (a fresh database per module, dropped afterwards).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, text

from personalign.models import Posterior, load_model
from personalign.serve import db as sdb
from personalign.serve.launch import ServerProcess
from personalign.serve.schemas import MAX_CANDIDATES, MAX_TEXT_CHARS

PG_URL = os.environ.get("PERSONALIGN_TEST_PG_URL")
PROMPT = "How should I start learning to cook?"
TEXTS = [
    "Start with eggs.",
    "Begin with a few simple dishes you like, such as pasta, eggs and soup; learn knife skills and taste as you go.",
    "Just cook!",
    "Pick three recipes, buy a good knife, and practise each recipe weekly, noting what you change each time.",
    "Cooking is chemistry: read about the Maillard reaction, emulsions and gluten before touching a pan.",
    "Watch videos.",
    "Honestly, order takeout and skip the hassle.",
    "Take a class at a community kitchen; you will learn faster with a teacher correcting your technique.",
]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def serve_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def model_dir(serve_tmp: Path) -> Path:
    """A real LowRankBT (rank 4) trained on a small synthetic population with hashing features."""
    from personalign.experiments.models import train_small_model

    return train_small_model(serve_tmp / "model-a", rank=4, seed=0)


@pytest.fixture(scope="session")
def model_dir_b(serve_tmp: Path) -> Path:
    """A second, different model (rank 3, another seed) for hot reload."""
    from personalign.experiments.models import train_small_model

    return train_small_model(serve_tmp / "model-b", rank=3, seed=1)


@contextlib.contextmanager
def fresh_db(kind: str, tmp: Path) -> Iterator[str]:
    """A new empty database: a SQLite file, or a PostgreSQL database created (and dropped) on the test server."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'serve-{uuid.uuid4().hex[:8]}.db'}"
        return
    if not PG_URL:
        pytest.skip(
            "PERSONALIGN_TEST_PG_URL is not set (scripts/start_postgres.sh starts a local PostgreSQL)"
        )
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"pa_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(sdb.normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(sdb.normalize_url(PG_URL)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Srv:
    def __init__(self, proc: ServerProcess, db_url: str, admin: str, model_dir: Path) -> None:
        self.proc, self.db_url, self.admin, self.model_dir = proc, db_url, admin, model_dir
        self.admin_h = {"Authorization": f"Bearer {admin}"}
        self._engine = None

    @property
    def url(self) -> str:
        return self.proc.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)

    def engine(self):
        if self._engine is None:
            self._engine = sdb.make_engine(self.db_url, pool_size=2)
        return self._engine

    def person_key(self, person: str) -> dict[str, str]:
        with self.client() as c:
            r = c.post(f"/v1/persons/{person}/keys", headers=self.admin_h, json={})
            assert r.status_code == 201, r.text
            return {"Authorization": f"Bearer {r.json()['key']}"}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def start_server(model: Path, db_url: str, cache: Path) -> tuple[ServerProcess, str]:
    admin = "adm-" + secrets.token_hex(16)
    proc = ServerProcess(model, db_url, admin, env={"PERSONALIGN_CACHE": str(cache)}).start()
    return proc, admin


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def srv(db_kind: str, model_dir: Path, serve_tmp: Path) -> Iterator[Srv]:
    with fresh_db(db_kind, serve_tmp) as url:
        proc, admin = start_server(model_dir, url, serve_tmp / "cache")
        s = Srv(proc, url, admin, model_dir)
        try:
            yield s
        finally:
            s.close()
            proc.stop()


@pytest.fixture(scope="module")
def local_model(model_dir: Path):
    return load_model(model_dir)


def comparison(chosen: str, rejected: str, prompt: str = PROMPT, **kw) -> dict:
    return {"kind": "comparison", "prompt": prompt, "chosen": chosen, "rejected": rejected, **kw}


def assert_json_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"]["status"] == status and body["error"]["code"] and body["error"]["message"]
    return body


# ------------------------------------------------------------------------------------------------ basics
def test_health_and_openapi(srv: Srv) -> None:
    with srv.client() as c:
        h = c.get("/v1/health")
        assert h.status_code == 200 and h.json()["status"] == "ok"
        spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    for p in (
        "/v1/persons/{person_id}/feedback", "/v1/persons/{person_id}/score", "/v1/persons/{person_id}/rank",
        "/v1/persons/{person_id}", "/v1/persons/{person_id}/suggest", "/v1/health", "/v1/metrics",
        "/v1/admin/model/reload",
    ):  # fmt: skip
        assert p in paths, p
    assert "delete" in paths["/v1/persons/{person_id}"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


def test_auth_401_and_403(srv: Srv) -> None:
    ka, kb = srv.person_key("auth-a"), srv.person_key("auth-b")
    body = {"prompt": PROMPT, "candidates": TEXTS[:3]}
    with srv.client() as c:
        # no key, an unknown key, a malformed key: 401 with a JSON body
        r = c.post("/v1/persons/auth-a/score", json=body)
        assert_json_error(r, 401)
        assert r.headers.get("www-authenticate") == "Bearer"
        assert_json_error(c.post("/v1/persons/auth-a/score", json=body, headers={"X-API-Key": "nope"}), 401)
        forged = "pa_" + ka["Authorization"].split("_")[1] + "_" + "x" * 43
        assert_json_error(
            c.post("/v1/persons/auth-a/score", json=body, headers={"Authorization": f"Bearer {forged}"}), 401
        )
        # own person: allowed, with either header form
        assert c.post("/v1/persons/auth-a/score", json=body, headers=ka).status_code == 200
        xk = {"X-API-Key": ka["Authorization"].split(" ", 1)[1]}
        assert c.get("/v1/persons/auth-a", headers=xk).status_code == 200
        # another person: 403 on every person endpoint, and nothing changes for b
        assert (
            c.post("/v1/persons/auth-b/feedback", json=comparison(TEXTS[0], TEXTS[1]), headers=kb).status_code
            == 200
        )
        before = c.get("/v1/persons/auth-b", headers=kb).json()
        attempts = [
            ("POST", "/v1/persons/auth-b/score", body),
            ("POST", "/v1/persons/auth-b/rank", body),
            ("POST", "/v1/persons/auth-b/feedback", comparison(TEXTS[1], TEXTS[0])),
            (
                "POST",
                "/v1/persons/auth-b/suggest",
                {"pairs": [{"prompt": PROMPT, "a": TEXTS[0], "b": TEXTS[1]}]},
            ),
            ("GET", "/v1/persons/auth-b", None),
            ("DELETE", "/v1/persons/auth-b", None),
        ]
        for method, path, js in attempts:
            assert_json_error(c.request(method, path, json=js, headers=ka), 403)
        after = c.get("/v1/persons/auth-b", headers=kb).json()
        assert after["n_judgments"] == before["n_judgments"] == 1
        assert after["posterior"] == before["posterior"]
        # admin operations need an admin key
        for method, path, js in [
            ("GET", "/v1/metrics", None),
            ("GET", "/v1/persons", None),
            ("POST", "/v1/persons/auth-a/keys", {}),
            ("POST", "/v1/admin/model/reload", {}),
        ]:
            assert_json_error(c.request(method, path, json=js, headers=ka), 403)
            assert_json_error(c.request(method, path, json=js), 401)
        # the admin reaches every person
        assert c.get("/v1/persons/auth-b", headers=srv.admin_h).status_code == 200
    with srv.engine().connect() as conn:  # only hashes are stored
        stored = conn.execute(select(sdb.api_keys.c.key_hash)).scalars().all()
    raw = ka["Authorization"].split(" ", 1)[1]
    assert raw not in stored and all(len(h) == 64 for h in stored)


def test_limits_and_json_errors(srv: Srv, model_dir: Path) -> None:
    k = srv.person_key("lim")
    with srv.client() as c:
        too_many = {"prompt": PROMPT, "candidates": ["x"] * (MAX_CANDIDATES + 1)}
        body = assert_json_error(c.post("/v1/persons/lim/score", json=too_many, headers=k), 422)
        assert any("candidates" in map(str, e["loc"]) for e in body["error"]["detail"])
        too_long = {"prompt": PROMPT, "candidates": ["y" * (MAX_TEXT_CHARS + 1)]}
        assert_json_error(c.post("/v1/persons/lim/score", json=too_long, headers=k), 422)
        assert_json_error(
            c.post("/v1/persons/lim/score", json={"prompt": PROMPT, "candidates": []}, headers=k), 422
        )
        extra = {"prompt": PROMPT, "candidates": ["a"], "surprise": 1}
        assert_json_error(c.post("/v1/persons/lim/score", json=extra, headers=k), 422)
        bad_kind = {"kind": "vote", "prompt": PROMPT, "response": "a"}
        assert_json_error(c.post("/v1/persons/lim/feedback", json=bad_kind, headers=k), 422)
        assert_json_error(c.post("/v1/persons/lim/feedback", json=comparison("", "b"), headers=k), 422)
        # body over the byte limit: 413 by Content-Length, and while streaming a chunked body
        huge = json.dumps({"prompt": PROMPT, "candidates": ["z" * 7000] * 100})
        assert_json_error(
            c.post("/v1/persons/lim/score", content=huge, headers={**k, "content-type": "application/json"}),
            413,
        )

        def chunks():
            for _ in range(100):
                yield b"z" * 8192

        r = c.post(
            "/v1/persons/lim/score", content=chunks(), headers={**k, "content-type": "application/json"}
        )
        assert_json_error(r, 413)
        # malformed JSON, unknown path, wrong method, bad person id: JSON bodies too
        r = c.post(
            "/v1/persons/lim/score", content=b"{not json", headers={**k, "content-type": "application/json"}
        )
        assert_json_error(r, 422)
        assert_json_error(c.get("/v1/nothing-here", headers=k), 404)
        assert_json_error(c.put("/v1/persons/lim/score", json={}, headers=k), 405)
        assert_json_error(c.get("/v1/persons/bad%20id!", headers=srv.admin_h), 422)
        # a model error on valid input becomes a JSON error as well (reload of a directory that is no model)
        missing = str(model_dir.parent / "no-such-model")
        r = c.post("/v1/admin/model/reload", json={"model_dir": missing}, headers=srv.admin_h)
        assert_json_error(r, 400)
        # and a directory outside the model root is refused before anything is read
        r = c.post("/v1/admin/model/reload", json={"model_dir": "/nonexistent/model"}, headers=srv.admin_h)
        assert_json_error(r, 403)
        # the service still works after all of that
        assert (
            c.post(
                "/v1/persons/lim/score", json={"prompt": PROMPT, "candidates": ["a"]}, headers=k
            ).status_code
            == 200
        )


# ------------------------------------------------------------------------------------------------ behaviour
def fold_locally(model, rows: list[dict], person: str) -> Posterior:
    """The posterior from the prior and these comparisons, one at a time, with the model's own update()."""
    post = model.prior()
    for r in rows:
        df = pd.DataFrame(
            [{"user_id": person, "prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
              "tie": bool(r["tie"]), "weight": float(r["weight"])}]
        )  # fmt: skip
        post = model.update(post, df)
    return post


def stored(srv: Srv, person: str) -> tuple[list[dict], dict | None]:
    j, p = sdb.judgments, sdb.persons
    with srv.engine().connect() as conn:
        rows = [
            dict(r._mapping) for r in conn.execute(select(j).where(j.c.person_id == person).order_by(j.c.id))
        ]
        prow = conn.execute(select(p).where(p.c.person_id == person)).first()
    return rows, dict(prow._mapping) if prow else None


def test_feedback_personalizes_scores(srv: Srv, local_model) -> None:
    ka, kb = srv.person_key("long-lover"), srv.person_key("short-lover")
    by_len = sorted(TEXTS, key=len)
    short, long_ = by_len[:4], by_len[4:]
    cands = {"prompt": PROMPT, "candidates": TEXTS}
    with srv.client() as c:
        r0 = c.post("/v1/persons/long-lover/score", json=cands, headers=ka).json()
        assert r0["personalized"] is False
        np.testing.assert_allclose(r0["rewards"], r0["population_rewards"])
        for i in range(4):
            for lg in long_:
                assert (
                    c.post(
                        "/v1/persons/long-lover/feedback", json=comparison(lg, short[i]), headers=ka
                    ).status_code
                    == 200
                )
                r = c.post("/v1/persons/short-lover/feedback", json=comparison(short[i], lg), headers=kb)
                assert r.status_code == 200
        assert r.json()["n_judgments"] == 16 and r.json()["n_folded"] == 16 and r.json()["pairs_folded"] == 1
        sa = np.asarray(c.post("/v1/persons/long-lover/score", json=cands, headers=ka).json()["rewards"])
        sb = np.asarray(c.post("/v1/persons/short-lover/score", json=cands, headers=kb).json()["rewards"])
        prof = c.get("/v1/persons/long-lover", headers=ka).json()
    lengths = np.asarray([len(t) for t in TEXTS], float)
    pop = np.asarray(r0["population_rewards"])
    # each person's deviation from the population follows what they said, in opposite directions
    assert np.corrcoef(lengths, sa - pop)[0, 1] > 0.3
    assert np.corrcoef(lengths, sb - pop)[0, 1] < -0.3
    assert np.corrcoef(lengths, sa - sb)[0, 1] > 0.5
    # the stored posterior is exactly the model's own online folding of the stored judgments
    rows, prow = stored(srv, "long-lover")
    assert len(rows) == 16 == prow["n_judgments"] == prof["n_judgments"] == prof["n_comparisons"]
    post = Posterior.from_dict(json.loads(prow["posterior"]))
    ref = fold_locally(local_model, rows, "long-lover")
    np.testing.assert_allclose(post.mean, ref.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(post.cov, ref.cov, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sa, local_model.score_posterior(ref, PROMPT, TEXTS), rtol=1e-6, atol=1e-9)
    # uncertainty shrank from the prior's
    assert prof["posterior"]["cov_trace"] < prof["posterior"]["prior_cov_trace"]
    assert prof["posterior"]["n_folded"] == 16 and prof["posterior"]["k"] == 4


def test_ratings_become_comparisons(srv: Srv, local_model) -> None:
    k = srv.person_key("rater")
    with srv.client() as c:

        def rate(resp, rating, prompt=PROMPT):
            r = c.post("/v1/persons/rater/feedback", headers=k,
                       json={"kind": "rating", "prompt": prompt, "response": resp, "rating": rating})  # fmt: skip
            assert r.status_code == 200, r.text
            return r.json()

        assert rate(TEXTS[0], 1)["pairs_folded"] == 0  # nothing to compare with yet
        assert rate(TEXTS[1], 5)["pairs_folded"] == 1
        assert rate(TEXTS[2], 5)["pairs_folded"] == 1  # equal to TEXTS[1]: no pair with it
        assert rate(TEXTS[3], 3, prompt="another prompt")["pairs_folded"] == 0
        out = rate(TEXTS[4], 2)
        assert out["pairs_folded"] == 3 and out["n_folded"] == 5 and out["n_judgments"] == 5
    rows, prow = stored(srv, "rater")
    pairs = [
        (TEXTS[1], TEXTS[0]),
        (TEXTS[2], TEXTS[0]),
        (TEXTS[4], TEXTS[0]),
        (TEXTS[1], TEXTS[4]),
        (TEXTS[2], TEXTS[4]),
    ]
    post = local_model.prior()
    for group in (pairs[:1], pairs[1:2], pairs[2:]):  # folded per judgment, as the service does
        post = local_model.update(
            post, pd.DataFrame([{"user_id": "rater", "prompt": PROMPT, "chosen": a, "rejected": b, "tie": False,
                                 "weight": 1.0} for a, b in group])
        )  # fmt: skip
    got = Posterior.from_dict(json.loads(prow["posterior"]))
    np.testing.assert_allclose(got.mean, post.mean, rtol=1e-6, atol=1e-9)


def test_rank_suggest_metrics(srv: Srv, local_model) -> None:
    k = srv.person_key("ranker")
    with srv.client() as c:
        for a, b in [(TEXTS[3], TEXTS[0]), (TEXTS[7], TEXTS[5])]:
            assert c.post("/v1/persons/ranker/feedback", json=comparison(a, b), headers=k).status_code == 200
        sc = c.post(
            "/v1/persons/ranker/score", json={"prompt": PROMPT, "candidates": TEXTS}, headers=k
        ).json()
        rk = c.post("/v1/persons/ranker/rank", json={"prompt": PROMPT, "candidates": TEXTS}, headers=k).json()
        best = c.post(
            "/v1/persons/ranker/rank", json={"prompt": PROMPT, "candidates": TEXTS, "top_k": 1}, headers=k
        )
        pairs = [{"prompt": PROMPT, "a": TEXTS[i], "b": TEXTS[j]} for i in range(4) for j in range(4, 8)]
        sg = c.post("/v1/persons/ranker/suggest", json={"pairs": pairs}, headers=k).json()
        m = c.get("/v1/metrics", headers=srv.admin_h).json()
    rewards = np.asarray(sc["rewards"])
    assert [x["index"] for x in rk["ranking"]] == list(np.argsort(-rewards, kind="stable"))
    assert rk["best"]["index"] == int(np.argmax(rewards)) and rk["bounded"] is False
    assert len(best.json()["ranking"]) == 1 and best.json()["best"]["index"] == int(np.argmax(rewards))
    # the suggested question is the model's own choice for this posterior
    _, prow = stored(srv, "ranker")
    post = Posterior.from_dict(json.loads(prow["posterior"]))
    cand = pd.DataFrame({"prompt": [p["prompt"] for p in pairs], "chosen": [p["a"] for p in pairs],
                         "rejected": [p["b"] for p in pairs]})  # fmt: skip
    assert sg["index"] == local_model.suggest_query(post, cand)
    assert sg["pair"] == pairs[sg["index"]]
    # metrics: counts by route, latency percentiles, model version
    score_route = m["requests"]["POST /v1/persons/{person_id}/score"]
    assert score_route["count"] >= 1 and score_route["latency_ms"]["p99"] > 0
    assert m["model_version"] == sc["model_version"] and m["database"]["judgments"] >= 2


def test_request_id_is_idempotent(srv: Srv) -> None:
    k = srv.person_key("retry")
    with srv.client() as c:
        first = c.post(
            "/v1/persons/retry/feedback", json=comparison(TEXTS[1], TEXTS[0], request_id="r-1"), headers=k
        )
        again = c.post(
            "/v1/persons/retry/feedback", json=comparison(TEXTS[1], TEXTS[0], request_id="r-1"), headers=k
        )
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    assert again.json()["judgment_id"] == first.json()["judgment_id"]
    rows, prow = stored(srv, "retry")
    assert len(rows) == 1 and prow["n_judgments"] == 1


def test_delete_person_removes_everything(srv: Srv) -> None:
    kd, kk = srv.person_key("doomed"), srv.person_key("keeper")
    srv.person_key("doomed")  # a second key for the same person
    with srv.client() as c:
        for i in range(3):
            assert (
                c.post(
                    "/v1/persons/doomed/feedback", json=comparison(TEXTS[i], TEXTS[i + 1]), headers=kd
                ).status_code
                == 200
            )
        c.post("/v1/persons/doomed/feedback", headers=kd,
               json={"kind": "rating", "prompt": PROMPT, "response": TEXTS[5], "rating": 2})  # fmt: skip
        assert (
            c.post("/v1/persons/keeper/feedback", json=comparison(TEXTS[0], TEXTS[1]), headers=kk).status_code
            == 200
        )
        r = c.delete("/v1/persons/doomed", headers=srv.admin_h)
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] == {"judgments": 4, "keys": 2, "persons": 1}
        # the person's keys no longer work; deleting again: 404
        assert_json_error(c.get("/v1/persons/doomed", headers=kd), 401)
        assert_json_error(c.delete("/v1/persons/doomed", headers=srv.admin_h), 404)
        # a person may erase themselves too
        assert c.delete("/v1/persons/keeper", headers=kk).status_code == 200
    with srv.engine().connect() as conn:  # look in the database itself: no row mentions the persons
        for person in ("doomed", "keeper"):
            for table in (sdb.judgments, sdb.persons, sdb.api_keys):
                n = conn.execute(
                    select(func.count()).select_from(table).where(table.c.person_id == person)
                ).scalar()
                assert n == 0, (table.name, person)
            for col in (sdb.judgments.c.chosen, sdb.judgments.c.response):
                assert (
                    conn.execute(
                        select(func.count()).where(col == TEXTS[5]).where(sdb.judgments.c.person_id == person)
                    ).scalar()
                    == 0
                )


def test_concurrent_feedback_for_one_person_loses_nothing(srv: Srv, local_model) -> None:
    k = srv.person_key("popular")
    n_threads, per_thread = 8, 10
    rng = np.random.default_rng(0)
    plan = [
        [tuple(rng.choice(len(TEXTS), 2, replace=False)) for _ in range(per_thread)] for _ in range(n_threads)
    ]
    errors: list[str] = []
    barrier = threading.Barrier(n_threads)

    def client(pairs) -> None:
        with srv.client() as c:
            barrier.wait()
            for a, b in pairs:
                r = c.post("/v1/persons/popular/feedback", json=comparison(TEXTS[a], TEXTS[b]), headers=k)
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=client, args=(p,)) for p in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows, prow = stored(srv, "popular")
    total = n_threads * per_thread
    assert len(rows) == total == prow["n_judgments"]
    post = Posterior.from_dict(json.loads(prow["posterior"]))
    assert post.n == total
    # every update was folded in, in the order the judgments were stored
    ref = fold_locally(local_model, rows, "popular")
    np.testing.assert_allclose(post.mean, ref.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(post.cov, ref.cov, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------------ crashes, reloads
def test_kill9_keeps_every_acknowledged_judgment(srv: Srv) -> None:
    """SIGKILL the server while clients post feedback; restart it on the same database: every judgment that
    was acknowledged is there, and each person's stored posterior counts exactly their stored judgments."""
    persons = ["k9-a", "k9-b", "k9-c"]
    keys = {p: srv.person_key(p) for p in persons}
    acked: list[tuple[str, int, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        i = 0
        with srv.client() as c:
            while not stop.is_set():
                p = persons[(worker + i) % len(persons)]
                rid = f"w{worker}-{i}"
                try:
                    r = c.post(f"/v1/persons/{p}/feedback", headers=keys[p],
                               json=comparison(TEXTS[i % 8], TEXTS[(i + 3) % 8], request_id=rid))  # fmt: skip
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append((p, r.json()["judgment_id"], rid))
                i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.proc.kill()  # SIGKILL mid-load: requests in flight, no shutdown hooks
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 60
    srv.close()
    srv.proc.start()  # restart on the same database (a new port; Srv follows it)
    j, pt = sdb.judgments, sdb.persons
    with srv.engine().connect() as conn:
        got = {
            (r.person_id, r.id): r.request_id
            for r in conn.execute(select(j.c.person_id, j.c.id, j.c.request_id))
        }
        per_person = dict(conn.execute(select(j.c.person_id, func.count()).group_by(j.c.person_id)).all())
        prow = {r.person_id: r for r in conn.execute(select(pt))}
    missing = [a for a in acked if got.get((a[0], a[1])) != a[2]]
    assert not missing, f"{len(missing)} acknowledged judgments lost, e.g. {missing[:3]}"
    print(f"kill -9 ({srv.db_url.split(':')[0]}): {len(acked)} acknowledged, {len(missing)} lost")
    # judgment rows and the posterior were committed together: counts agree for every person
    for p in persons:
        assert prow[p].n_judgments == per_person.get(p, 0) >= len([a for a in acked if a[0] == p])
        assert Posterior.from_dict(json.loads(prow[p].posterior)).n == per_person[p]
    with srv.client() as c:  # the restarted service serves them (and the old keys still work)
        prof = c.get("/v1/persons/k9-a", headers=keys["k9-a"]).json()
        assert prof["n_judgments"] == per_person["k9-a"]


def test_hot_reload_without_stopping(srv: Srv, model_dir: Path, model_dir_b: Path) -> None:
    model_b = load_model(model_dir_b)
    k = srv.person_key("reloaded")
    with srv.client() as c:
        for a, b in [(1, 0), (3, 2), (7, 6)]:
            assert (
                c.post(
                    "/v1/persons/reloaded/feedback", json=comparison(TEXTS[a], TEXTS[b]), headers=k
                ).status_code
                == 200
            )
        v_old = c.get("/v1/health").json()["model_version"]
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        with srv.client() as c:
            while not stop.is_set():
                r = c.post(
                    "/v1/persons/reloaded/score", json={"prompt": PROMPT, "candidates": TEXTS}, headers=k
                )
                seen.append((r.status_code, r.json().get("model_version")))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.3)
        with srv.client() as c:
            r = c.post("/v1/admin/model/reload", json={"model_dir": str(model_dir_b)}, headers=srv.admin_h)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join()
    try:
        assert r.status_code == 200, r.text
        v_new = r.json()["model_version"]
        assert r.json()["previous_version"] == v_old != v_new
        # no request failed; the versions switch once, old then new
        assert all(s == 200 for s, _ in seen)
        versions = [v for _, v in seen]
        assert versions[0] == v_old and versions[-1] == v_new
        switch = versions.index(v_new)
        assert set(versions[:switch]) == {v_old} and set(versions[switch:]) == {v_new}
        # the person's posterior now lives in the new model's space, recomputed from the stored judgments
        with srv.client() as c:
            prof = c.get("/v1/persons/reloaded", headers=k).json()
            sc = c.post(
                "/v1/persons/reloaded/score", json={"prompt": PROMPT, "candidates": TEXTS}, headers=k
            ).json()
        assert prof["posterior"]["k"] == 3 and prof["posterior"]["n_folded"] == 3
        rows, _ = stored(srv, "reloaded")
        ref = fold_locally(model_b, rows, "reloaded")
        np.testing.assert_allclose(
            sc["rewards"], model_b.score_posterior(ref, PROMPT, TEXTS), rtol=1e-6, atol=1e-9
        )
    finally:  # back to the first model for whatever runs next on this server
        with srv.client() as c:
            back = c.post("/v1/admin/model/reload", json={"model_dir": str(model_dir)}, headers=srv.admin_h)
        assert back.status_code == 200 and back.json()["model_version"] == v_old


POLICY = """
name: serve-test
constraints:
  - name: no_insults
    scorer: {type: regex, patterns: ['\\bidiot\\b', '\\bstupid\\b']}
    threshold: 0.5
    direction: max
    severity: block
trust_region: {rho: 1.0}
consensus: {enabled: false}
fallback: {mode: refuse, refusal_text: "Sorry, no."}
"""
INSULTS = ["Only an idiot asks that; just cook.", "Stupid question. Take a class."]


def test_policy_bounds_rank_and_report(model_dir: Path, serve_tmp: Path, local_model) -> None:
    """With a policy: constraint report in score, admissible candidates always first in rank (even for a person
    who keeps choosing the insulting ones), refusal when nothing is admissible, monitor state in the profile."""
    from personalign.bounds.bounded import BoundedPolicy

    policy = serve_tmp / "policy.yaml"
    policy.write_text(POLICY)
    with fresh_db("sqlite", serve_tmp) as url:
        admin = "adm-" + secrets.token_hex(16)
        proc = ServerProcess(
            model_dir, url, admin, policy=policy, env={"PERSONALIGN_CACHE": str(serve_tmp / "cache")}
        )
        srv = Srv(proc.start(), url, admin, model_dir)
        try:
            k = srv.person_key("edgy")
            cands = TEXTS[:4] + INSULTS
            with srv.client() as c:
                for ins in INSULTS:  # this person prefers insults, strongly
                    for t in TEXTS[:4]:
                        r = c.post("/v1/persons/edgy/feedback", json=comparison(ins, t), headers=k)
                        assert r.status_code == 200
                sc = c.post(
                    "/v1/persons/edgy/score", json={"prompt": PROMPT, "candidates": cands}, headers=k
                ).json()
                rk = c.post(
                    "/v1/persons/edgy/rank", json={"prompt": PROMPT, "candidates": cands}, headers=k
                ).json()
                bad = c.post(
                    "/v1/persons/edgy/rank", json={"prompt": PROMPT, "candidates": INSULTS}, headers=k
                ).json()
                prof = c.get("/v1/persons/edgy", headers=k).json()
            _, prow = stored(srv, "edgy")
        finally:
            srv.close()
            proc.stop()
    assert sc["constraints"]["admissible"] == [True] * 4 + [False] * 2
    assert sc["constraints"]["detail"][4]["violations"] == ["no_insults"]
    # the personal reward favours insults more than the population does; the bounded order still ranks them last
    dev = np.asarray(sc["rewards"]) - np.asarray(sc["population_rewards"])
    assert dev[4:].mean() > dev[:4].mean()  # the person's own taste moved toward the insults
    assert min(sc["bounded_rewards"][:4]) > max(sc["bounded_rewards"][4:])
    order = [x["index"] for x in rk["ranking"]]
    assert set(order[:4]) == {0, 1, 2, 3} and rk["bounded"] and not rk["refused"]
    assert rk["choice"] == cands[order[0]]
    # the same ranking as the bounds library computes for this posterior
    post = Posterior.from_dict(json.loads(prow["posterior"]))
    ref = BoundedPolicy(local_model, str(policy)).rank(post, PROMPT, cands)
    assert order == [int(i) for i in ref.order]
    np.testing.assert_allclose(
        [x["bounded_reward"] for x in rk["ranking"]], ref.bounded[ref.order], rtol=1e-6
    )
    assert bad["refused"] and bad["choice"] == "Sorry, no." and bad["fallback"]
    # monitors: the trust region (rho = 1) is reported and this person's posterior is outside it
    tr = prof["monitors"]["trust_region"]
    assert tr["rho"] == 1.0 and tr["distance"] == pytest.approx(
        prof["posterior"]["distance_from_prior"], rel=1e-6
    )
    assert prof["monitors"]["lock_in"]["n"] == 8
