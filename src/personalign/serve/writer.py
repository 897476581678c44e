"""Storing feedback: one judgment appended and folded into the person's posterior in one transaction, and, on
SQLite, group commit (many judgments per transaction, so one commit and its fsync serve them all).

:func:`store_feedback` does the work of one judgment inside a write transaction the caller holds: authorize the
key, create the person if new, read their stored posterior (the database row is the posterior cache: every worker
reads it inside the write lock, so no worker folds onto a stale one), answer a retried ``request_id`` with what was
stored then, else append the judgment, fold the comparisons it makes and store the new posterior.

:class:`GroupCommitter` is one writer thread per worker process. Requests hand it their judgment and wait; it
takes every judgment waiting (up to ``max_batch``), opens one write transaction (``BEGIN IMMEDIATE``: the
database's write lock, which also serializes it with other workers), runs :func:`store_feedback` for each in a
savepoint of its own (a refused key or a bad judgment rolls back only itself), commits once, and only then answers
every request of the batch. Nothing waits on a timer: while one batch commits, the next one gathers. A commit that
fails answers every request of its batch with the error, and none of them was stored.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from personalign.serve import db, schemas
from personalign.serve.state import ModelState, judgment_pairs, usable_rating

if TYPE_CHECKING:
    from personalign.serve.service import Service

log = logging.getLogger("personalign.serve")

MAX_BATCH = 256  # judgments in one group commit

# attributes judgment_pairs reads that one kind of feedback does not carry
_ABSENT = {"chosen": None, "rejected": None, "tie": False, "response": None, "rating": None}


def store_feedback(
    svc: Service, conn: Connection, st: ModelState, person_id: str, body: Any, key: str | None
) -> schemas.FeedbackOut:
    """Store one judgment and fold it into the person's posterior, in the caller's write transaction (which
    holds the database write lock on SQLite; the person's row is locked here on PostgreSQL). Raises 401/403 for a
    key that may not write for the person."""
    svc.authorize(conn, key, person_id)
    db.ensure_person(conn, person_id)
    row = svc.read_person(conn, person_id, for_update=True)
    dup = _duplicate(conn, st, person_id, body.request_id, row)
    if dup is not None:
        return dup
    post, _ = svc.current_posterior(conn, st, person_id, row)
    jid, judgment = _insert_judgment(conn, person_id, body)
    pairs = judgment_pairs(person_id, judgment, _rating_history(conn, person_id, jid, body))
    post = st.fold(post, pairs)
    n = row.n_judgments + 1
    conn.execute(
        update(db.persons)
        .where(db.persons.c.person_id == person_id)
        .values(
            posterior=json.dumps(post.to_dict()),
            model_version=st.version,
            n_judgments=n,
            revision=row.revision + 1,
            updated_at=db.now(),
        )
    )
    return schemas.FeedbackOut(
        person_id=person_id,
        judgment_id=jid,
        pairs_folded=len(pairs),
        n_judgments=n,
        n_folded=int(post.n),
        model_version=st.version,
    )


def _duplicate(
    conn: Connection, st: ModelState, person_id: str, request_id: str | None, row: Any
) -> schemas.FeedbackOut | None:
    """The reply to a retried request (same ``request_id``): what was stored then, nothing added now."""
    if request_id is None:
        return None
    j = db.judgments
    dup = conn.execute(select(j.c.id).where(j.c.person_id == person_id, j.c.request_id == request_id)).first()
    if dup is None:
        return None
    post = st.posterior_from_json(row.posterior, row.model_version)
    return schemas.FeedbackOut(
        person_id=person_id,
        judgment_id=dup.id,
        duplicate=True,
        pairs_folded=0,
        n_judgments=row.n_judgments,
        n_folded=int(post.n) if post is not None else 0,  # None: stored under another model version
        model_version=row.model_version or st.version,
    )


def _insert_judgment(conn: Connection, person_id: str, body: Any) -> tuple[int, SimpleNamespace]:
    """Append the judgment; returns its id and the stored values as the row :func:`judgment_pairs` reads."""
    values = body.model_dump(exclude={"kind"})
    values = {
        "person_id": person_id,
        "kind": body.kind,
        "created_at": db.now(),
        "prompt": values.pop("prompt", ""),
        **values,
    }
    jid = conn.execute(db.judgments.insert().values(**values).returning(db.judgments.c.id)).scalar_one()
    return jid, SimpleNamespace(**{**_ABSENT, **values})


def _rating_history(conn: Connection, person_id: str, jid: int, body: Any) -> dict[str, list]:
    """The person's earlier ratings of the same prompt (a rating is compared with them); empty for a comparison."""
    if body.kind != "rating":
        return {}
    j = db.judgments
    earlier = conn.execute(
        select(j.c.response, j.c.rating, j.c.weight)
        .where(j.c.person_id == person_id, j.c.kind == "rating", j.c.prompt == body.prompt, j.c.id < jid)
        .order_by(j.c.id)
    ).all()
    return {
        body.prompt: [
            (r.response, float(r.rating), float(r.weight)) for r in earlier if usable_rating(r.rating)
        ]
    }


@dataclass
class _Job:
    person_id: str
    body: Any
    st: ModelState
    key: str | None
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class GroupCommitter:
    """The worker's feedback writer thread (see the module docstring). :meth:`submit` returns a future that is
    resolved only after the transaction holding the judgment has committed (or with the error that kept it out)."""

    def __init__(self, svc: Service, max_batch: int = MAX_BATCH) -> None:
        self.svc, self.max_batch = svc, int(max_batch)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0  # transactions committed
        self.judgments = 0  # requests answered through them (stored, duplicates and refusals alike)
        self.largest = 0  # the largest batch so far
        self.failed_batches = 0  # commits that failed (every request of the batch got the error)
        self._thread = threading.Thread(target=self._run, name="personalign-group-commit", daemon=True)
        self._thread.start()

    def submit(self, person_id: str, body: Any, st: ModelState, key: str | None) -> concurrent.futures.Future:
        """Queue one judgment; the future holds its :class:`~personalign.serve.schemas.FeedbackOut` once committed."""
        job = _Job(person_id, body, st, key)
        with self._lock:
            if self._closed:
                raise RuntimeError("the feedback writer is closed")
            self._queue.put(job)
        return job.future

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        """Commits, requests answered through them, the largest batch and failed commits, since start."""
        return {
            "batches": self.batches,
            "judgments": self.judgments,
            "largest_batch": self.largest,
            "failed_batches": self.failed_batches,
        }

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with db.write_tx(self.svc.engine) as conn:
                for job in batch:
                    try:
                        with conn.begin_nested():  # a savepoint: a refused judgment rolls back only itself
                            out = store_feedback(self.svc, conn, job.st, job.person_id, job.body, job.key)
                        outcomes.append((out, None))
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                        outcomes.append((None, exc))
            # the transaction has committed (and, with synchronous=FULL, is on disk): now answer
        except Exception as exc:  # noqa: BLE001 - the commit failed: nothing of the batch was stored
            log.exception("a group commit of %d judgments failed", len(batch))
            self.failed_batches += 1
            for job in batch:
                job.future.set_exception(exc)
            return
        self.batches += 1
        self.judgments += len(batch)
        self.largest = max(self.largest, len(batch))
        for job, (out, exc) in zip(batch, outcomes, strict=True):
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(out)
