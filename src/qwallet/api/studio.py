"""Operator API for sandbox partners: fault rules and the protocol report (bearer API keys).

- ``GET /api/partners/{name}/faults`` — the partner's live rules;
- ``POST /api/partners/{name}/faults`` — add a rule (201); refused with 400 (101) for a
  production partner, an unknown partner or a malformed rule, and nothing is written;
- ``DELETE /api/partners/{name}/faults/{id}`` — stop a rule (204);
- ``GET /api/partners/{name}/report?since=…&until=…`` — the protocol report (times in ms since
  the epoch; ``until`` defaults to now, ``since`` to one hour before it).

Authentication and its throttle are the operator API's (``qwallet.api.operator``); every change
is audited with the actor ``api-key:<key name>``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from qwallet.api.operator import OperatorAPI, error_response
from qwallet.clock import Clock
from qwallet.domain.errors import ErrorCode
from qwallet.service import audit, protocol_report, sandbox_faults
from qwallet.service.partners import OperatorError
from qwallet.store.factory import Store

Count = Annotated[int, msgspec.Meta(ge=1, le=sandbox_faults.MAX_COUNT)]
MAX_REPORT_WINDOW_MS = 31 * 24 * 3600 * 1000
DEFAULT_REPORT_WINDOW_MS = 3600 * 1000


class RuleRequest(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: Annotated[str, msgspec.Meta(max_length=32)]
    action: Literal["error", "delay", "drop", "expire_session"]
    next: Count | None = None
    every: Count | None = None
    errorCode: int | None = None
    afterCommit: bool = False
    delayMs: Annotated[int, msgspec.Meta(ge=1, le=sandbox_faults.MAX_DELAY_MS)] | None = None


_decode_rule = msgspec.json.Decoder(RuleRequest).decode
_encode = msgspec.json.Encoder().encode


def _json(payload: object, status: int = 200) -> Response:
    return Response(_encode(payload), status_code=status, media_type="application/json")


def _bad(description: str) -> Response:
    return error_response(400, ErrorCode.MALFORMED_REQUEST, description)


class StudioAPI:
    def __init__(self, operator: OperatorAPI, store: Store, clock: Clock, max_body: int) -> None:
        self._operator, self._store, self._clock = operator, store, clock
        self._max_body = max_body

    ROUTES = (
        ("/api/partners/{name}/faults", "GET", "list_rules"),
        ("/api/partners/{name}/faults", "POST", "add_rule"),
        ("/api/partners/{name}/faults/{rule_id}", "DELETE", "remove_rule"),
        ("/api/partners/{name}/report", "GET", "report"),
    )
    """(path, method, handler name): registered by :func:`routes`."""

    async def list_rules(self, request: Request) -> Response:
        key_name = await self._operator.authenticate(request)
        if isinstance(key_name, Response):
            return key_name
        try:
            rows = await sandbox_faults.list_rules(self._store, request.path_params["name"])
        except OperatorError as error:
            return _bad(str(error))
        return _json({"rules": [sandbox_faults.rule_json(row) for row in rows]})

    async def add_rule(self, request: Request) -> Response:
        key_name = await self._operator.authenticate(request)
        if isinstance(key_name, Response):
            return key_name
        body = await request.body()
        if len(body) > self._max_body:
            return error_response(413, ErrorCode.MALFORMED_REQUEST, "Request body is too large.")
        try:
            rule = _decode_rule(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return _bad(f"Invalid request: {error}.")
        spec = sandbox_faults.RuleSpec(
            endpoint=rule.endpoint,
            action=rule.action,
            next_calls=rule.next,
            every_kth=rule.every,
            error_code=rule.errorCode,
            after_commit=rule.afterCommit,
            delay_ms=rule.delayMs,
        )
        name = request.path_params["name"]
        try:
            rule_id = await sandbox_faults.add_rule(
                self._store,
                name,
                spec,
                operator=audit.api_key_actor(key_name),
                now_ms=self._clock.now_ms(),
            )
            rows = await sandbox_faults.list_rules(self._store, name)
        except OperatorError as error:
            return _bad(str(error))
        created = next(row for row in rows if int(row["id"]) == rule_id)
        return _json(sandbox_faults.rule_json(created), 201)

    async def remove_rule(self, request: Request) -> Response:
        key_name = await self._operator.authenticate(request)
        if isinstance(key_name, Response):
            return key_name
        # Any path segment reaches here (not Starlette's int convertor, whose miss is a bare
        # 404): a rule id that is not a positive decimal number gets the documented 400 / 101.
        text = str(request.path_params["rule_id"])
        if not (text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0):
            return _bad(f"rule id must be a positive integer, not {text[:20]!r}")
        try:
            await sandbox_faults.remove_rule(
                self._store,
                request.path_params["name"],
                int(text),
                operator=audit.api_key_actor(key_name),
                now_ms=self._clock.now_ms(),
            )
        except OperatorError as error:
            return _bad(str(error))
        return Response(status_code=204)

    async def report(self, request: Request) -> Response:
        key_name = await self._operator.authenticate(request)
        if isinstance(key_name, Response):
            return key_name
        now_ms = self._clock.now_ms()
        try:
            until_ms = int(request.query_params.get("until", now_ms))
            since_ms = int(request.query_params.get("since", until_ms - DEFAULT_REPORT_WINDOW_MS))
        except ValueError:
            return _bad("since and until are integers: milliseconds since the epoch.")
        if not 0 <= since_ms < until_ms or until_ms - since_ms > MAX_REPORT_WINDOW_MS:
            return _bad("the window needs 0 <= since < until, at most 31 days long.")
        try:
            payload = await protocol_report.report(
                self._store, request.path_params["name"], since_ms, until_ms, now_ms
            )
        except OperatorError as error:
            return _bad(str(error))
        return _json(payload)


def routes(current: Callable[[], StudioAPI | None]) -> list[BaseRoute]:
    """The routes of :class:`StudioAPI`, for an app that builds it only once the store is open
    (``qwallet.app``, in its lifespan): each request asks ``current()`` for it, 503 before."""

    def delegate(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            studio = current()
            if studio is None:
                return JSONResponse({"detail": "starting"}, status_code=503)
            handler: Callable[[Request], Awaitable[Response]] = getattr(studio, name)
            return await handler(request)

        return endpoint

    return [
        Route(path, delegate(name), methods=[method]) for path, method, name in StudioAPI.ROUTES
    ]


__all__ = ["StudioAPI", "routes"]
