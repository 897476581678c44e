"""Group commit of feedback on SQLite, and several workers writing one person.

- In process: while another connection holds SQLite's write lock, judgments queue up; none is acknowledged before
  the lock is released and their transaction commits; then one or two commits serve them all, a refused key or a
  retried request_id inside the batch affects only itself, and the posterior is every stored judgment folded in
  id order.
- Over HTTP: ``--workers 2`` with 16 clients writing the same person, on SQLite and (when
  PERSONALIGN_TEST_PG_URL is set) PostgreSQL: no acknowledged judgment lost, no update lost (the stored posterior
  equals folding the stored judgments in order).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.exceptions import HTTPException

from personalign.models import Posterior, load_model
from personalign.serve import db as sdb
from personalign.serve import schemas
from personalign.serve.launch import ServerProcess
from personalign.serve.service import ServeConfig, Service
from test_serve import TEXTS, comparison, fold_locally, fresh_db


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from personalign.experiments.models import train_small_model

    return train_small_model(tmp_path_factory.mktemp("gc") / "m", rank=3, seed=0, persons=10)


def stored_rows(engine, person: str) -> tuple[list[dict], dict]:
    j, p = sdb.judgments, sdb.persons
    with engine.connect() as conn:
        rows = [
            dict(r._mapping) for r in conn.execute(j.select().where(j.c.person_id == person).order_by(j.c.id))
        ]
        prow = dict(conn.execute(p.select().where(p.c.person_id == person)).first()._mapping)
    return rows, prow


def worker_pids(url: str, seconds: float = 240.0) -> set[int]:
    """The worker processes answering /v1/health (a new connection each time), once two have answered."""
    pids: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(pids) < 2 and time.monotonic() < deadline:
        pids.add(httpx.get(f"{url}/v1/health", timeout=10).json()["worker_pid"])
        time.sleep(0.05)
    return pids


def test_judgments_wait_for_their_commit_and_share_it(model_dir: Path, tmp_path: Path) -> None:
    db_file = tmp_path / "gc.db"
    svc = Service(ServeConfig(model_dir=str(model_dir), db_url=str(db_file), admin_keys=["adm"]))
    try:
        assert svc.committer is not None
        st = svc.holder.current
        blocker = sqlite3.connect(db_file, isolation_level=None, timeout=30)
        blocker.execute("BEGIN IMMEDIATE")  # the database write lock, held by someone else
        jobs = []
        for i in range(12):
            body = schemas.ComparisonFeedback(
                kind="comparison",
                prompt="p",
                chosen=TEXTS[i % 8],
                rejected=TEXTS[(i + 3) % 8],
                request_id="same" if i in (3, 7) else f"r{i}",
            )
            key = "wrong-key" if i == 5 else "adm"
            jobs.append(svc.committer.submit("gc-person", body, st, key))
        time.sleep(0.5)
        assert not any(f.done() for f in jobs)  # nothing acknowledged while its commit cannot happen
        blocker.execute("COMMIT")
        outcomes = []
        for f in jobs:
            try:
                outcomes.append(f.result(timeout=60))
            except HTTPException as exc:
                outcomes.append(exc)
        blocker.close()
        stats = svc.committer.stats()
        assert stats["judgments"] == 12 and stats["batches"] <= 2 and stats["largest_batch"] >= 11
        assert isinstance(outcomes[5], HTTPException) and outcomes[5].status_code == 401
        assert outcomes[7].duplicate and outcomes[7].judgment_id == outcomes[3].judgment_id
        fresh = [o for i, o in enumerate(outcomes) if i not in (5, 7)]
        assert not any(o.duplicate for o in fresh)
        rows, prow = stored_rows(svc.engine, "gc-person")
        assert [r["id"] for r in rows] == sorted(o.judgment_id for o in fresh)
        assert prow["n_judgments"] == len(rows) == 10
        post = Posterior.from_dict(json.loads(prow["posterior"]))
        ref = fold_locally(load_model(model_dir), rows, "gc-person")
        np.testing.assert_allclose(post.mean, ref.mean, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(post.cov, ref.cov, rtol=1e-6, atol=1e-9)
    finally:
        svc.close()
    with pytest.raises(RuntimeError, match="closed"):
        svc.committer.submit("x", None, None, None)


def test_without_group_commit_each_judgment_commits_alone(model_dir: Path, tmp_path: Path) -> None:
    cfg = ServeConfig(model_dir=str(model_dir), db_url=str(tmp_path / "one.db"), group_commit=False)
    svc = Service(cfg)
    try:
        assert svc.committer is None
    finally:
        svc.close()


@pytest.mark.slow  # two worker processes start (each loads the model): about a minute on 2 shared cores
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_workers_one_person_lose_nothing(kind: str, model_dir: Path, tmp_path: Path) -> None:
    n_clients, per_client = 16, 8
    admin = "adm-" + secrets.token_hex(8)
    rng = np.random.default_rng(1)
    plan = [[tuple(rng.choice(8, 2, replace=False)) for _ in range(per_client)] for _ in range(n_clients)]
    acked: list[tuple[int, str]] = []
    errors: list[str] = []
    lock = threading.Lock()
    with fresh_db(kind, tmp_path) as url:
        env = {"PERSONALIGN_CACHE": str(tmp_path / "cache")}
        proc = ServerProcess(model_dir, url, admin, extra_args=["--workers", "2"], env=env, start_timeout=300)
        with proc as srv:
            h = {"Authorization": f"Bearer {admin}"}
            assert len(worker_pids(srv.url)) == 2, "the second worker did not start"
            barrier = threading.Barrier(n_clients)

            def client(w: int) -> None:
                # a connection per request, so uvicorn's workers share the clients between them
                barrier.wait()
                for i, (a, b) in enumerate(plan[w]):
                    rid = f"c{w}-{i}"
                    r = httpx.post(f"{srv.url}/v1/persons/hot/feedback", headers=h, timeout=60,
                                   json=comparison(TEXTS[a], TEXTS[b], request_id=rid))  # fmt: skip
                    with lock:
                        if r.status_code == 200:
                            acked.append((r.json()["judgment_id"], rid))
                        else:
                            errors.append(r.text)

            threads = [threading.Thread(target=client, args=(w,)) for w in range(n_clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            profile = httpx.get(f"{srv.url}/v1/persons/hot", headers=h, timeout=30).json()
        assert not errors, errors[:3]
        engine = sdb.make_engine(url, pool_size=1)
        try:
            rows, prow = stored_rows(engine, "hot")
        finally:
            engine.dispose()
    total = n_clients * per_client
    assert len(acked) == total and {r["id"]: r["request_id"] for r in rows} == dict(acked)
    assert prow["n_judgments"] == total == profile["n_judgments"]
    post = Posterior.from_dict(json.loads(prow["posterior"]))
    assert post.n == total
    ref = fold_locally(load_model(model_dir), rows, "hot")  # every update folded in, in stored order
    np.testing.assert_allclose(post.mean, ref.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(post.cov, ref.cov, rtol=1e-6, atol=1e-9)
