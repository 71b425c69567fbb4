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

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from qwallet.admin import queries
from qwallet.admin.base import GENERATION_KEY, OPERATOR_KEY, ConsoleBase, _safe_next
from qwallet.admin.pages.audit import AuditPages
from qwallet.admin.pages.holds import HoldPages
from qwallet.admin.pages.orders import OrderPages
from qwallet.admin.pages.partners import PartnerPages
from qwallet.admin.pages.players import PlayerPages
from qwallet.admin.pages.transactions import TransactionPages
from qwallet.admin.sandbox import SandboxPages
from qwallet.admin.settlement import SettlementPages
from qwallet.admin.studio_check import studio_check_routes
from qwallet.service import capped, holds, operators, orders_admin
from qwallet.web.security import csrf_token, require_csrf


class AdminConsole(
    PlayerPages, TransactionPages, OrderPages, PartnerPages, HoldPages, AuditPages, ConsoleBase
):
    """Built with the app; ``store`` is attached when the app's lifespan opens it. Sign-in and
    the dashboard are here, the pages of each resource in ``qwallet.admin.pages``."""

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
            *studio_check_routes(self),
            *SandboxPages(self).routes(),
            *SettlementPages(self).routes(self._page),
            Mount("/static", StaticFiles(packages=[("qwallet.admin", "static")]), name="static"),
        ]

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
            count_cap=capped.COUNT_CAP,
        )
