"""The HTTP API (FastAPI): personalized scores from per-person posteriors kept in a database and updated online.

Build it with :func:`create_app` (``personalign serve`` does, and runs it with uvicorn). Endpoints (all under
``/v1``, documented at ``/docs`` and ``/openapi.json``):

- ``POST /persons/{id}/feedback``  a comparison or rating; stored (append-only) and folded into the posterior
  in the same transaction; acknowledged only after commit (on SQLite, many judgments share one commit).
- ``POST /persons/{id}/score``     personalized rewards of candidates (+ constraint report with a policy).
- ``POST /persons/{id}/rank``      candidates best first (best-of-n with ``top_k=1``), under the bounds.
- ``GET  /persons/{id}``           profile: posterior summary, uncertainty, judgment counts, monitors.
- ``POST /persons/{id}/suggest``   the most informative next question among candidate pairs.
- ``GET  /persons/{id}/judgments`` the stored judgments (paginated); ``DELETE .../judgments/{jid}`` undoes one
  (the posterior is recomputed from the remaining ones).
- ``POST /persons/{id}/reset``     back to the population: judgments deleted, the prior is the start from then on.
- ``GET  /persons/{id}/export``    everything stored about the person, as a JSON attachment.
- ``DELETE /persons/{id}``         everything about the person (judgments, posterior, keys) is deleted.
- ``POST /persons/{id}/keys``      (admin) a new person-scoped API key.
- ``GET /persons``, ``DELETE /keys/{key_id}``, ``POST /admin/model/reload``, ``GET /metrics`` (admin).
- ``GET /health`` (no key).

Outside ``/v1``: ``GET /people/{id}``, the person's own page (HTML; it signs in with the person's key and calls the
routes above).

Every error is a JSON body ``{"error": {"status", "code", "message", "detail"}}``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import asdict

from fastapi import FastAPI
from starlette.routing import Route

from personalign import __version__
from personalign.serve.errors import install_error_handlers
from personalign.serve.middleware import InflightLimit, RequestGuard
from personalign.serve.routes import ROUTERS
from personalign.serve.service import ServeConfig, Service

ENV_CONFIG = "PERSONALIGN_SERVE_CONFIG"

__all__ = ["ENV_CONFIG", "ServeConfig", "app_from_env", "config_to_env", "create_app"]


def create_app(config: ServeConfig) -> FastAPI:
    """The FastAPI application (connects to the database, migrates it, loads the model)."""
    svc = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        svc.close()

    app = FastAPI(
        lifespan=lifespan,
        title="personalign",
        version=__version__,
        summary="Personalized rewards from per-person preference models, inside universal bounds.",
        description=__doc__,
    )
    app.state.service = svc
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # every route with its path and methods, for the Allow header of a 405 (errors.allowed_methods)
    app.state.plain_routes = [r for router in ROUTERS for r in router.routes] + [
        r for r in app.router.routes if isinstance(r, Route)
    ]
    # the guard wraps the routes and the error handlers, so its 413 and timings cover every request
    app.add_middleware(
        RequestGuard,
        metrics=svc.metrics,
        max_body=config.max_body_bytes,
        body_timeout=config.body_timeout_s,
    )
    # outermost: a request over the in-flight limit is refused (503) before its body is read
    app.add_middleware(InflightLimit, limit=config.max_inflight, metrics=svc.metrics)
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / several workers: the config comes as JSON in an env variable."""
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise RuntimeError(f"{ENV_CONFIG} is not set")
    return create_app(ServeConfig(**json.loads(raw)))


def config_to_env(config: ServeConfig) -> str:
    """The config as the JSON :func:`app_from_env` reads."""
    return json.dumps(asdict(config))
