"""What routes receive through FastAPI dependencies: the app's :class:`Service`, and per request a
:class:`Context` (the service, the model state the request uses, the caller's API key); plus the shared
path parameter and error responses of the OpenAPI schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from personalign.serve import schemas
from personalign.serve.auth import Principal
from personalign.serve.service import Service
from personalign.serve.state import ModelState

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (alternative header).")


async def service(request: Request) -> Service:
    """The app's service (``app.state.service``, set by :func:`personalign.serve.app.create_app`)."""
    return request.app.state.service


async def api_key(
    creds: HTTPAuthorizationCredentials | None = Security(bearer), xkey: str | None = Security(header_key)
) -> str | None:
    """The key sent as ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    return creds.credentials if creds is not None else xkey


@dataclass(frozen=True)
class Context:
    """One request's view of the app: the service, the model state taken at the request's start (so a hot
    reload cannot change it midway) and the API key sent. The key is checked inside each route's transaction,
    so a malformed body is still answered 422 before any key check."""

    svc: Service
    st: ModelState
    key: str | None

    def authorize(self, conn: Connection, person_id: str | None = None) -> Principal:
        """401/403 unless the key may act on ``person_id`` (None: an admin operation)."""
        return self.svc.authorize(conn, self.key, person_id)

    def read_person(self, person_id: str) -> tuple[Any, Any]:
        """Authorize reading the person: (posterior under this request's model, stored row or None)."""
        return self.svc.posterior_for_read(person_id, self.key, self.st)


async def context(svc: Service = Depends(service), key: str | None = Depends(api_key)) -> Context:
    return Context(svc, svc.holder.current, key)


Svc = Depends(service)
Ctx = Depends(context)
PersonPath = Path(
    ...,
    min_length=1,
    max_length=schemas.MAX_PERSON_ID_CHARS,
    pattern=schemas.PERSON_ID_REGEX,
    description="The person's id.",
)
# 400: a body that is not JSON at all (not UTF-8); 408: a body that stalls; 503: the worker is at its in-flight limit (back-pressure)
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": schemas.ErrorOut} for s in (400, 401, 403, 404, 408, 413, 422, 503)
}
