"""Service building blocks without a server: migrations, key handling, the feature LRU, the keys CLI."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from personalign.errors import ConfigError
from personalign.serve import db as sdb
from personalign.serve.auth import Principal, authenticate, create_key, hash_key, parse_key_id
from personalign.serve.state import LRUEncoder


def test_migrate_is_idempotent_and_versioned(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    eng = sdb.make_engine(url)
    assert sdb.migrate(eng) == sdb.SCHEMA_VERSION
    with sdb.write_tx(eng) as conn:
        sdb.ensure_person(conn, "u1")
        sdb.ensure_person(conn, "u1")  # idempotent too
    assert sdb.migrate(eng) == sdb.SCHEMA_VERSION  # again: nothing re-applied, data kept
    with eng.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sdb.schema_version)).scalar() == len(
            sdb.MIGRATIONS
        )
        assert conn.execute(select(func.count()).select_from(sdb.persons)).scalar() == 1
        # the durability settings are in force on every connection
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with sdb.write_tx(eng) as conn:  # a database from a newer personalign is refused, not damaged
        conn.execute(sdb.schema_version.insert().values(version=sdb.SCHEMA_VERSION + 1, applied_at=sdb.now()))
    with pytest.raises(ConfigError, match="newer"):
        sdb.migrate(eng)
    eng.dispose()


def test_database_urls() -> None:
    assert sdb.normalize_url("some/file.db").startswith("sqlite:////")
    assert sdb.normalize_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert sdb.normalize_url("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    with pytest.raises(ConfigError, match="in-memory"):
        sdb.make_engine("sqlite://")
    with pytest.raises(ConfigError, match="unsupported"):
        sdb.make_engine("mysql://u@h/db")


def test_keys_store_only_hashes_and_scope(tmp_path) -> None:
    eng = sdb.make_engine(tmp_path / "k.db")
    sdb.migrate(eng)
    with sdb.write_tx(eng) as conn:
        key, kid = create_key(conn, "person", "alice")
        akey, _ = create_key(conn, "admin")
    assert parse_key_id(key) == kid
    with eng.connect() as conn:
        row = conn.execute(select(sdb.api_keys).where(sdb.api_keys.c.key_id == kid)).first()
        assert row.key_hash == hash_key(key) and key not in row
        p = authenticate(conn, key, frozenset())
        assert p == Principal("person", "alice", kid)
        assert p.can_access("alice") and not p.can_access("bob") and not p.is_admin
        assert authenticate(conn, akey, frozenset()).is_admin
        assert authenticate(conn, key[:-1] + ("A" if key[-1] != "A" else "B"), frozenset()) is None
        assert authenticate(conn, "plain-secret", frozenset({hash_key("plain-secret")})).is_admin
        assert authenticate(conn, "plain-secret", frozenset()) is None
    with pytest.raises(ValueError):
        create_key(None, "person", None)  # type: ignore[arg-type]
    eng.dispose()


class CountingEncoder:
    name, dim = "counting", 3

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, show_progress=False):
        self.calls.append(list(texts))
        return np.asarray([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)


def test_lru_encoder_caches_and_evicts() -> None:
    inner = CountingEncoder()
    lru = LRUEncoder(inner, maxsize=3)
    out = lru.encode(["aa", "b", "aa"])
    np.testing.assert_array_equal(out, inner.encode(["aa", "b", "aa"]))
    assert inner.calls[0] == ["aa", "b"]  # duplicates encoded once
    inner.calls.clear()
    lru.encode(["b", "aa"])
    assert inner.calls == []  # all hits
    lru.encode(["c", "d"])  # capacity 3: evicts the least recently used ("b"... then "aa")
    assert lru.stats()["size"] == 3
    inner.calls.clear()
    lru.encode(["b"])
    assert inner.calls == [["b"]]
    assert lru.encode([]).shape == (0, 3)


def test_keys_cli_creates_working_keys(tmp_path) -> None:
    from personalign.cli import app

    db = str(tmp_path / "cli.db")
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "keys", "create", "--db", db, "--person", "carol"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[0]
    eng = sdb.make_engine(db)
    with eng.connect() as conn:
        assert authenticate(conn, key, frozenset()) == Principal("person", "carol", parse_key_id(key))
        assert conn.execute(select(sdb.persons.c.person_id)).scalars().all() == ["carol"]
    eng.dispose()
    listed = runner.invoke(app, ["serve", "keys", "list", "--db", db])
    assert parse_key_id(key) in listed.stdout and key not in listed.stdout
    assert runner.invoke(app, ["serve", "keys", "revoke", parse_key_id(key), "--db", db]).exit_code == 0
    bad = runner.invoke(app, ["serve", "keys", "create", "--db", db, "--person", "no spaces!"])
    assert bad.exit_code != 0


def test_service_accepts_a_policy_preset_in_process(tmp_path) -> None:
    """``serve --policy rules``: the preset loads like a file, and rank puts the insult last for everyone."""
    from fastapi.testclient import TestClient

    from personalign.experiments.models import train_small_model
    from personalign.serve.app import ServeConfig, create_app

    model_dir = train_small_model(tmp_path / "m", rank=2, persons=20, comparisons_per_person=10)
    cfg = ServeConfig(
        model_dir=str(model_dir), db_url=str(tmp_path / "s.db"), policy="rules", admin_keys=["a"]
    )
    cands = ["Put it in water.", "Only an idiot asks this. Put it in water.", "Wrap it in a damp towel."]
    with TestClient(create_app(cfg)) as c:
        h = {"X-API-Key": "a"}
        rk = c.post("/v1/persons/p1/rank", headers=h, json={"prompt": "basil?", "candidates": cands}).json()
        sc = c.post("/v1/persons/p1/score", headers=h, json={"prompt": "basil?", "candidates": cands}).json()
        assert c.get("/v1/metrics", headers=h).json()["policy"] == "rules"
    assert (
        rk["bounded"]
        and rk["ranking"][-1]["index"] == 1
        and rk["ranking"][-1]["violations"] == ["no_insults"]
    )
    assert sc["constraints"]["admissible"] == [True, False, True]
    assert min(sc["bounded_rewards"][0], sc["bounded_rewards"][2]) > sc["bounded_rewards"][1]
    with pytest.raises(ConfigError, match="unknown policy preset"):
        create_app(ServeConfig(model_dir=str(model_dir), db_url=str(tmp_path / "t.db"), policy="rulez"))
