"""The service's database: persons (with their posterior), an append-only judgments table, API key hashes.

SQLite (a file; the default) or PostgreSQL (by URL). Durability: SQLite runs in WAL mode with
``synchronous=FULL`` so that a commit acknowledged to a client survives ``kill -9`` (and a power cut);
PostgreSQL's default ``synchronous_commit=on`` does the same.

Per-person serialization (no lost update when many clients send feedback for one person at once): a writer
takes the person's row lock before reading the posterior - ``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` (the database write lock) on SQLite - and commits the new judgment and the new posterior in
the same transaction.

Several SQLite workers: every write transaction first takes an exclusive ``flock`` on ``FILE.writelock`` beside
the database (:func:`write_tx`), so writers of all processes queue in the kernel and the next one starts the
moment the lock is released, instead of polling in SQLite's busy handler (which sleeps up to 100 ms a try).

The model being served: the ``served_model`` row names the model folder and policy every worker should run, with
a generation that grows by one per change (:func:`publish_served`); an admin reload in one worker writes it and the
other workers follow (:meth:`personalign.serve.state.ModelHolder.follow`).

Migrations run on start: a ``schema_version`` table records which numbered migrations were applied; applying
is idempotent and serialized (an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so several
workers may start at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url

from personalign.errors import ConfigError

try:  # POSIX; elsewhere SQLite's own busy handler is the only queue
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 3

# persons.start_from: where a person's belief starts before their stored judgments are folded in. NULL = the
# model's start (the learned posterior for a person the model was trained on, else the population prior);
# START_PRIOR = the population prior, whatever the model learned (set by a reset).
START_PRIOR = "prior"

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", String(40), nullable=False),
)

persons = Table(
    "persons",
    metadata,
    Column("person_id", String(128), primary_key=True),
    Column(
        "posterior", Text, nullable=True
    ),  # JSON of Posterior.to_dict(); NULL = prior (no judgments folded)
    Column("model_version", String(64), nullable=True),  # model the posterior belongs to
    Column("n_judgments", Integer, nullable=False, default=0),
    Column("revision", Integer, nullable=False, default=0),  # +1 per stored change
    Column("start_from", String(16), nullable=True),  # NULL: the model's start; START_PRIOR after a reset
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

judgments = Table(
    "judgments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", String(128), ForeignKey("persons.person_id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # comparison | rating
    Column("prompt", Text, nullable=False, default=""),
    Column("chosen", Text, nullable=True),
    Column("rejected", Text, nullable=True),
    Column("tie", Boolean, nullable=False, default=False),
    Column("response", Text, nullable=True),
    Column("rating", Float, nullable=True),
    Column("weight", Float, nullable=False, default=1.0),
    Column("request_id", String(128), nullable=True),
    Column("created_at", String(40), nullable=False),
    Index("ix_judgments_person", "person_id", "id"),
    Index("ux_judgments_request", "person_id", "request_id", unique=True),
    sqlite_autoincrement=True,  # ids never reused, so an acknowledged id names one judgment forever
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # admin | person
    Column("person_id", String(128), nullable=True),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", String(40), nullable=False),
    Index("ix_api_keys_person", "person_id"),
)


served_model = Table(
    "served_model",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one row
    Column("generation", Integer, nullable=False),  # +1 per published change
    Column("model_dir", Text, nullable=False),
    Column("policy", Text, nullable=True),
    Column("updated_at", String(40), nullable=False),
)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def default_sqlite_url(path: str | Path = "personalign-serve.db") -> str:
    return f"sqlite:///{Path(path).resolve()}"


def normalize_url(url: str | Path) -> str:
    """Accept a bare file path as a SQLite database; ``postgresql://`` (no driver named) means psycopg2."""
    url = str(url)
    if "://" not in url:
        return default_sqlite_url(url)
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        # SQLAlchemy 2.1 defaults to psycopg 3; the project ships psycopg2(-binary)
        return "postgresql+psycopg2://" + rest
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str | Path, pool_size: int = 8) -> Engine:
    """An engine with the durability settings described in the module docstring."""
    url = normalize_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database in (None, "", ":memory:"):
            raise ConfigError(
                "the service needs a SQLite file (or a PostgreSQL URL), not an in-memory database"
            )
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30.0},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
            # Let SQLAlchemy (not pysqlite) emit BEGIN, so that writers can ask for BEGIN IMMEDIATE.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if u.get_backend_name() == "postgresql":
        try:
            import psycopg2  # noqa: F401
        except ImportError as exc:  # pragma: no cover - psycopg2-binary is a dev dependency
            raise ConfigError("a PostgreSQL URL needs psycopg2 (pip install psycopg2-binary)") from exc
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    raise ConfigError(
        f"unsupported database URL {url!r}: expected sqlite:///FILE, a file path, or postgresql://..."
    )


def write_lock_path(engine: Engine) -> Path | None:
    """The lock file SQLite writers of every process queue on (None: not a SQLite file)."""
    database = engine.url.database if is_sqlite(engine) else None
    return Path(database + ".writelock") if database else None


@contextlib.contextmanager
def process_write_lock(engine: Engine) -> Iterator[None]:
    """Hold the cross-process SQLite write lock (an exclusive ``flock``; a no-op on PostgreSQL). Each call opens
    the file anew: flock locks belong to an open file, so two threads of one process also queue on it."""
    path = write_lock_path(engine)
    if path is None or fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction: on SQLite it takes the cross-process lock, then the database write lock at BEGIN
    (IMMEDIATE), so a read-modify-write of a posterior cannot interleave with another writer; on PostgreSQL
    callers lock rows with FOR UPDATE."""
    with process_write_lock(engine), engine.connect() as conn:
        if is_sqlite(engine):
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


# ------------------------------------------------------------------------------------------------ migrations
def _m1_initial(conn: Connection) -> None:
    metadata.create_all(conn, tables=[persons, judgments, api_keys], checkfirst=True)


def _m2_start_from(conn: Connection) -> None:
    # a database created by migration 1 of this code already has the column (create_all uses the tables above)
    if "start_from" not in {c["name"] for c in inspect(conn).get_columns("persons")}:
        conn.execute(text("ALTER TABLE persons ADD COLUMN start_from VARCHAR(16)"))


def _m3_served_model(conn: Connection) -> None:
    served_model.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _m1_initial),
    (2, _m2_start_from),
    (3, _m3_served_model),
]


def migrate(engine: Engine) -> int:
    """Create or upgrade the schema; returns the version now in the database. Safe to run any number of times
    and from several processes at once."""
    with write_tx(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7707)"))
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
        if current > SCHEMA_VERSION:
            raise ConfigError(
                f"database schema version {current} is newer than this personalign ({SCHEMA_VERSION}); upgrade it"
            )
        for version, step in MIGRATIONS:
            if version > current:
                step(conn)
                conn.execute(schema_version.insert().values(version=version, applied_at=now()))
                current = version
    return current


@contextlib.contextmanager
def open_database(url: str | Path) -> Iterator[Engine]:
    """An engine on a migrated database, disposed afterwards (for commands that run once, like the key CLI)."""
    engine = make_engine(url)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()


def delete_person(conn: Connection, person_id: str) -> dict[str, int]:
    """Remove everything stored about a person (judgments, posterior, keys) in the caller's transaction."""
    nj = conn.execute(delete(judgments).where(judgments.c.person_id == person_id)).rowcount
    nk = conn.execute(delete(api_keys).where(api_keys.c.person_id == person_id)).rowcount
    npr = conn.execute(delete(persons).where(persons.c.person_id == person_id)).rowcount
    return {"judgments": int(nj or 0), "keys": int(nk or 0), "persons": int(npr or 0)}


def person_judgments(conn: Connection, person_id: str, limit: int, offset: int = 0) -> list[Any]:
    """One page of a person's stored judgments (every column), oldest first."""
    j = judgments
    q = select(j).where(j.c.person_id == person_id).order_by(j.c.id).limit(limit).offset(offset)
    return conn.execute(q).all()


def count_judgments(conn: Connection, person_id: str) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(judgments).where(judgments.c.person_id == person_id)
        ).scalar_one()
    )


def delete_judgment(conn: Connection, person_id: str, judgment_id: int) -> bool:
    """Remove one of the person's judgments (in the caller's transaction); False when they have no such one."""
    j = judgments
    return bool(conn.execute(delete(j).where(j.c.person_id == person_id, j.c.id == judgment_id)).rowcount)


def reset_person(conn: Connection, person_id: str) -> int:
    """Delete the person's judgments and make the population prior their start (in the caller's transaction;
    the row must exist); returns how many judgments went."""
    n = conn.execute(delete(judgments).where(judgments.c.person_id == person_id)).rowcount
    conn.execute(
        update(persons)
        .where(persons.c.person_id == person_id)
        .values(
            posterior=None,
            model_version=None,
            n_judgments=0,
            start_from=START_PRIOR,
            revision=persons.c.revision + 1,
            updated_at=now(),
        )
    )
    return int(n or 0)


def _dialect_insert(conn: Connection) -> Callable[..., Any]:
    """The dialect's ``insert`` (it has ``on_conflict_do_nothing``)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def ensure_person(conn: Connection, person_id: str) -> None:
    """Create the person's row if it does not exist (atomic: INSERT ... ON CONFLICT DO NOTHING)."""
    insert = _dialect_insert(conn)
    stamp = now()
    conn.execute(
        insert(persons)
        .values(
            person_id=person_id,
            posterior=None,
            model_version=None,
            n_judgments=0,
            revision=0,
            created_at=stamp,
            updated_at=stamp,
        )
        .on_conflict_do_nothing(index_elements=["person_id"])
    )


def read_served(conn: Connection) -> Any:
    """The served-model row (generation, model_dir, policy, updated_at), or None before anything was published."""
    m = served_model
    return conn.execute(
        select(m.c.generation, m.c.model_dir, m.c.policy, m.c.updated_at).where(m.c.id == 1)
    ).first()


def publish_served(conn: Connection, model_dir: str, policy: str | None) -> int:
    """Name the model every worker should serve (in the caller's write transaction); returns its generation."""
    m = served_model
    insert = _dialect_insert(conn)
    # the row exists from here on (two first publishers cannot both insert it); generation 0 is never served
    conn.execute(
        insert(m)
        .values(id=1, generation=0, model_dir="", policy=None, updated_at=now())
        .on_conflict_do_nothing(index_elements=["id"])
    )
    generation = conn.execute(
        update(m)
        .where(m.c.id == 1)
        .values(generation=m.c.generation + 1, model_dir=model_dir, policy=policy, updated_at=now())
        .returning(m.c.generation)
    ).scalar_one()
    return int(generation)
