"""The HTTP API (FastAPI): personalized scores from per-person posteriors kept in a database and updated online.

Build it with :func:`create_app` (``personalign serve`` does, and runs it with uvicorn). Endpoints (all under
``/v1``, documented at ``/docs`` and ``/openapi.json``):

- ``POST /persons/{id}/feedback``  a comparison or rating; stored (append-only) and folded into the posterior
  in the same transaction; acknowledged only after commit.
- ``POST /persons/{id}/score``     personalized rewards of candidates (+ constraint report with a policy).
- ``POST /persons/{id}/rank``      candidates best first (best-of-n with ``top_k=1``), under the bounds.
- ``GET  /persons/{id}``           profile: posterior summary, uncertainty, judgment counts, monitors.
- ``POST /persons/{id}/suggest``   the most informative next question among candidate pairs.
- ``DELETE /persons/{id}``         everything about the person (judgments, posterior, keys) is deleted.
- ``POST /persons/{id}/keys``      (admin) a new person-scoped API key.
- ``GET /persons``, ``DELETE /keys/{key_id}``, ``POST /admin/model/reload``, ``GET /metrics`` (admin).
- ``GET /health`` (no key).

Every error is a JSON body ``{"error": {"status", "code", "message", "detail"}}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, Path, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine, func, select, update
from starlette.exceptions import HTTPException

from personalign import __version__
from personalign.errors import PersonalignError
from personalign.serve import db, schemas
from personalign.serve.auth import Principal, authenticate, create_key
from personalign.serve.state import ModelHolder, ModelState, all_pairs, judgment_pairs, summarize

log = logging.getLogger("personalign.serve")

ENV_CONFIG = "PERSONALIGN_SERVE_CONFIG"
MONITOR_WINDOW = 500  # judgments the profile's monitors look at


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


# ------------------------------------------------------------------------------------------------ errors
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    status: int, message: str, detail: Any = None, headers: dict | None = None
) -> JSONResponse:
    body = {
        "error": {"status": status, "code": _CODES.get(status, "error"), "message": message, "detail": detail}
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_detail(errors: list[dict]) -> list[dict]:
    # drop the offending input (it may be a megabyte of text) and keep where/what
    return [{k: v for k, v in e.items() if k in ("loc", "msg", "type", "ctx")} for e in errors]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


# ------------------------------------------------------------------------------------------------ metrics
class Metrics:
    """Request counts by route and status, latency percentiles over the last requests of each route."""

    def __init__(self, window: int = 20_000) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, dict[int, int]] = {}
        self.lat: dict[str, deque] = {}
        self.window = window
        self.started = time.time()

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.counts.setdefault(route, {}).setdefault(status, 0)
            self.counts[route][status] += 1
            self.lat.setdefault(route, deque(maxlen=self.window)).append(seconds)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out = {}
            for route, c in self.counts.items():
                lat = np.asarray(self.lat.get(route, ()), dtype=float) * 1000.0
                out[route] = {
                    "count": int(sum(c.values())),
                    "by_status": {str(k): v for k, v in sorted(c.items())},
                    "latency_ms": {
                        "p50": float(np.percentile(lat, 50)) if len(lat) else None,
                        "p90": float(np.percentile(lat, 90)) if len(lat) else None,
                        "p99": float(np.percentile(lat, 99)) if len(lat) else None,
                        "max": float(lat.max()) if len(lat) else None,
                        "window": int(len(lat)),
                    },
                }
            return out


class _ASGIGuard:
    """Outermost ASGI layer: rejects bodies over the limit (413, by Content-Length or while streaming) and times
    every request for the metrics (route template, not raw path, so person ids do not become labels)."""

    def __init__(self, app: Callable, metrics: Metrics, max_body: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = False
                if too_big:
                    resp = error_response(413, f"request body exceeds {self.max_body} bytes")
                    await resp(scope, receive, send)
                    self.metrics.record("(rejected)", 413, time.perf_counter() - t0)
                    return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return msg

        async def timed_send(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, limited_receive, timed_send)
        finally:
            route = scope.get("route")
            name = f"{scope['method']} {route.path}" if route is not None else "(unrouted)"
            self.metrics.record(name, status["code"], time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ the service
class Service:
    """The state behind the endpoints: database engine, model holder, metrics, per-person locks."""

    N_LOCKS = 256

    def __init__(self, config: ServeConfig) -> None:
        from personalign.serve.auth import hash_key

        self.config = config
        self.engine: Engine = db.make_engine(config.db_url, pool_size=config.pool_size)
        self.schema_version = db.migrate(self.engine)
        self.holder = ModelHolder(
            ModelState.load(config.model_dir, config.policy, config.lru_size), config.lru_size
        )
        self.admin_hashes = frozenset(hash_key(k) for k in config.admin_keys if k)
        self.metrics = Metrics()
        # striped in-process locks: writers for one person queue here instead of spinning on the DB lock
        self._locks = [threading.Lock() for _ in range(self.N_LOCKS)]
        self.sqlite = db.is_sqlite(self.engine)

    def person_lock(self, person_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(person_id.encode()) % self.N_LOCKS]

    # ------------------------------------------------------------------ auth
    def principal(self, conn: Connection, key: str | None) -> Principal:
        if not key:
            raise HTTPException(401, "missing API key (send 'Authorization: Bearer <key>' or 'X-API-Key')")
        p = authenticate(conn, key, self.admin_hashes)
        if p is None:
            raise HTTPException(401, "invalid API key")
        return p

    def authorize(self, conn: Connection, key: str | None, person_id: str | None = None) -> Principal:
        """401 without a valid key; 403 when a person key asks for another person or for an admin operation."""
        p = self.principal(conn, key)
        if person_id is None:
            if not p.is_admin:
                raise HTTPException(403, "this operation needs an admin key")
        elif not p.can_access(person_id):
            raise HTTPException(403, "this key may not access that person")
        return p

    # ------------------------------------------------------------- posteriors
    def _judgment_rows(self, conn: Connection, person_id: str) -> list[Any]:
        j = db.judgments
        return conn.execute(
            select(
                j.c.kind, j.c.prompt, j.c.chosen, j.c.rejected, j.c.tie, j.c.response, j.c.rating, j.c.weight
            )
            .where(j.c.person_id == person_id)
            .order_by(j.c.id)
        ).all()

    def current_posterior(
        self, conn: Connection, st: ModelState, person_id: str, row: Any
    ) -> tuple[Any, bool]:
        """The person's posterior under model ``st`` and whether it had to be recomputed (model changed)."""
        if row is None or row.n_judgments == 0:
            return st.prior(), False
        post = st.posterior_from_json(row.posterior, row.model_version)
        if post is not None:
            return post, False
        post, _ = st.replay(person_id, self._judgment_rows(conn, person_id))
        return post, True

    def read_person(self, conn: Connection, person_id: str) -> Any:
        p = db.persons
        return conn.execute(
            select(
                p.c.posterior,
                p.c.model_version,
                p.c.n_judgments,
                p.c.revision,
                p.c.created_at,
                p.c.updated_at,
            ).where(p.c.person_id == person_id)
        ).first()

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

    def lock_person(self, conn: Connection, person_id: str) -> Any:
        p = db.persons
        q = select(p.c.posterior, p.c.model_version, p.c.n_judgments, p.c.revision).where(
            p.c.person_id == person_id
        )
        if not self.sqlite:  # SQLite already holds the database write lock (BEGIN IMMEDIATE)
            q = q.with_for_update()
        return conn.execute(q).first()


def create_app(config: ServeConfig) -> FastAPI:
    """The FastAPI application (connects to the database, migrates it, loads the model)."""
    svc = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        svc.engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="personalign",
        version=__version__,
        summary="Personalized rewards from per-person preference models, inside universal bounds.",
        description=__doc__,
    )
    app.state.service = svc

    bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
    header_key = APIKeyHeader(
        name="X-API-Key", auto_error=False, description="An API key (alternative header)."
    )

    async def api_key(
        creds: HTTPAuthorizationCredentials | None = Security(bearer), xkey: str | None = Security(header_key)
    ) -> str | None:
        return creds.credentials if creds is not None else xkey

    Key = Depends(api_key)
    PersonPath = Path(
        ...,
        min_length=1,
        max_length=schemas.MAX_PERSON_ID_CHARS,
        pattern=schemas.PERSON_ID_REGEX,
        description="The person's id.",
    )
    err = {s: {"model": schemas.ErrorOut} for s in (401, 403, 404, 413, 422)}

    # -------------------------------------------------------------------------------- error handlers
    @app.exception_handler(HTTPException)
    async def _http_error(_req: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        return error_response(exc.status_code, str(exc.detail), headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            422, "request does not match the schema", jsonable_encoder(_validation_detail(exc.errors()))
        )

    @app.exception_handler(PersonalignError)
    async def _pa_error(_req: Request, exc: PersonalignError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def _internal(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal error", type(exc).__name__)

    # -------------------------------------------------------------------------------------- endpoints
    @app.get("/v1/health", tags=["service"], summary="Liveness and readiness (no key needed).")
    def health() -> dict[str, Any]:
        with db.read_tx(svc.engine) as conn:
            conn.execute(select(1))
        st = svc.holder.current
        return {"status": "ok", "model_version": st.version, "schema_version": svc.schema_version}

    @app.post(
        "/v1/persons/{person_id}/feedback",
        response_model=schemas.FeedbackOut,
        tags=["persons"],
        responses=err,
        summary="Store a comparison or rating and update the person's posterior online (committed before the reply).",
    )
    def feedback(
        body: schemas.Feedback, person_id: str = PersonPath, key: str | None = Key
    ) -> schemas.FeedbackOut:
        st = svc.holder.current
        j = db.judgments
        with svc.person_lock(person_id), db.write_tx(svc.engine) as conn:
            svc.authorize(conn, key, person_id)
            db.ensure_person(conn, person_id)
            row = svc.lock_person(conn, person_id)
            if body.request_id is not None:
                dup = conn.execute(
                    select(j.c.id).where(j.c.person_id == person_id, j.c.request_id == body.request_id)
                ).first()
                if dup is not None:
                    post = st.posterior_from_json(row.posterior, row.model_version)
                    return schemas.FeedbackOut(
                        person_id=person_id,
                        judgment_id=dup.id,
                        duplicate=True,
                        pairs_folded=0,
                        n_judgments=row.n_judgments,
                        n_folded=int(post.n) if post is not None else 0,
                        model_version=row.model_version or st.version,
                    )
            post, _ = svc.current_posterior(conn, st, person_id, row)
            values = body.model_dump(exclude={"kind"})
            values = {
                "person_id": person_id,
                "kind": body.kind,
                "created_at": db.now(),
                "prompt": values.pop("prompt", ""),
                **values,
            }
            jid = conn.execute(j.insert().values(**values).returning(j.c.id)).scalar_one()
            history: dict[str, list] = {}
            if body.kind == "rating":
                earlier = conn.execute(
                    select(j.c.response, j.c.rating, j.c.weight)
                    .where(
                        j.c.person_id == person_id,
                        j.c.kind == "rating",
                        j.c.prompt == body.prompt,
                        j.c.id < jid,
                    )
                    .order_by(j.c.id)
                ).all()
                history[body.prompt] = [(r.response, float(r.rating), float(r.weight)) for r in earlier]
            pairs = judgment_pairs(
                person_id, _Row(kind=body.kind, **{k: v for k, v in values.items() if k != "kind"}), history
            )
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

    def _posterior_for_read(person_id: str, key: str | None, st: ModelState) -> tuple[Any, Any]:
        with db.read_tx(svc.engine) as conn:
            svc.authorize(conn, key, person_id)
            row = svc.read_person(conn, person_id)
            post, recomputed = svc.current_posterior(conn, st, person_id, row)
        if recomputed:
            svc.store_recomputed(person_id, st, post, row.revision)
        return post, row

    def _score(person_id: str, body: schemas.ScoreIn, key: str | None, st: ModelState) -> dict[str, Any]:
        post, row = _posterior_for_read(person_id, key, st)
        rewards, pop = st.score_with_population(post, body.prompt, body.candidates)
        return {
            "person_id": person_id,
            "rewards": rewards,
            "population_rewards": pop,
            "model_version": st.version,
            "personalized": bool(row is not None and row.n_judgments > 0),
            "posterior": post,
        }

    @app.post(
        "/v1/persons/{person_id}/score",
        response_model=schemas.ScoreOut,
        tags=["persons"],
        responses=err,
        summary="Personalized rewards of candidate responses (with a constraint report when a policy is loaded).",
    )
    def score(body: schemas.ScoreIn, person_id: str = PersonPath, key: str | None = Key) -> schemas.ScoreOut:
        st = svc.holder.current
        s = _score(person_id, body, key, st)
        post = s.pop("posterior")
        constraints = bounded = None
        if st.policy is not None:
            from personalign.bounds.bounded import bounded_reward

            adm, detail = st.constraint_report(body.prompt, body.candidates)
            constraints = schemas.ConstraintReport(admissible=adm, detail=detail)
            personal = st.policy.personal_reward(post, body.prompt, body.candidates)
            bounded = [float(x) for x in bounded_reward(personal, np.asarray(adm, bool))]
        return schemas.ScoreOut(
            **{**s, "rewards": s["rewards"].tolist(), "population_rewards": s["population_rewards"].tolist()},
            constraints=constraints,
            bounded_rewards=bounded,
        )

    @app.post(
        "/v1/persons/{person_id}/rank",
        response_model=schemas.RankOut,
        tags=["persons"],
        responses=err,
        summary="Candidates best first for this person (best-of-n: top_k=1); under a policy, every candidate "
        "that satisfies the universal constraints ranks above every one that does not, and the personal part "
        "is bounded by the trust region.",
    )
    def rank(body: schemas.RankIn, person_id: str = PersonPath, key: str | None = Key) -> schemas.RankOut:
        st = svc.holder.current
        if st.policy is None:
            s = _score(person_id, body, key, st)
            rewards = s["rewards"]
            order = sorted(range(len(rewards)), key=lambda i: (-rewards[i], i))
            ranked = [
                schemas.RankedCandidate(index=i, text=body.candidates[i], reward=float(rewards[i]))
                for i in order
            ]
            fallback = refused = False
            choice = ranked[0].text
        else:
            post, _ = _posterior_for_read(person_id, key, st)
            rk = st.bounded_rank(post, body.prompt, body.candidates)
            ranked = [
                schemas.RankedCandidate(
                    index=int(i), text=body.candidates[int(i)], reward=float(rk.personal[i]),
                    admissible=bool(rk.satisfied[i]), bounded_reward=float(rk.bounded[i]),
                    violations=list(rk.violations[i]),
                )
                for i in rk.order
            ]  # fmt: skip
            fallback, refused, choice = bool(rk.fallback), bool(rk.refused), str(rk.choice)
        if body.top_k:
            ranked = ranked[: body.top_k]
        return schemas.RankOut(
            person_id=person_id,
            ranking=ranked,
            best=ranked[0],
            bounded=st.policy is not None,
            fallback=fallback,
            refused=refused,
            choice=choice,
            model_version=st.version,
        )

    @app.get(
        "/v1/persons/{person_id}",
        response_model=schemas.ProfileOut,
        tags=["persons"],
        responses=err,
        summary="The person's profile: posterior summary, uncertainty, judgment counts, monitor state.",
    )
    def profile(person_id: str = PersonPath, key: str | None = Key) -> schemas.ProfileOut:
        st = svc.holder.current
        post, row = _posterior_for_read(person_id, key, st)
        j = db.judgments
        with db.read_tx(svc.engine) as conn:
            kinds = dict(
                conn.execute(
                    select(j.c.kind, func.count()).where(j.c.person_id == person_id).group_by(j.c.kind)
                ).all()
            )
            # monitors look at the person's recent judgments (bounded, so a profile stays cheap)
            recent = conn.execute(
                select(
                    j.c.kind,
                    j.c.prompt,
                    j.c.chosen,
                    j.c.rejected,
                    j.c.tie,
                    j.c.response,
                    j.c.rating,
                    j.c.weight,
                )
                .where(j.c.person_id == person_id)
                .order_by(j.c.id.desc())
                .limit(MONITOR_WINDOW)
            ).all()[::-1]
        monitors = st.monitors(post, all_pairs(person_id, recent))
        return schemas.ProfileOut(
            person_id=person_id,
            exists=row is not None,
            n_judgments=row.n_judgments if row else 0,
            n_comparisons=int(kinds.get("comparison", 0)),
            n_ratings=int(kinds.get("rating", 0)),
            posterior=schemas.PosteriorSummary(**summarize(post, st.prior())),
            model_version=st.version,
            created_at=row.created_at if row else None,
            updated_at=row.updated_at if row else None,
            monitors=monitors,
        )

    @app.post(
        "/v1/persons/{person_id}/suggest",
        response_model=schemas.SuggestOut,
        tags=["persons"],
        responses=err,
        summary="Which of these candidate questions (pairs) to ask the person next (most informative answer).",
    )
    def suggest(
        body: schemas.SuggestIn, person_id: str = PersonPath, key: str | None = Key
    ) -> schemas.SuggestOut:
        st = svc.holder.current
        post, _ = _posterior_for_read(person_id, key, st)
        df = pd.DataFrame(
            {
                "prompt": [p.prompt for p in body.pairs],
                "chosen": [p.a for p in body.pairs],
                "rejected": [p.b for p in body.pairs],
            }
        )
        i = st.suggest(post, df)
        return schemas.SuggestOut(person_id=person_id, index=i, pair=body.pairs[i], model_version=st.version)

    @app.delete(
        "/v1/persons/{person_id}",
        response_model=schemas.DeleteOut,
        tags=["persons"],
        responses=err,
        summary="Delete everything stored about the person: judgments, posterior and API keys (admin, or the "
        "person's own key).",
    )
    def delete_person(person_id: str = PersonPath, key: str | None = Key) -> schemas.DeleteOut:
        with svc.person_lock(person_id), db.write_tx(svc.engine) as conn:
            svc.authorize(conn, key, person_id)
            counts = db.delete_person(conn, person_id)
        if not any(counts.values()):
            raise HTTPException(404, f"no person {person_id!r}")
        return schemas.DeleteOut(person_id=person_id, deleted=counts)

    @app.post(
        "/v1/persons/{person_id}/keys",
        response_model=schemas.KeyOut,
        status_code=201,
        tags=["admin"],
        responses=err,
        summary="(admin) Create a person-scoped API key (the person is created if new).",
    )
    def create_person_key(
        body: schemas.KeyIn | None = None, person_id: str = PersonPath, key: str | None = Key
    ) -> schemas.KeyOut:
        with db.write_tx(svc.engine) as conn:
            svc.authorize(conn, key, None)
            db.ensure_person(conn, person_id)
            k, kid = create_key(conn, "person", person_id, body.label if body else "")
        return schemas.KeyOut(key=k, key_id=kid, role="person", person_id=person_id)

    @app.delete("/v1/keys/{key_id}", tags=["admin"], responses=err, summary="(admin) Revoke an API key.")
    def revoke_key(key_id: str = Path(..., max_length=32), key: str | None = Key) -> dict[str, Any]:
        with db.write_tx(svc.engine) as conn:
            svc.authorize(conn, key, None)
            n = conn.execute(db.api_keys.delete().where(db.api_keys.c.key_id == key_id)).rowcount
        if not n:
            raise HTTPException(404, f"no key {key_id!r}")
        return {"revoked": key_id}

    @app.get(
        "/v1/persons", tags=["admin"], responses=err, summary="(admin) Persons and their judgment counts."
    )
    def list_persons(limit: int = 1000, offset: int = 0, key: str | None = Key) -> dict[str, Any]:
        limit = max(1, min(limit, 10_000))
        p = db.persons
        with db.read_tx(svc.engine) as conn:
            svc.authorize(conn, key, None)
            rows = conn.execute(
                select(p.c.person_id, p.c.n_judgments, p.c.updated_at)
                .order_by(p.c.person_id)
                .limit(limit)
                .offset(offset)
            ).all()
        return {"persons": [dict(r._mapping) for r in rows], "limit": limit, "offset": offset}

    @app.post(
        "/v1/admin/model/reload",
        response_model=schemas.ReloadOut,
        tags=["admin"],
        responses=err,
        summary="(admin) Load a model directory and switch to it without stopping; in-flight requests finish "
        "on the old model.",
    )
    def reload_model(body: schemas.ReloadIn | None = None, key: str | None = Key) -> schemas.ReloadOut:
        with db.read_tx(svc.engine) as conn:
            svc.authorize(conn, key, None)
        t0 = time.perf_counter()
        new, old_version = svc.holder.reload(body.model_dir if body else None, body.policy if body else None)
        return schemas.ReloadOut(
            model_version=new.version,
            previous_version=old_version,
            model_dir=str(new.model_dir),
            load_seconds=time.perf_counter() - t0,
        )

    @app.get(
        "/v1/metrics", tags=["admin"], responses=err, summary="(admin) Counts, latency percentiles, model."
    )
    def metrics(key: str | None = Key) -> dict[str, Any]:
        with db.read_tx(svc.engine) as conn:
            svc.authorize(conn, key, None)
            n_persons = conn.execute(select(func.count()).select_from(db.persons)).scalar_one()
            n_judg = conn.execute(select(func.count()).select_from(db.judgments)).scalar_one()
        st = svc.holder.current
        return {
            "model_version": st.version,
            "model_dir": str(st.model_dir),
            "model_class": type(st.model).__name__,
            "policy": st.policy_path,
            "reloads": svc.holder.reloads,
            "uptime_s": time.time() - svc.metrics.started,
            "database": {"dialect": svc.engine.dialect.name, "persons": n_persons, "judgments": n_judg},
            "feature_cache": st.lru.stats() if st.lru is not None else None,
            "requests": svc.metrics.snapshot(),
        }

    # the guard wraps everything (even FastAPI's own error middleware) so its 413 and timings cover all requests
    app.add_middleware(_GuardMiddleware, metrics=svc.metrics, max_body=config.max_body_bytes)
    return app


class _GuardMiddleware(_ASGIGuard):
    def __init__(self, app: Callable, metrics: Metrics, max_body: int) -> None:
        super().__init__(app, metrics, max_body)


class _Row:
    """A judgment not yet read back from the database, with the attributes :func:`judgment_pairs` reads."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(
            {"chosen": None, "rejected": None, "tie": False, "response": None, "rating": None}
        )
        self.__dict__.update(kw)


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / several workers: the config comes as JSON in an env variable."""
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise RuntimeError(f"{ENV_CONFIG} is not set")
    return create_app(ServeConfig(**json.loads(raw)))


def config_to_env(config: ServeConfig) -> str:
    return json.dumps(asdict(config))
