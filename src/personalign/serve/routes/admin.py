"""Admin routes: API keys, the list of persons, hot model reload and the service's metrics."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select
from starlette.exceptions import HTTPException

from personalign.serve import auth, db, schemas
from personalign.serve.deps import ERRORS, Context, Ctx, PersonPath

router = APIRouter(tags=["admin"], responses=ERRORS)

MAX_PAGE = 10_000  # persons in one page of GET /v1/persons
MAX_OFFSET = 2**62  # fits the databases' 64-bit integers (a larger offset overflowed into a 500)


@router.post(
    "/v1/persons/{person_id}/keys",
    response_model=schemas.KeyOut,
    status_code=201,
    summary="(admin) Create a person-scoped API key (the person is created if new).",
)
def create_person_key(
    body: schemas.KeyIn | None = None, person_id: str = PersonPath, ctx: Context = Ctx
) -> schemas.KeyOut:
    with db.write_tx(ctx.svc.engine) as conn:
        ctx.authorize(conn)
        k, kid = auth.create_person_key(conn, person_id, body.label if body else "")
    return schemas.KeyOut(key=k, key_id=kid, role="person", person_id=person_id)


@router.delete("/v1/keys/{key_id}", summary="(admin) Revoke an API key.")
def revoke_key(
    key_id: str = Path(..., max_length=32, pattern=schemas.NO_NUL), ctx: Context = Ctx
) -> dict[str, Any]:
    with db.write_tx(ctx.svc.engine) as conn:
        ctx.authorize(conn)
        revoked = auth.revoke_key(conn, key_id)
    if not revoked:
        raise HTTPException(404, f"no key {key_id!r}")
    return {"revoked": key_id}


@router.get("/v1/persons", summary="(admin) Persons and their judgment counts.")
def list_persons(
    limit: int = Query(1000, ge=1, le=MAX_PAGE, description="Persons per page."),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Persons to skip (ordered by id)."),
    ctx: Context = Ctx,
) -> dict[str, Any]:
    p = db.persons
    with db.read_tx(ctx.svc.engine) as conn:
        ctx.authorize(conn)
        rows = conn.execute(
            select(p.c.person_id, p.c.n_judgments, p.c.updated_at)
            .order_by(p.c.person_id)
            .limit(limit)
            .offset(offset)
        ).all()
    return {"persons": [dict(r._mapping) for r in rows], "limit": limit, "offset": offset}


@router.post(
    "/v1/admin/model/reload",
    response_model=schemas.ReloadOut,
    summary="(admin) Load a model directory and switch to it without stopping; in-flight requests finish "
    "on the old model. Model and policy paths must lie under the service's model root (else 403).",
)
def reload_model(body: schemas.ReloadIn | None = None, ctx: Context = Ctx) -> schemas.ReloadOut:
    with db.read_tx(ctx.svc.engine) as conn:
        ctx.authorize(conn)
    # only files under the configured model root (403 otherwise, before anything is read)
    model_dir = ctx.svc.confine(body.model_dir if body else None, "model_dir")
    policy = ctx.svc.confine(body.policy if body else None, "policy")
    t0 = time.perf_counter()
    # published for the other workers, which follow within --follow-interval seconds
    new, old_version = ctx.svc.holder.reload(model_dir, policy, publish=ctx.svc.publish)
    return schemas.ReloadOut(
        model_version=new.version,
        previous_version=old_version,
        model_dir=str(new.model_dir),
        load_seconds=time.perf_counter() - t0,
        generation=ctx.svc.holder.generation,
    )


@router.get("/v1/metrics", summary="(admin) Counts, latency percentiles, model.")
def metrics(ctx: Context = Ctx) -> dict[str, Any]:
    svc = ctx.svc
    with db.read_tx(svc.engine) as conn:
        ctx.authorize(conn)
        n_persons = conn.execute(select(func.count()).select_from(db.persons)).scalar_one()
        n_judg = conn.execute(select(func.count()).select_from(db.judgments)).scalar_one()
    st = svc.holder.current
    return {
        "model_version": st.version,
        "model_dir": str(st.model_dir),
        "model_class": type(st.model).__name__,
        "policy": st.policy_path,
        "reloads": svc.holder.reloads,
        # which worker answered, and the served-model generation it runs (every worker follows the newest)
        "worker_pid": os.getpid(),
        "generation": svc.holder.generation,
        "follow_error": svc.follow_error,
        "uptime_s": time.time() - svc.metrics.started,
        "database": {"dialect": svc.engine.dialect.name, "persons": n_persons, "judgments": n_judg},
        "feature_cache": st.lru.stats() if st.lru is not None else None,
        # this worker's back-pressure: its limit, requests in flight now, requests shed (503) since start
        "inflight": svc.metrics.load.stats() if svc.metrics.load is not None else None,
        # SQLite's group commit in this worker (None: one transaction per judgment)
        "group_commit": svc.committer.stats() if svc.committer is not None else None,
        "requests": svc.metrics.snapshot(),
    }
