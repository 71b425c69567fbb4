"""Routes of the admin console (``/admin/*``): sign-in, pages, and the actions behind forms.

Every page needs a signed-in operator (else a redirect to the sign-in page); every
state-changing request is a POST carrying the session's CSRF token (else 403); every action is
a call of an operator use case in ``qwallet.service`` with the operator's name as the actor,
which writes the change and its audit entry in one transaction (this module holds no SQL).

The operator's name lives in the signed session cookie under ``operator``, with the account's
``web_generation`` at sign-in, and both are checked against the ``operators`` table on each
request: disabling an account, signing out or a password reset
takes effect at once, for every copy of the cookie. Failed sign-ins are throttled in the
database per address and per username and address (``qwallet.web.sign_in``), so the limit holds
across server processes and nobody can lock an operator out from another address. An unknown
player, transaction or order id is a 404 page.
"""

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
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from qwallet.admin import partners as partner_admin
from qwallet.admin import queries
from qwallet.admin.history import ErrorHistory
from qwallet.admin.settlement import SettlementPages
from qwallet.clock import Clock
from qwallet.domain.errors import WalletError
from qwallet.domain.money import Currency, format_amount, parse_operator_amount
from qwallet.payments.methods import KNOWN_METHODS, SANDBOX_METHODS, split_methods
from qwallet.service import audit, holds, operators, orders_admin, players, reconcile
from qwallet.service.partners import OperatorError
from qwallet.settings import Settings
from qwallet.store.factory import Store
from qwallet.web.security import CSRF_FIELD, csrf_token, require_csrf
from qwallet.web.sign_in import ADMIN_SCOPE, SignInThrottle

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


class AdminConsole:
    """Built with the app; ``store`` is attached when the app's lifespan opens it."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.store: Store | None = None
        self.history = ErrorHistory(clock)
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

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self._page(self.dashboard)),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self._action(self.logout), methods=["POST"]),
            Route("/players", self._page(self.players)),
            Route("/players/{player_id}", self._page(self.player)),
            Route("/players/{player_id}/block", self._action(self.block), methods=["POST"]),
            Route("/players/{player_id}/adjust", self._action(self.adjust), methods=["POST"]),
            Route("/transactions", self._page(self.transactions)),
            Route("/transactions/{qw_id}", self._page(self.transaction)),
            Route("/transactions/{qw_id}/resolve", self._action(self.resolve), methods=["POST"]),
            Route("/orders", self._page(self.orders)),
            Route("/orders/{order_id}", self._page(self.order)),
            Route("/orders/{order_id}/redeliver", self._action(self.redeliver), methods=["POST"]),
            Route("/partners", self._page(self.partners)),
            Route("/partners", self._action(self.create_partner), methods=["POST"]),
            Route("/partners/{name}", self._action(self.update_partner), methods=["POST"]),
            Route("/partners/{name}/rotate", self._action(self.rotate), methods=["POST"]),
            Route("/partners/{name}/revoke-old", self._action(self.revoke_old), methods=["POST"]),
            Route("/holds", self._page(self.holds_page)),
            Route("/holds/run", self._action(self.run_resolver), methods=["POST"]),
            Route("/reconcile", self._page(self.reconcile_page)),
            Route("/reconcile", self._action(self.run_reconcile), methods=["POST"]),
            Route("/audit", self._page(self.audit_page)),
            *SettlementPages(self).routes(self._page),
            Mount("/static", StaticFiles(packages=[("qwallet.admin", "static")]), name="static"),
        ]

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
    def _page_number(request: Request) -> int:
        try:
            return max(0, min(int(request.query_params.get("page", "0")), 10_000))
        except ValueError:
            return 0

    def _who(self, request: Request) -> str:
        return str(request.session[OPERATOR_KEY])

    # -- sign-in -------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", next=_safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        await require_csrf(request)
        form = await self._form(request)
        username, password = form.get("username", "")[:64], form.get("password", "")
        target = _safe_next(form.get("next"))
        if not username:
            return self.render(
                request, "login.html", 401, next=target, error="Wrong username or password."
            )
        # Throttled before scrypt runs; the budgets live in the database (every process).
        attempt = await self.throttle.attempt(self.db, request, username)
        if attempt.retry_after_s:
            response = self.render(
                request,
                "login.html",
                429,
                next=target,
                error=f"Too many failed attempts; try again in {attempt.retry_after_s} s.",
            )
            response.headers["Retry-After"] = str(attempt.retry_after_s)
            return response
        generation = None
        if await operators.authenticate(self.db, username, password):
            generation = await operators.web_generation(self.db, username)
        if generation is None:
            await operators.record_sign_in(
                self.db,
                username,
                succeeded=False,
                address=self.throttle.client_address(request),
                now_ms=self.clock.now_ms(),
            )
            return self.render(
                request, "login.html", 401, next=target, error="Wrong username or password."
            )
        await self.throttle.succeeded(self.db, attempt)
        # A fresh session (and CSRF token) at sign-in: nothing planted before it survives.
        request.session.clear()
        request.session[OPERATOR_KEY] = username
        request.session[GENERATION_KEY] = generation
        csrf_token(request)
        await operators.record_sign_in(
            self.db, username, succeeded=True, address=None, now_ms=self.clock.now_ms()
        )
        return self.back(target)

    async def logout(self, request: Request) -> Response:
        who = self._who(request)
        # Ends every copy of this sign-in's cookie, not only the one in this browser.
        await operators.sign_out(self.db, who, now_ms=self.clock.now_ms())
        request.session.clear()
        return self.back("/admin/login")

    # -- dashboard -----------------------------------------------------------------------------

    async def dashboard(self, request: Request) -> Response:
        self.history.sample()
        cutoff_ms = self.clock.now_ms() - self.settings.hold_window_s * 1000
        data = await queries.dashboard(self.db, cutoff_ms)
        recent = await holds.resolutions(self.db, limit=5)
        return self.render(
            request,
            "dashboard.html",
            data=data,
            chart=self.history.chart(),
            recent=recent,
            order_states=orders_admin.STATES,
        )

    # -- players -------------------------------------------------------------------------------

    async def players(self, request: Request) -> Response:
        query = request.query_params.get("q", "")[:100]
        page = self._page_number(request)
        rows = await queries.search_players(self.db, query, page)
        return self.render(
            request,
            "players.html",
            q=query,
            rows=rows[: queries.PAGE_SIZE],
            page=page,
            has_next=len(rows) > queries.PAGE_SIZE,
        )

    async def player(self, request: Request) -> Response:
        player_id = request.path_params["player_id"]
        await self._require_player(player_id)
        info = await players.show_player(self.db, self.currencies, player_id)
        transactions, adjustments = await queries.player_activity(self.db, player_id)
        entries = await audit.entries(self.db, target=player_id, limit=20)
        return self.render(
            request,
            "player.html",
            player=info,
            transactions=transactions,
            adjustments=adjustments,
            audit_entries=entries,
        )

    async def block(self, request: Request) -> Response:
        player_id = request.path_params["player_id"]
        await self._require_player(player_id)
        form = await self._form(request)
        blocked = form.get("blocked") == "1"
        try:
            await players.set_blocked(
                self.db,
                player_id,
                blocked,
                now_ms=self.clock.now_ms(),
                operator=self._who(request),
                reason=form.get("reason"),
            )
        except players.PlayerNotFound as error:
            raise NotFound(str(error)) from None
        self.flash(request, f"Player {'blocked' if blocked else 'unblocked'}.")
        return self.back(f"/admin/players/{quote(player_id, safe='')}")

    async def adjust(self, request: Request) -> Response:
        player_id = request.path_params["player_id"]
        await self._require_player(player_id)
        back = self.back(f"/admin/players/{quote(player_id, safe='')}")
        form = await self._form(request)
        reason = form.get("reason", "")
        try:
            info = await players.show_player(self.db, self.currencies, player_id)
            currency = self.currencies[info["currencyCode"]]
            if not reason:
                raise OperatorError("An adjustment needs a reason.")
            amount_minor = parse_operator_amount(
                form.get("amount", ""), currency, allow_negative=True
            )
            await players.adjust_balance(
                self.db,
                player_id,
                currency,
                amount_minor,
                reason,
                self._who(request),
                self.clock.now_ms(),
            )
        except (OperatorError, WalletError, ValueError) as error:
            self.flash(request, f"Not adjusted: {_message(error)}", "error")
            return back
        amount_text = format_amount(amount_minor, currency)
        self.flash(request, f"Adjusted by {amount_text} {currency.code}.")
        return back

    # -- transactions --------------------------------------------------------------------------

    async def transactions(self, request: Request) -> Response:
        params = request.query_params
        filters = queries.TransactionFilter(
            **{
                name: params.get(name, "")[:100]
                for name in ("partner", "player", "state", "kind", "date_from", "date_to", "mm_id")
            }
        )
        page = self._page_number(request)
        try:
            rows = await queries.transactions(self.db, filters, page)
            error = None
        except OperatorError as problem:
            rows, error = [], str(problem)
        query = {k: v for k, v in vars(filters).items() if v}
        return self.render(
            request,
            "transactions.html",
            rows=rows[: queries.PAGE_SIZE],
            filters=filters,
            error=error,
            page=page,
            has_next=len(rows) > queries.PAGE_SIZE,
            query=query,
            partner_names=await queries.partner_names(self.db),
            states=queries.TRANSACTION_STATES,
            kinds=queries.KINDS,
        )

    async def transaction(self, request: Request) -> Response:
        qw_id = request.path_params["qw_id"]
        await self._require_transaction(qw_id)
        row, entries = await queries.transaction_detail(self.db, qw_id)
        resolutions = await holds.resolutions(self.db, qw_transaction_id=qw_id, limit=100)
        overdue = row["created_at_ms"] <= self.clock.now_ms() - self.settings.hold_window_s * 1000
        return self.render(
            request,
            "transaction.html",
            tx=row,
            entries=entries,
            resolutions=resolutions,
            overdue=overdue,
        )

    async def resolve(self, request: Request) -> Response:
        qw_id = request.path_params["qw_id"]
        await self._require_transaction(qw_id)
        form = await self._form(request)
        decision, reason = form.get("decision", ""), form.get("reason", "")
        back = self.back(f"/admin/transactions/{quote(qw_id, safe='')}")
        if decision not in ("confirm", "rollback") or not reason:
            self.flash(request, "Choose confirm or roll back, and give a reason.", "error")
            return back
        result = await holds.resolve_by_operator(
            self.db,
            qw_id,
            "confirm" if decision == "confirm" else "rollback",
            reason,
            operator=self._who(request),
            now_ms=self.clock.now_ms(),
        )
        self.flash(request, f"Resolution: {result.action.replace('_', ' ')}.")
        return back

    # -- payment orders ------------------------------------------------------------------------

    async def orders(self, request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in orders_admin.STATES:
            raise OperatorError(f"unknown order state {state[:20]!r}")
        page = self._page_number(request)
        rows = await orders_admin.list_orders(
            self.db, state, limit=queries.PAGE_SIZE + 1, offset=page * queries.PAGE_SIZE
        )
        return self.render(
            request,
            "orders.html",
            rows=rows[: queries.PAGE_SIZE],
            state=state,
            states=orders_admin.STATES,
            counts=await orders_admin.counts_by_state(self.db),
            page=page,
            has_next=len(rows) > queries.PAGE_SIZE,
        )

    async def order(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        await self._require_order(order_id)
        order, attempts = await orders_admin.order_detail(self.db, order_id)
        return self.render(
            request,
            "order.html",
            order=order,
            attempts=attempts,
            redeliverable=order["state"] in orders_admin.REDELIVERABLE,
        )

    async def redeliver(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        await self._require_order(order_id)
        try:
            await orders_admin.redeliver(self.db, order_id, self._who(request), self.clock.now_ms())
            self.flash(request, "Queued for redelivery.")
        except OperatorError as error:
            self.flash(request, str(error), "error")
        return self.back(f"/admin/orders/{quote(order_id, safe='')}")

    # -- partners ------------------------------------------------------------------------------

    async def partners(self, request: Request) -> Response:
        rows = await partner_admin.list_all(self.db)
        return self.render(
            request,
            "partners.html",
            rows=rows,
            ip_lists={row["name"]: json.loads(row["ip_allow"] or "[]") for row in rows},
            method_lists={row["name"]: split_methods(row["payment_methods"]) for row in rows},
            known_methods=KNOWN_METHODS,
            sandbox_methods=SANDBOX_METHODS,
            currency_codes=self.settings.currency_registry.codes(),
        )

    def _shown_once(self, request: Request, shown: partner_admin.ShownOnce) -> Response:
        return self.render(request, "secrets.html", shown=shown)

    @staticmethod
    async def _partner_form(request: Request) -> tuple[dict[str, str], list[str]]:
        """The partner form's text fields, and the payment methods ticked (a repeated field)."""
        form = await request.form()
        methods = [
            value.strip()[:MAX_FIELD_CHARS]
            for value in form.getlist("payment_methods")
            if isinstance(value, str) and value.strip()
        ][: len(KNOWN_METHODS) + 1]
        fields = {
            key: value.strip()[:MAX_FIELD_CHARS]
            for key, value in form.items()
            if isinstance(value, str) and key not in (CSRF_FIELD, "payment_methods")
        }
        return fields, methods

    async def create_partner(self, request: Request) -> Response:
        form, methods = await self._partner_form(request)
        try:
            shown = await partner_admin.create(
                self.db,
                self._who(request),
                form.get("name", ""),
                self.clock.now_ms(),
                display_name=form.get("display_name"),
                client_url=form.get("client_url"),
                callback_url=form.get("callback_url"),
                query_url=form.get("query_url"),
                query_username=form.get("query_username"),
                query_password=form.get("query_password"),
                ip_allow=partner_admin.split_cidrs(form.get("ip_allow", "")),
                currencies=self.settings.currency_registry,
                payment_currency=form.get("payment_currency"),
                sandbox=form.get("sandbox") == "1",
                payment_methods=methods,
                allow_http_callback=form.get("allow_http_callback") == "1",
            )
        except OperatorError as error:
            self.flash(request, f"Partner not created: {error}", "error")
            return self.back("/admin/partners")
        return self._shown_once(request, shown)

    async def update_partner(self, request: Request) -> Response:
        form, methods = await self._partner_form(request)
        name = request.path_params["name"]
        try:
            await partner_admin.update(
                self.db,
                self._who(request),
                name,
                self.clock.now_ms(),
                client_url=form.get("client_url"),
                callback_url=form.get("callback_url"),
                query_url=form.get("query_url"),
                query_username=form.get("query_username"),
                ip_allow=partner_admin.split_cidrs(form.get("ip_allow", "")),
                currencies=self.settings.currency_registry,
                payment_currency=form.get("payment_currency"),
                sandbox=form.get("sandbox") == "1",
                payment_methods=methods,
                allow_http_callback=form.get("allow_http_callback") == "1",
            )
            self.flash(request, f"Partner {name} updated.")
        except OperatorError as error:
            self.flash(request, f"Not updated: {error}", "error")
        return self.back("/admin/partners")

    async def rotate(self, request: Request) -> Response:
        form = await self._form(request)
        try:
            shown = await partner_admin.rotate(
                self.db,
                self._who(request),
                request.path_params["name"],
                form.get("what", ""),
                self.clock.now_ms(),
            )
        except OperatorError as error:
            self.flash(request, str(error), "error")
            return self.back("/admin/partners")
        return self._shown_once(request, shown)

    async def revoke_old(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            count = await partner_admin.revoke_old(
                self.db, self._who(request), name, self.clock.now_ms()
            )
            self.flash(request, f"Revoked {count} old credential(s) of {name}.")
        except OperatorError as error:
            self.flash(request, str(error), "error")
        return self.back("/admin/partners")

    # -- holds ---------------------------------------------------------------------------------

    async def holds_page(self, request: Request) -> Response:
        from qwallet.domain.transactions import Kind

        cutoff_ms = self.clock.now_ms() - self.settings.hold_window_s * 1000
        page = self._page_number(request)
        return self.render(
            request,
            "holds.html",
            withdrawals=await holds.overdue(self.db, Kind.WITHDRAWAL, cutoff_ms, 200),
            deposits=await holds.overdue(self.db, Kind.DEPOSIT, cutoff_ms, 200),
            log=await holds.resolutions(
                self.db, limit=queries.PAGE_SIZE + 1, offset=page * queries.PAGE_SIZE
            ),
            page=page,
            page_size=queries.PAGE_SIZE,
            window_h=self.settings.hold_window_s / 3600,
        )

    async def run_resolver(self, request: Request) -> Response:
        from qwallet.resolver import HoldResolver

        async with HoldResolver(self.db, self.settings, self.clock) as resolver:
            _outcomes, summary = await holds.run_resolver_pass(
                self.db, resolver.run_once, operator=self._who(request), now_ms=self.clock.now_ms
            )
        text = ", ".join(f"{n} {action.replace('_', ' ')}" for action, n in summary.items())
        self.flash(request, f"Resolver pass: {text or 'nothing due'}.")
        return self.back("/admin/holds")

    # -- reconciliation and audit --------------------------------------------------------------

    async def reconcile_page(self, request: Request) -> Response:
        return self.render(request, "reconcile.html", report=None)

    async def run_reconcile(self, request: Request) -> Response:
        report = await reconcile.run_reconcile(
            self.db, operator=self._who(request), now_ms=self.clock.now_ms()
        )
        return self.render(request, "reconcile.html", report=report)

    async def audit_page(self, request: Request) -> Response:
        params = request.query_params
        page = self._page_number(request)
        who, action = params.get("operator") or None, params.get("action") or None
        rows = await audit.entries(
            self.db,
            operator=who,
            action=action,
            limit=queries.PAGE_SIZE + 1,
            offset=page * queries.PAGE_SIZE,
        )
        query = {k: v for k, v in {"operator": who, "action": action}.items() if v}
        return self.render(
            request,
            "audit.html",
            rows=rows[: queries.PAGE_SIZE],
            page=page,
            has_next=len(rows) > queries.PAGE_SIZE,
            who=who or "",
            action=action or "",
            query=query,
        )


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
