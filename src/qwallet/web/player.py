"""The player's pages: sign-in, lobby, game page, balance, and the payment endpoints they call.

Pages need a signed-in player (``player_id`` in the session cookie) and redirect to ``/login``
otherwise; JSON endpoints answer 401 instead. Every state-changing request (sign-in, sign-out,
order creation, payment) needs the CSRF token (``qwallet.web.security``): a form field or the
``X-CSRF-Token`` header.

The cookie also carries the player's ``web_generation`` at sign-in, compared with the row on
every request: sign-out, a password change and a block bump it, so a copied cookie dies with the
sign-in it came from. Failed sign-ins are throttled per address and per username and address
(``qwallet.web.sign_in``), before any password hashing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from qwallet.clock import Clock
from qwallet.domain.money import format_amount
from qwallet.payments import (
    Order,
    PartnerMethods,
    PaymentError,
    PaymentProvider,
    PaymentWorker,
    PurchaseMessage,
    create_order,
    get_order,
    offered,
    provider_registry,
)
from qwallet.service import partners, player_logins, player_pages, sessions
from qwallet.service.player_logins import authenticate
from qwallet.settings import Settings
from qwallet.store.sql import SqlDatabase
from qwallet.web.security import csrf_token, require_csrf
from qwallet.web.sign_in import PLAYER_SCOPE, SignInThrottle

MAX_JSON_BYTES = 16 * 1024
PLAYER_KEY = "player_id"
GENERATION_KEY = "player_generation"


class OrderRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: str
    message: PurchaseMessage


class PayRequest(msgspec.Struct, forbid_unknown_fields=True):
    method: str
    option: str | None = None


_decode_order = msgspec.json.Decoder(OrderRequest).decode
_decode_pay = msgspec.json.Decoder(PayRequest).decode

_templates = Jinja2Templates(
    env=Environment(
        loader=PackageLoader("qwallet.web", "templates"),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )
)


def _csp(frame_origin: str | None = None) -> str:
    frames = f"frame-src {frame_origin}; " if frame_origin else "frame-src 'none'; "
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"{frames}connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'; object-src 'none'"
    )


def _secure(response: Response, frame_origin: str | None = None) -> Response:
    response.headers["Content-Security-Policy"] = _csp(frame_origin)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _safe_next(value: object) -> str:
    """Only a local path may follow sign-in (no open redirect to another site)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def _json_error(error: PaymentError) -> Response:
    return JSONResponse(error.as_json(), status_code=error.status)


class PlayerWeb:
    """The player pages. The payment worker that delivers their orders is built and run by the
    composition root (``qwallet.app``), which hands it over as ``worker`` to be woken after a
    payment."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        providers: dict[str, PaymentProvider] | None = None,
    ) -> None:
        self.settings, self.clock = settings, clock
        # What this process can run; which of them an order may use is its partner's setting.
        self.providers: dict[str, PaymentProvider] = (
            provider_registry(settings.payment_sandbox_delay_s) if providers is None else providers
        )
        self._db: SqlDatabase | None = None
        self.worker: PaymentWorker | None = None
        self.throttle = SignInThrottle(settings, clock, PLAYER_SCOPE)

    async def start(self, db: SqlDatabase) -> None:
        # Also checked by ``qwallet serve`` before it listens; here for any other way of
        # running the app: no process serves payments while a production partner lists a
        # sandbox method.
        violations = await partners.sandbox_violations(db)
        if violations:
            raise RuntimeError(
                "refusing to start: partner(s) "
                + ", ".join(violations)
                + " list a sandbox payment method but are not sandbox partners"
            )
        self._db = db

    async def stop(self) -> None:
        self.worker = None  # stopped by its owner, the composition root

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.lobby),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/play/{game}", self.play),
            Route("/me/balance", self.balance),
            Route("/payments/orders", self.create_order, methods=["POST"]),
            Route("/payments/orders/{order_id}", self.show_order, methods=["GET"]),
            Route("/payments/orders/{order_id}/pay", self.pay_order, methods=["POST"]),
            Mount(
                "/static/player",
                StaticFiles(packages=[("qwallet.web", "static/player")]),
                name="player-static",
            ),
        ]

    # -- helpers ------------------------------------------------------------------------------

    @property
    def db(self) -> SqlDatabase:
        assert self._db is not None, "PlayerWeb.start() runs in the application's lifespan"
        return self._db

    async def _player(self, request: Request) -> dict[str, Any] | None:
        player_id = request.session.get(PLAYER_KEY)
        generation = request.session.get(GENERATION_KEY)
        if not isinstance(player_id, str) or not isinstance(generation, int):
            return None
        row = await player_pages.player_for_session(self.db, player_id)
        if row is None or int(row["web_generation"]) != generation:
            # Signed out (here or elsewhere), password changed, blocked, or no such player.
            request.session.pop(PLAYER_KEY, None)
            request.session.pop(GENERATION_KEY, None)
            return None
        row = {key: value for key, value in dict(row).items() if key != "web_generation"}
        currency = self.settings.currency_registry.get(row["currency"])
        minor = int(row["available_minor"])
        return {
            **row,
            "balance": format_amount(minor, currency) if currency else str(minor),
        }

    def _render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        frame_origin: str | None = None,
    ) -> Response:
        context = {"csrf": csrf_token(request), "player": None, **context}
        response = _templates.TemplateResponse(request, name, context, status_code=status)
        return _secure(response, frame_origin)

    def _to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    def _message(
        self, request: Request, player: Any, status: int, title: str, text: str
    ) -> Response:
        return self._render(
            request,
            "player/message.html",
            {"player": player, "title": title, "message": text},
            status=status,
        )

    # -- sign-in ------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        if await self._player(request):
            return RedirectResponse(next_path, status_code=303)
        return self._render(
            request, "player/login.html", {"next": next_path, "username": "", "error": None}
        )

    async def login(self, request: Request) -> Response:
        await require_csrf(request)
        form = await request.form()
        username, password = form.get("username"), form.get("password")
        next_path = _safe_next(form.get("next"))
        shown_name = username[:64] if isinstance(username, str) else ""
        if not isinstance(username, str) or not isinstance(password, str):
            return self._login_refused(request, next_path, shown_name)
        username = username.strip()
        attempt = await self.throttle.attempt(self.db, request, username)
        if attempt.retry_after_s:
            wait = attempt.retry_after_s
            response = self._render(
                request,
                "player/login.html",
                {
                    "next": next_path,
                    "username": shown_name,
                    "error": f"Too many failed sign-ins; try again in {wait} s.",
                },
                status=429,
            )
            response.headers["Retry-After"] = str(wait)
            return response
        player_id = await authenticate(self.db, username, password)
        generation = (
            None if player_id is None else await player_logins.web_generation(self.db, player_id)
        )
        if player_id is None or generation is None:
            return self._login_refused(request, next_path, shown_name)
        await self.throttle.succeeded(self.db, attempt)
        # A fresh session (and CSRF token) at sign-in: nothing planted before it survives.
        request.session.clear()
        request.session[PLAYER_KEY] = player_id
        request.session[GENERATION_KEY] = generation
        csrf_token(request)
        return RedirectResponse(next_path, status_code=303)

    def _login_refused(self, request: Request, next_path: str, username: str) -> Response:
        return self._render(
            request,
            "player/login.html",
            {"next": next_path, "username": username, "error": "Wrong username or password."},
            status=401,
        )

    async def logout(self, request: Request) -> Response:
        await require_csrf(request)
        player = await self._player(request)
        if player is not None:
            # Ends this sign-in everywhere (every copy of the cookie) and the game sessions.
            await player_logins.sign_out(self.db, player["id"], self.clock.now_ms())
        request.session.pop(PLAYER_KEY, None)
        request.session.pop(GENERATION_KEY, None)
        return RedirectResponse("/login", status_code=303)

    # -- pages --------------------------------------------------------------------------------

    async def lobby(self, request: Request) -> Response:
        player = await self._player(request)
        if player is None:
            return self._to_login(request)
        rows = await player_pages.lobby_games(self.db)
        games = [{"name": r["name"], "title": r["display_name"] or r["name"]} for r in rows]
        return self._render(request, "player/lobby.html", {"player": player, "games": games})

    async def play(self, request: Request) -> Response:
        player = await self._player(request)
        if player is None:
            return self._to_login(request)
        name = request.path_params["game"]
        partner = await player_pages.game(self.db, name)
        origin = _origin(partner["client_url"] or "") if partner else None
        if partner is None or origin is None:
            return self._message(request, player, 404, "Game not found", f"No game {name!r}.")
        if player["status"] != "active":
            return self._message(request, player, 403, "Account blocked", "You cannot play now.")
        settings = self.settings
        issued = await sessions.create_session(
            self.db,
            player_id=player["id"],
            partner=partner["name"],
            now_ms=self.clock.now_ms(),
            idle_timeout_s=settings.session_idle_timeout_s,
            lifetime_s=settings.session_lifetime_s,
            game_code=partner["name"],
        )
        # The game validates prices in the partner's currency, the one orders are charged in.
        payment_currency = settings.currency_registry.get(partner["payment_currency"] or "")
        config = {
            "gameOrigin": origin,
            "token": issued.token,
            "csrf": csrf_token(request),
            "paymentDecimals": payment_currency.decimals if payment_currency else 2,
            "balancePollMs": int(settings.balance_poll_s * 1000),
            "orderPollMs": 1000,
        }
        game = {"name": partner["name"], "title": partner["display_name"] or partner["name"]}
        context = {
            "player": player,
            "game": game,
            "launch_url": issued.launch_url,
            "config": config,
        }
        return self._render(request, "player/play.html", context, frame_origin=origin)

    # -- JSON ---------------------------------------------------------------------------------

    async def balance(self, request: Request) -> Response:
        player = await self._player(request)
        if player is None:
            return JSONResponse({"error": "not_signed_in"}, status_code=401)
        return JSONResponse({"balance": player["balance"], "currency": player["currency"]})

    async def _json_body(self, request: Request) -> bytes:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_JSON_BYTES:
                raise PaymentError(413, "too_large", "Request body is too large.")
        return body

    async def _partner_methods(self, partner_id: int) -> PartnerMethods:
        row = await player_pages.partner_methods_row(self.db, partner_id)
        if row is None:
            return PartnerMethods((), False)
        return PartnerMethods.from_row(row["payment_methods"], row["sandbox"])

    async def _order_json(self, order: Order, player: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings
        methods = []
        if order.state in ("created", "declined"):
            partner = await self._partner_methods(order.partner_id)
            for provider in offered(self.providers, order, partner, player["currency"]):
                options = list(getattr(provider, "OPTIONS", ()))
                methods.append(
                    {"method": provider.method, "label": provider.label, "options": options}
                )
        shown = order.as_json(settings.currency_registry, player["currency"])
        if order.state in ("created", "declined"):
            shown["walletPayable"] = any(m["method"] == "wallet" for m in methods)
        return {"order": shown, "methods": methods, "balance": player["balance"]}

    async def create_order(self, request: Request) -> Response:
        player = await self._player(request)
        if player is None:
            return JSONResponse({"error": "not_signed_in"}, status_code=401)
        await require_csrf(request)
        try:
            body = await self._json_body(request)
            try:
                parsed = _decode_order(body)
            except msgspec.ValidationError as error:
                raise PaymentError(400, "invalid_message", str(error)) from None
            except msgspec.DecodeError:
                raise PaymentError(400, "invalid_message", "Body is not JSON.") from None
            order, created = await create_order(
                self.db,
                self.settings.currency_registry,
                player_id=player["id"],
                token=parsed.token,
                message=parsed.message,
                now_ms=self.clock.now_ms(),
            )
        except PaymentError as error:
            return _json_error(error)
        shown = await self._order_json(order, player)
        return JSONResponse(shown, status_code=201 if created else 200)

    async def show_order(self, request: Request) -> Response:
        player = await self._player(request)
        if player is None:
            return JSONResponse({"error": "not_signed_in"}, status_code=401)
        try:
            order = await get_order(self.db, request.path_params["order_id"], player["id"])
        except PaymentError as error:
            return _json_error(error)
        return JSONResponse(await self._order_json(order, player))

    async def pay_order(self, request: Request) -> Response:
        player = await self._player(request)
        if player is None:
            return JSONResponse({"error": "not_signed_in"}, status_code=401)
        await require_csrf(request)
        order_id = request.path_params["order_id"]
        try:
            try:
                parsed = _decode_pay(await self._json_body(request))
            except (msgspec.ValidationError, msgspec.DecodeError) as error:
                raise PaymentError(400, "invalid_request", str(error)) from None
            order = await get_order(self.db, order_id, player["id"])
            provider = self.providers.get(parsed.method)
            if provider is None or not provider.offered_for(order, player["currency"]):
                raise PaymentError(400, "invalid_method", "This payment method is not offered.")
            # Whether the partner offers the method, and whether the player may pay, is decided
            # by ``start`` inside the payment's own transaction, from the database rows.
            order = await provider.start(
                self.db, order_id, player["id"], parsed.option, self.clock.now_ms()
            )
        except PaymentError as error:
            return _json_error(error)
        worker = self.worker
        if worker is not None:
            worker.wake()
        player = await self._player(request) or player
        return JSONResponse(await self._order_json(order, player))
