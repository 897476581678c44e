"""The service's routes, one module per resource, each an :class:`fastapi.APIRouter` (no closures: the app's state
comes through :mod:`personalign.serve.deps`). Route functions carry no docstring on purpose: FastAPI would publish
it as the operation's description, and each route's ``summary`` already says what it does."""

from __future__ import annotations

from personalign.serve.routes import admin, feedback, health, judgments, page, persons, scoring

ROUTERS = (
    health.router,
    feedback.router,
    scoring.router,
    persons.router,
    judgments.router,
    admin.router,
    page.router,
)

__all__ = ["ROUTERS"]
