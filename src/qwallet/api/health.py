"""``GET /healthz`` (the process answers, and its version) and ``GET /readyz`` (its database
answers too), for load balancers and orchestrators.

``/healthz`` never touches the database, so a slow or absent database does not make a process
look dead; ``/readyz`` pings the store and answers 503 while it does not answer.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from qwallet.monitoring import build
from qwallet.store.factory import Store


class Health:
    """Built with the app; ``start`` attaches the store once it is open."""

    def __init__(self) -> None:
        self._store: Store | None = None

    def start(self, store: Store) -> None:
        self._store = store

    def routes(self) -> list[BaseRoute]:
        return [Route("/healthz", self.healthz), Route("/readyz", self.readyz)]

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": build.version()})

    async def readyz(self, _request: Request) -> Response:
        assert self._store is not None
        try:
            await self._store.ping()
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})


__all__ = ["Health"]
