"""What every page of the admin console shares: templates, the signed-in operator, flashes,
the page and action wrappers (sign-in, CSRF), lookups that 404. The pages themselves are in
``qwallet.admin.pages``, one module per resource; ``qwallet.admin.console`` assembles them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import wraps
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from qwallet.admin import queries
from qwallet.admin.history import ErrorHistory
from qwallet.clock import Clock
from qwallet.domain.errors import WalletError
from qwallet.domain.money import Currency, format_amount
from qwallet.service import capped, operators
from qwallet.service.keyset import parse_id_cursor
from qwallet.service.partners import OperatorError
from qwallet.settings import Settings
from qwallet.store.factory import Store
from qwallet.web.security import CSRF_FIELD, csrf_token, require_csrf
from qwallet.web.sign_in import ADMIN_SCOPE, SignInThrottle

ResolverPass = Callable[[Store, str], Awaitable[dict[str, int]]]
"""``(store, operator) -> {action: count}``: one resolver pass, audited as that operator."""
Handler = Callable[[Request], Awaitable[Response]]
MAX_FIELD_CHARS = 500
OPERATOR_KEY = "operator"
GENERATION_KEY = "operator_generation"

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _format_ms(value: int | None) -> str:
    if value is None:
        return "—"
    moment = dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty_json(text: str | None) -> str:
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=1, sort_keys=True)
    except ValueError:
        return text


class ConsoleBase:
    """Built with the app; ``store`` is attached when the app's lifespan opens it."""

    def __init__(
        self, settings: Settings, clock: Clock, resolver_pass: ResolverPass | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.store: Store | None = None
        # A pass of the hold resolver for the operator named (the console's button); the
        # composition root (``qwallet.app``) provides it, the console does not import workers.
        self.resolver_pass = resolver_pass
        self.history = ErrorHistory(clock)
        # Background work started by a page (a reconciliation job), stopped with the app.
        self.background: set[asyncio.Task[Any]] = set()
        self.currencies: dict[str, Currency] = {c.code: c for c in settings.currencies}
        self.throttle = SignInThrottle(settings, clock, ADMIN_SCOPE)
        self.env = Environment(
            loader=PackageLoader("qwallet.admin", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["money"] = self._money
        self.env.filters["when"] = _format_ms
        self.env.filters["capped"] = capped.shown
        self.env.filters["pretty_json"] = _pretty_json
        self.env.filters["urlquote"] = lambda value: quote(str(value), safe="")
        self.env.globals["urlencode"] = urlencode

    @asynccontextmanager
    async def sampling(self) -> AsyncIterator[None]:
        """Sample the error counters every minute while the app runs (the dashboard chart)."""
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                self.history.sample()
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.history.interval_ms / 1000)

        task = asyncio.create_task(loop(), name="qwallet-admin-error-history")
        try:
            yield
        finally:
            stop.set()
            await task
            # A job still running is cancelled: it records that the server stopped and gives
            # its lease back (else the lease runs out by itself, reconcile_jobs.LEASE_MS).
            for job in list(self.background):
                job.cancel()
            for job in list(self.background):
                with suppress(asyncio.CancelledError):
                    await job

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def db(self) -> Store:
        if self.store is None:
            raise HTTPException(503, "The console is starting; try again in a moment.")
        return self.store

    def _money(self, minor: int | None, code: str) -> str:
        if minor is None:
            return "—"
        currency = self.currencies.get(code)
        return f"{format_amount(int(minor), currency) if currency else minor} {code}"

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> Response:
        flashes = request.session.pop("flash", []) if "flash" in request.session else []
        html = self.env.get_template(template).render(
            request=request,
            operator=request.session.get("operator"),
            csrf_field=CSRF_FIELD,
            csrf_token=csrf_token(request),
            flashes=flashes,
            nav=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)

    @staticmethod
    def flash(request: Request, message: str, kind: str = "ok") -> None:
        request.session["flash"] = [*request.session.get("flash", []), [kind, message]]

    @staticmethod
    def back(path: str) -> Response:
        return RedirectResponse(path, status_code=303)

    async def _operator(self, request: Request) -> str | None:
        name = request.session.get(OPERATOR_KEY)
        generation = request.session.get(GENERATION_KEY)
        if not isinstance(name, str) or not isinstance(generation, int):
            return None
        if await operators.web_generation(self.db, name) != generation:
            # Signed out (any copy of this cookie), password reset, disabled or removed.
            request.session.pop(OPERATOR_KEY, None)
            request.session.pop(GENERATION_KEY, None)
            return None
        return name

    def _page(self, handler: Handler) -> Handler:
        @wraps(handler)
        async def page(request: Request) -> Response:
            if await self._operator(request) is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return self.back("/admin/login?" + urlencode({"next": target}))
            try:
                return await handler(request)
            except NotFound as error:
                return self.render(request, "error.html", 404, message=str(error))
            except OperatorError as error:
                return self.render(request, "error.html", 400, message=str(error))

        return page

    def _action(self, handler: Handler) -> Handler:
        @wraps(handler)
        async def action(request: Request) -> Response:
            if await self._operator(request) is None:
                raise HTTPException(403, "Sign in first.")
            await require_csrf(request)
            try:
                return await handler(request)
            except NotFound as error:
                return self.render(request, "error.html", 404, message=str(error))

        return action

    async def _require(self, what: str, key: str) -> None:
        """404 (``NotFound``) unless the player, transaction or payment order ``key`` exists."""
        if not await queries.exists(self.db, what, key):
            raise NotFound(f"No {what} {key!r}.")

    async def _require_player(self, player_id: str) -> None:
        await self._require("player", player_id)

    async def _require_transaction(self, qw_id: str) -> None:
        await self._require("transaction", qw_id)

    async def _require_order(self, order_id: str) -> None:
        await self._require("payment order", order_id)

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        form = await request.form()
        return {
            key: value.strip()[:MAX_FIELD_CHARS]
            for key, value in form.items()
            if isinstance(value, str) and key != CSRF_FIELD
        }

    @staticmethod
    def _cursor(request: Request) -> str | None:
        """The keyset position of the page (``?after=``, from the previous page's link)."""
        return request.query_params.get("after", "")[:200] or None

    @classmethod
    def _id_cursor(cls, request: Request) -> int | None:
        return parse_id_cursor(cls._cursor(request))

    def _who(self, request: Request) -> str:
        return str(request.session[OPERATOR_KEY])

    # The same plumbing for the console's page modules (``qwallet.admin.sandbox``).
    page, action, form, who = _page, _action, _form, _who


class NotFound(Exception):
    """The page or action names a player, transaction or order that does not exist (404)."""


def _safe_next(target: str | None) -> str:
    """Only a local console path: never an open redirect."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return "/admin/"


def _message(error: Exception) -> str:
    if isinstance(error, WalletError):
        return error.description
    return str(error)
