"""A person's own page (HTML): sign in with their API key, see what the model believes about them, their judgments
with undo, reset, download and delete.

The page holds no data: its script calls the JSON API with the key the person types, kept in the tab's
``sessionStorage`` and sent as ``Authorization: Bearer`` like any API client, so the page adds no new auth scheme
(no cookie, hence nothing for a cross-site request to ride on). Everything it needs ships in the package (template,
script, style sheet); a Content-Security-Policy allows only this origin, so no external script can run on it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import jinja2
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from personalign import __version__
from personalign.serve.deps import PersonPath

router = APIRouter(include_in_schema=False)

ASSETS = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("personalign.serve", "page"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


@lru_cache(maxsize=len(ASSETS))
def _asset(name: str) -> bytes:
    return resources.files("personalign.serve").joinpath("page", name).read_bytes()


@router.get(
    "/people/{person_id}",
    response_class=HTMLResponse,
    summary="The person's own page (HTML): sign in with their key; profile, judgments with undo, reset, "
    "download, delete.",
)
def person_page(person_id: str = PersonPath) -> HTMLResponse:
    html = _env().get_template("person.html.j2").render(person_id=person_id, version=__version__)
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get("/people-assets/{name}", summary="The page's script and style sheet (shipped in the package).")
def asset(name: str) -> Response:
    if name not in ASSETS:  # a fixed list: no path from the request reaches the file system
        raise HTTPException(404, f"no asset {name!r}")
    return Response(_asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)
