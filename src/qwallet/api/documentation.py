"""The contract as served: ``GET /openapi.json`` (the document kept in ``qwallet/api``), and
``GET /docs/api`` with its script and style under ``/static/docs`` (package data of
``qwallet.web``, read as files: nothing of that package is imported).

Either answers 404 when the installation lacks the file, rather than failing at start.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

# The API documentation page loads its script and style from /static/docs (no inline code), so
# its policy allows nothing else: no inline script, no other origin, no framing.
API_DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def package_file(package: str, name: str) -> bytes | None:
    try:
        return resources.files(package).joinpath(name).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError):
        return None


async def openapi_document(_request: Request) -> Response:
    document = package_file("qwallet.api", "openapi.json")
    if document is None:
        return JSONResponse({"detail": "OpenAPI document not packaged"}, status_code=404)
    return Response(document, media_type="application/json")


async def api_docs_page(_request: Request) -> Response:
    page = package_file("qwallet.web.static", "api-docs.html")
    if page is None:
        return Response("API docs page not packaged", status_code=404)
    return Response(page, media_type="text/html; charset=utf-8", headers=API_DOCS_HEADERS)


def routes() -> list[BaseRoute]:
    return [
        Route("/openapi.json", openapi_document),
        Route("/docs/api", api_docs_page),
        Mount(
            "/static/docs",
            StaticFiles(packages=[("qwallet.web", "static/docs")]),
            name="docs-static",
        ),
    ]


__all__ = ["API_DOCS_HEADERS", "api_docs_page", "openapi_document", "routes"]
