"""Every error of the API is one JSON body ``{"error": {"status", "code", "message", "detail"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from personalign.errors import PersonalignError

log = logging.getLogger("personalign.serve")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    status: int, message: str, detail: Any = None, headers: dict | None = None
) -> JSONResponse:
    """The API's error body with ``status``; ``code`` is the status's name (:data:`CODES`)."""
    body = {
        "error": {"status": status, "code": CODES.get(status, "error"), "message": message, "detail": detail}
    }
    return JSONResponse(body, status_code=status, headers=headers)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class BodyTimeout(HTTPException):
    """The body did not arrive in time; ``Connection: close`` makes uvicorn drop the half-sent request."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body not received within {seconds:g} s", {"Connection": "close"})


def allowed_methods(req: Request) -> list[str]:
    """Every method some route of the app serves at this request's path (one path may have several routes:
    GET and DELETE /v1/persons/{id}; starlette's 405 names only the first route's). The routes are those
    :func:`personalign.serve.app.create_app` lists in ``app.state.plain_routes`` (FastAPI nests included routers)."""
    methods: set[str] = set()
    for route in getattr(req.app.state, "plain_routes", ()):
        # a method no route has: a route whose path matches answers PARTIAL, any other NONE
        match, _ = route.matches({**req.scope, "method": "(none)"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def http_error(req: Request, exc: HTTPException) -> JSONResponse:
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(req)) or headers.get("Allow", "")
    return error_response(exc.status_code, str(exc.detail), headers=headers or None)


async def validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
    # drop the offending input (it may be a megabyte of text) and keep where/what
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type", "ctx")} for e in exc.errors()]
    return error_response(422, "request does not match the schema", jsonable_encoder(detail))


async def library_error(_req: Request, exc: PersonalignError) -> JSONResponse:
    return error_response(400, str(exc))


async def internal_error(_req: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal error", type(exc).__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Route HTTP, validation, library (bad input: 400) and unexpected (500) errors to the JSON error body."""
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(PersonalignError, library_error)
    app.add_exception_handler(Exception, internal_error)
