"""Liveness and readiness, the one route that needs no key."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from personalign.serve import db
from personalign.serve.deps import Svc
from personalign.serve.service import Service

router = APIRouter(tags=["service"])


@router.get("/v1/health", summary="Liveness and readiness (no key needed).")
def health(svc: Service = Svc) -> dict[str, Any]:
    with db.read_tx(svc.engine) as conn:
        conn.execute(select(1))
    st = svc.holder.current
    return {
        "status": "ok",
        "model_version": st.version,
        "schema_version": svc.schema_version,
        "worker_pid": os.getpid(),  # which worker process answered (with --workers N)
    }
