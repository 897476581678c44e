"""Several workers behave as one service.

- An admin reload in one worker publishes the model in the database (``served_model``, a generation that grows by
  one per change); every other worker follows: two Service objects on one SQLite file in process, and over HTTP a
  ``--workers 2`` server whose every worker answers with the reloaded model's version after one reload.
- A worker that starts from the database (as uvicorn's workers and its restarts do) runs the published model, not
  the command line's.
- A published model a worker cannot load leaves it on its model, says so on /v1/metrics and is not retried.
- SQLite writers of every process queue on one ``flock`` (``FILE.writelock``): held for exactly the length of a
  write transaction.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from pathlib import Path

import httpx
import pytest

from personalign.experiments.models import train_small_model
from personalign.serve import db as sdb
from personalign.serve.launch import ServerProcess
from personalign.serve.service import ServeConfig, Service
from personalign.serve.state import model_version
from test_serve import fresh_db


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("follow")
    return {
        "a": train_small_model(root / "a", rank=2, seed=0, persons=10, comparisons_per_person=8),
        "b": train_small_model(root / "b", rank=3, seed=1, persons=10, comparisons_per_person=8),
    }


def _service(model: Path, db_url: str, **kw) -> Service:
    return Service(ServeConfig(model_dir=str(model), db_url=db_url, follow_interval_s=0, **kw))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_reload_in_one_worker_is_followed_by_the_other(kind, models, tmp_path):
    with fresh_db(kind, tmp_path) as url:
        _reload_and_follow(models, url)


def _reload_and_follow(models: dict[str, Path], url: str) -> None:
    one, two = _service(models["a"], url), _service(models["a"], url)
    try:
        va, vb = model_version(models["a"]), model_version(models["b"])
        assert va != vb and one.holder.current.version == two.holder.current.version == va
        assert two.follow_once() is None  # nothing newer published: nothing loaded
        new, old = one.holder.reload(str(models["b"]), publish=one.publish)
        assert (new.version, old) == (vb, va)
        assert one.holder.generation == two.holder.generation + 1
        followed = two.follow_once()
        assert followed is not None and two.holder.current.version == vb
        assert two.holder.generation == one.holder.generation
        assert two.follow_once() is None  # the same generation again: no second load
        with sdb.read_tx(one.engine) as conn:
            row = sdb.read_served(conn)
        assert row.generation == one.holder.generation and Path(row.model_dir) == models["b"].resolve()
    finally:
        one.close()
        two.close()


def test_a_worker_starting_from_the_database_runs_the_published_model(models, tmp_path):
    url = str(tmp_path / "s.db")
    first = _service(models["a"], url)
    try:
        first.holder.reload(str(models["b"]), publish=first.publish)
        # a worker started (or restarted) later with the command line's model a: it serves b, the reloaded one
        late = _service(models["a"], url, start_from_database=True)
        try:
            assert late.holder.current.version == model_version(models["b"])
            assert late.holder.generation == first.holder.generation
        finally:
            late.close()
        # without start_from_database a start is itself a publication (a single-process server)
        own = _service(models["a"], url)
        try:
            assert own.holder.generation == first.holder.generation + 1
            assert own.holder.current.version == model_version(models["a"])
        finally:
            own.close()
    finally:
        first.close()


def test_a_published_model_that_does_not_load_is_reported_not_retried(models, tmp_path):
    url = str(tmp_path / "s.db")
    broken = tmp_path / "broken"
    shutil.copytree(models["b"], broken)
    one, two = _service(models["a"], url), _service(models["a"], url)
    try:
        (broken / "config.json").write_text("{not json")
        with sdb.write_tx(one.engine) as conn:
            gen = sdb.publish_served(conn, str(broken), None)
        assert two.follow_once() is None
        assert two.holder.current.version == model_version(models["a"])
        assert two.follow_error is not None and two.follow_error["generation"] == gen
        assert str(broken) in two.follow_error["model_dir"]
        (broken / "config.json").write_text((models["b"] / "config.json").read_text())
        assert two.follow_once() is None  # the failed generation is not retried every second
        with sdb.write_tx(one.engine) as conn:
            sdb.publish_served(conn, str(broken), None)  # published again: a new generation, loaded
        assert two.follow_once() is not None and two.holder.current.version == model_version(broken)
    finally:
        one.close()
        two.close()


def _lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_sqlite_writers_hold_the_cross_process_lock_for_their_transaction(tmp_path):
    engine = sdb.make_engine(tmp_path / "w.db", pool_size=2)
    try:
        sdb.migrate(engine)
        path = sdb.write_lock_path(engine)
        assert path == tmp_path / "w.db.writelock"
        assert _lock_is_free(path)
        with sdb.write_tx(engine) as conn:
            sdb.ensure_person(conn, "p")
            assert not _lock_is_free(path)  # another open file (another process, or thread) must wait
        assert _lock_is_free(path)
        with pytest.raises(RuntimeError), sdb.write_tx(engine):
            raise RuntimeError("a failed transaction releases the lock too")
        assert _lock_is_free(path)
        with sdb.read_tx(engine) as conn:  # readers never take it
            assert conn.execute(sdb.persons.select()).first() is not None
            assert _lock_is_free(path)
    finally:
        engine.dispose()


@pytest.mark.slow  # two worker processes start (each loads the model): about a minute on 2 shared cores
def test_every_worker_serves_the_reloaded_model(models, tmp_path):
    admin = "adm-" + secrets.token_hex(8)
    h = {"Authorization": f"Bearer {admin}"}
    url = f"sqlite:///{tmp_path / 'two.db'}"
    env = {"PERSONALIGN_CACHE": str(tmp_path / "cache")}
    extra = ["--workers", "2", "--follow-interval", "0.2"]
    vb = model_version(models["b"])
    with ServerProcess(models["a"], url, admin, extra_args=extra, env=env, start_timeout=300) as srv:
        r = httpx.post(f"{srv.url}/v1/admin/model/reload", headers=h, json={"model_dir": str(models["b"])},
                       timeout=120)  # fmt: skip
        assert r.status_code == 200, r.text
        gen = r.json()["generation"]
        seen: dict[int, tuple[str, int]] = {}  # worker pid -> (model version, generation) it last answered
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            m = httpx.get(f"{srv.url}/v1/metrics", headers=h, timeout=30).json()  # a new connection each time
            seen[m["worker_pid"]] = (m["model_version"], m["generation"])
            if len(seen) == 2 and all(v == (vb, gen) for v in seen.values()):
                break
            time.sleep(0.05)
    assert len(seen) == 2, f"only {len(seen)} worker(s) answered"
    assert all(v == (vb, gen) for v in seen.values()), seen
