"""The state behind the endpoints: configuration, database engine, the model holder, metrics and per-person locks.

One :class:`Service` lives on ``app.state.service``; routes reach it through the dependencies of
:mod:`personalign.serve.deps`, never through closures, so every route module is a plain module of functions.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from starlette.exceptions import HTTPException

from personalign.bounds.policy import list_policies
from personalign.serve import db, schemas
from personalign.serve.auth import Principal, authenticate, hash_key
from personalign.serve.middleware import MAX_INFLIGHT, Metrics
from personalign.serve.state import ModelHolder, ModelState
from personalign.serve.writer import GroupCommitter

log = logging.getLogger("personalign.serve")

# the columns a stored judgment is replayed from (state.judgment_pairs reads these attributes)
JUDGMENT_COLUMNS = ("kind", "prompt", "chosen", "rejected", "tie", "response", "rating", "weight")


@dataclass
class ServeConfig:
    """Everything the service needs to start (serializable, so uvicorn workers can rebuild the app)."""

    model_dir: str
    db_url: str = "personalign-serve.db"
    policy: str | None = None
    admin_keys: list[str] = field(default_factory=list)
    max_body_bytes: int = schemas.MAX_BODY_BYTES
    lru_size: int = 100_000
    pool_size: int = 8
    allow_callables: list[str] = field(default_factory=list)  # callables a policy may name (--allow-callable)
    body_timeout_s: float = (
        10.0  # a request body must arrive within this (else 408 and the connection closes)
    )
    model_root: str | None = None  # the admin reload loads only under here (None: the start model's folder)
    max_inflight: int = MAX_INFLIGHT  # requests one worker serves at once; more get 503 + Retry-After
    group_commit: bool = True  # SQLite: many feedback judgments per commit (one writer thread per worker)
    # seconds between a worker's looks at the served-model row, to follow another worker's reload (0: never)
    follow_interval_s: float = 1.0
    # start with the model the database names (set for the workers of ``serve --workers N``, whose parent
    # published the command line's model), not the config's: a worker uvicorn restarts runs the reloaded model
    start_from_database: bool = False


def judgment_rows(conn: Connection, person_id: str, limit: int | None = None) -> list[Any]:
    """A person's stored judgments in id order (with ``limit``: only the most recent ones, still in id order)."""
    j = db.judgments
    q = select(*(j.c[name] for name in JUDGMENT_COLUMNS)).where(j.c.person_id == person_id)
    if limit is None:
        return conn.execute(q.order_by(j.c.id)).all()
    return conn.execute(q.order_by(j.c.id.desc()).limit(limit)).all()[::-1]


def reset_to_prior(row: Any) -> bool:
    """Whether the person reset to the population (their belief starts at the prior even if the model knows them)."""
    return row is not None and row.start_from == db.START_PRIOR


def start_source(st: ModelState, person_id: str, row: Any) -> str:
    """Where the person's belief starts: ``"trained"`` (the model's learned posterior) or ``"prior"``."""
    return "trained" if st.is_trained(person_id) and not reset_to_prior(row) else "prior"


class Service:
    """The database engine, model holder, metrics and striped per-person locks of one running app."""

    N_LOCKS = 256

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.engine: Engine = db.make_engine(config.db_url, pool_size=config.pool_size)
        self.schema_version = db.migrate(self.engine)
        allow = tuple(config.allow_callables)
        model_dir, policy, generation = self._start_model()
        state = ModelState.load(model_dir, policy, config.lru_size, allow)
        if not generation:
            generation = self.publish(state)
        self.holder = ModelHolder(state, config.lru_size, allow, generation)
        self.admin_hashes = frozenset(hash_key(k) for k in config.admin_keys if k)
        self.metrics = Metrics()
        # striped in-process locks: writers for one person queue here instead of spinning on the DB lock
        self._locks = [threading.Lock() for _ in range(self.N_LOCKS)]
        self.sqlite = db.is_sqlite(self.engine)
        root = config.model_root or Path(config.model_dir).resolve().parent
        self.model_root = Path(root).resolve()
        # SQLite has one writer at a time anyway: one thread per worker writes feedback, many judgments a commit
        self.committer = GroupCommitter(self) if self.sqlite and config.group_commit else None
        self.follow_error: dict[str, Any] | None = None  # the last published model this worker failed to load
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        if config.follow_interval_s > 0:
            self._follower = threading.Thread(target=self._follow, name="personalign-follow", daemon=True)
            self._follower.start()

    def close(self) -> None:
        """Stop following reloads, commit the feedback still queued, stop the writer thread and close the
        database connections."""
        self._stop.set()
        if self._follower is not None:
            self._follower.join(5.0)
        if self.committer is not None:
            self.committer.close()
        self.engine.dispose()

    # ------------------------------------------------------------ served model
    def _start_model(self) -> tuple[str, str | None, int]:
        """(model folder, policy, generation) to start with; generation 0: not yet published."""
        cfg = self.config
        if cfg.start_from_database:
            with db.read_tx(self.engine) as conn:
                row = db.read_served(conn)
            if row is not None and row.generation > 0:
                return row.model_dir, row.policy, int(row.generation)
        return cfg.model_dir, cfg.policy, 0

    def publish(self, st: ModelState) -> int:
        """Make ``st``'s model the one every worker serves; returns its generation."""
        with db.write_tx(self.engine) as conn:
            return db.publish_served(conn, str(Path(st.model_dir).resolve()), st.policy_path)

    def follow_once(self) -> ModelState | None:
        """Load the model another worker published, if there is a newer one (what the follower thread runs)."""
        with db.read_tx(self.engine) as conn:
            row = db.read_served(conn)
        if row is None or row.generation <= self.holder.generation:
            return None
        if self.follow_error is not None and self.follow_error["generation"] == row.generation:
            return None  # tried and failed: wait for the next publication instead of retrying each second
        try:
            return self.holder.follow(int(row.generation), row.model_dir, row.policy)
        except Exception as exc:  # noqa: BLE001 - reported on /v1/metrics; this worker keeps its model
            log.exception("could not load the published model %s", row.model_dir)
            self.follow_error = {
                "generation": int(row.generation),
                "model_dir": row.model_dir,
                "error": str(exc),
            }
            return None

    def _follow(self) -> None:
        while not self._stop.wait(self.config.follow_interval_s):
            try:
                self.follow_once()
            except Exception:  # noqa: BLE001 - a database hiccup: look again next time
                log.exception("could not read the served model")

    def confine(self, path: str | None, what: str) -> str | None:
        """``path`` resolved (symlinks, ``..``), or 403 when it lies outside :attr:`model_root`: the admin
        reload loads nothing from elsewhere. None stays None; a packaged policy preset name passes as it is."""
        if path is None:
            return None
        if what == "policy" and path in list_policies():
            return path
        resolved = Path(path).expanduser().resolve()
        if not resolved.is_relative_to(self.model_root):
            raise HTTPException(
                403, f"{what} {path!r} is outside the model root {str(self.model_root)!r} (--model-root)"
            )
        return str(resolved)

    def person_lock(self, person_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(person_id.encode()) % self.N_LOCKS]

    # ------------------------------------------------------------------ auth
    def authorize(self, conn: Connection, key: str | None, person_id: str | None = None) -> Principal:
        """401 without a valid key; 403 when a person key asks for another person or for an admin operation
        (``person_id`` None: the operation needs an admin key)."""
        if not key:
            raise HTTPException(401, "missing API key (send 'Authorization: Bearer <key>' or 'X-API-Key')")
        p = authenticate(conn, key, self.admin_hashes)
        if p is None:
            raise HTTPException(401, "invalid API key")
        if person_id is None:
            if not p.is_admin:
                raise HTTPException(403, "this operation needs an admin key")
        elif not p.can_access(person_id):
            raise HTTPException(403, "this key may not access that person")
        return p

    # ------------------------------------------------------------- posteriors
    def current_posterior(
        self, conn: Connection, st: ModelState, person_id: str, row: Any
    ) -> tuple[Any, bool]:
        """The person's posterior under model ``st`` and whether it had to be recomputed (model changed)."""
        if row is None or row.n_judgments == 0:
            return st.start(person_id, reset_to_prior(row)), False
        post = st.posterior_from_json(row.posterior, row.model_version)
        if post is not None:
            return post, False
        post, _ = st.replay(person_id, judgment_rows(conn, person_id), reset_to_prior(row))
        return post, True

    def refold(self, conn: Connection, st: ModelState, person_id: str, row: Any) -> tuple[Any, int]:
        """Recompute the person's posterior from their start and the judgments stored now (after one was removed)
        and store it, replacing the cached one, in the caller's write transaction; returns (posterior, judgments)."""
        post, n = st.replay(person_id, judgment_rows(conn, person_id), reset_to_prior(row))
        p = db.persons
        conn.execute(
            update(p)
            .where(p.c.person_id == person_id)
            .values(
                posterior=json.dumps(post.to_dict()) if n else None,  # no judgments: served the start
                model_version=st.version if n else None,
                n_judgments=n,
                revision=row.revision + 1,  # a recompute started before this one cannot overwrite it
                updated_at=db.now(),
            )
        )
        return post, n

    def read_person(self, conn: Connection, person_id: str, for_update: bool = False) -> Any:
        """The person's row (posterior, version, counts, revision, times), or None; ``for_update`` takes the row
        lock on PostgreSQL (SQLite already holds the database write lock: BEGIN IMMEDIATE)."""
        p = db.persons
        q = select(
            p.c.posterior,
            p.c.model_version,
            p.c.n_judgments,
            p.c.revision,
            p.c.start_from,
            p.c.created_at,
            p.c.updated_at,
        ).where(p.c.person_id == person_id)
        if for_update and not self.sqlite:
            q = q.with_for_update()
        return conn.execute(q).first()

    def posterior_for_read(self, person_id: str, key: str | None, st: ModelState) -> tuple[Any, Any]:
        """Authorize a read of the person and return (posterior under ``st``, stored row or None)."""
        with db.read_tx(self.engine) as conn:
            self.authorize(conn, key, person_id)
            row = self.read_person(conn, person_id)
            post, recomputed = self.current_posterior(conn, st, person_id, row)
        if recomputed:
            self.store_recomputed(person_id, st, post, row.revision)
        return post, row

    def store_recomputed(self, person_id: str, st: ModelState, post: Any, revision: int) -> None:
        """Cache a posterior recomputed for a new model, unless the person changed meanwhile (compare-and-set)."""
        p = db.persons
        try:
            with db.write_tx(self.engine) as conn:
                conn.execute(
                    update(p)
                    .where(p.c.person_id == person_id, p.c.revision == revision)
                    .values(posterior=json.dumps(post.to_dict()), model_version=st.version)
                )
        except Exception:  # a cache write; the next feedback stores it anyway
            log.exception("could not store a recomputed posterior")
