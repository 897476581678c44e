"""personalign.serve: the personalization HTTP service (FastAPI + uvicorn, SQLAlchemy on SQLite or PostgreSQL).

Per-person posteriors live in a database and are updated online from feedback; scores, bounded rankings, profiles
and active questions are served per person behind API keys. Run it with ``personalign serve --model DIR``;
build the app in Python with :func:`personalign.serve.app.create_app`. Modules: ``app`` (the app factory),
``routes`` (one FastAPI router per resource: system, feedback, scoring, persons, keys), ``service`` (the state the
routes share) and ``deps`` (how they reach it: FastAPI dependencies), ``errors`` (the JSON error body),
``middleware`` (body limit, request metrics), ``db`` (tables, durability, migrations), ``auth`` (keys, shared with
the ``serve keys`` CLI), ``schemas`` (bodies and limits), ``state`` (model holder, hot reload, feature cache; its
scoring front is a :class:`~personalign.bounds.BoundedPolicy`), ``launch`` (a server subprocess on loopback),
``demo`` (the demo step).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:  # lazy: importing personalign.serve does not pull in FastAPI
    if name in __all__:
        from personalign.serve import app

        return getattr(app, name)
    raise AttributeError(name)
