"""The demo studio's backend: a Starlette app built only on the partner kit.

Routes (the JSON API takes the platform's session token in the body, ``{"token": …}``)::

    GET  /                      the HTML5 game client (reads token, language, currency from its URL)
    GET  /static/…              its script and style sheet
    GET  /healthz               {"ok": true}
    GET  /api/catalog           the shop's items (XAG) and the real-money packs
    POST /api/session           verifySession → player, nickname, balance
    POST /api/balance           getBalance
    POST /api/buy               {"itemId"}: withdraw → grant → confirm (any failure: rollback)
    POST /api/bonus             deposit → confirm
    POST /api/inventory         what the player owns, and the latest real-money orders
    POST /api/orders            {"packId"}: a new order and its purchase message (spec §2.2)
    POST /query-withdrawal      the kit's QueryWithdrawalApp (platform → studio, spec §3)
    POST /pay/quantum           the kit's PaymentCallbackApp (platform → studio, spec §2.3)

The outbox worker runs in the app's lifespan, so confirms and rollbacks the platform did not
acknowledge are retried on the documented schedule while the server runs (and after a restart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from qwallet.demo.game._catalog import ITEMS, PACKS, SHOP_CURRENCY, Item, Pack
from qwallet.demo.game._config import DemoConfig
from qwallet.demo.game._inventory import AlreadyOwnedError, InventoryStore, NotIssuedError
from qwallet.partner import (
    Clock,
    CurrencyMismatchError,
    InsufficientFundsError,
    InvalidAmountError,
    IssuedOrder,
    KitStore,
    LimitExceededError,
    Money,
    NotAllowedError,
    OutcomeUnknownError,
    PartnerKit,
    PaymentCallbackApp,
    PaymentOrder,
    PlayerBlockedError,
    PostgresStore,
    QueryWithdrawalApp,
    RetrySchedule,
    SessionError,
    SQLiteStore,
    SystemClock,
    WalletAPIError,
    WalletClient,
)

__all__ = ["DemoGame", "create_demo_game"]

logger = logging.getLogger("qwallet.demo")

HERE = Path(__file__).parent
MAX_BODY_BYTES = 4096
SESSION_CACHE_S = 60.0
MAX_CACHED_SESSIONS = 10_000
QUERY_PATH = "/query-withdrawal"
CALLBACK_PATH = "/pay/quantum"

_ENCODER = msgspec.json.Encoder(decimal_format="number")


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra


class UndeliverableOrder(Exception):
    """A paid order the game cannot deliver; the platform retries, then shows it to the operator."""


def json_response(payload: Any, status: int = 200) -> Response:
    # msgspec writes Decimals as exact JSON numbers (productPrice); amounts meant as text are
    # converted to str before they get here.
    return Response(_ENCODER.encode(payload), status, media_type="application/json")


def money_json(money: Money) -> dict[str, str]:
    return {"amount": str(money.amount), "currencyCode": money.currency_code}


class DemoGame:
    """The game's state: the kit, its own inventory, and a short cache of verified sessions."""

    def __init__(
        self,
        config: DemoConfig,
        kit: PartnerKit,
        inventory: InventoryStore,
        clock: Clock,
    ) -> None:
        self.config = config
        self.kit = kit
        self.inventory = inventory
        self.clock = clock
        self._sessions: dict[str, tuple[str, str, float]] = {}
        self._player_locks: dict[str, asyncio.Lock] = {}

    # -- helpers -----------------------------------------------------------------------------

    async def _body(self, request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", "Request body too large.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(413, "too_large", "Request body too large.")
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "bad_request", "Body is not JSON.") from None
        if not isinstance(parsed, dict):
            raise ApiError(400, "bad_request", "Body must be a JSON object.")
        return parsed

    @staticmethod
    def _text(body: dict[str, Any], name: str, max_chars: int = 64) -> str:
        value = body.get(name)
        if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
            raise ApiError(400, "bad_request", f"{name} must be a string of 1-{max_chars} chars.")
        return value

    async def _player(self, token: str) -> tuple[str, str]:
        """(playerId, nickname) of a live session, verified at the platform (cached briefly)."""
        now = time.monotonic()
        cached = self._sessions.get(token)
        if cached is not None and cached[2] > now:
            return cached[0], cached[1]
        session = await self.kit.client.verify_session(token)
        if len(self._sessions) >= MAX_CACHED_SESSIONS:
            self._sessions.clear()
        self._sessions[token] = (session.player_id, session.nickname, now + SESSION_CACHE_S)
        return session.player_id, session.nickname

    def _lock(self, player_id: str) -> asyncio.Lock:
        if len(self._player_locks) > MAX_CACHED_SESSIONS:
            self._player_locks = {k: v for k, v in self._player_locks.items() if v.locked()}
        return self._player_locks.setdefault(player_id, asyncio.Lock())

    def endpoint(
        self, handler: Callable[[Request], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler: its result becomes JSON; every failure a JSON error with a status."""

        async def run(request: Request) -> Response:
            try:
                return json_response(await handler(request))
            except ApiError as error:
                return json_response(
                    {"error": error.error, "message": error.message, **error.extra}, error.status
                )
            except Exception as error:
                api_error = _map_error(error)
                if api_error.status >= 500:
                    logger.warning("%s failed: %r", request.url.path, error)
                return json_response(
                    {"error": api_error.error, "message": api_error.message, **api_error.extra},
                    api_error.status,
                )

        return run

    # -- the game's API ----------------------------------------------------------------------

    async def catalog(self, request: Request) -> dict[str, Any]:
        return catalog_json()

    async def session(self, request: Request) -> dict[str, Any]:
        token = self._text(await self._body(request), "token")
        session = await self.kit.client.verify_session(token)
        self._sessions[token] = (
            session.player_id,
            session.nickname,
            time.monotonic() + SESSION_CACHE_S,
        )
        return {
            "playerId": session.player_id,
            "nickname": session.nickname,
            "currencyCode": session.currency_code,
            "language": session.language,
            "balance": money_json(session.balance),
        }

    async def balance(self, request: Request) -> dict[str, Any]:
        token = self._text(await self._body(request), "token")
        return {"balance": money_json(await self.kit.client.get_balance(token))}

    async def buy(self, request: Request) -> dict[str, Any]:
        body = await self._body(request)
        token = self._text(body, "token")
        item = ITEMS.get(self._text(body, "itemId"))
        if item is None or item.price is None:
            raise ApiError(404, "unknown_item", "No such item in the shop.")
        player_id, _ = await self._player(token)
        if item.unique and await self.inventory.owns(player_id, item.id):
            raise ApiError(409, "already_owned", f"You already own the {item.name}.")
        price = Money(item.price, SHOP_CURRENCY)
        # The kit's flow: withdraw once; the block is the follow-up; leaving it normally
        # confirms, any exception (AlreadyOwnedError from a concurrent purchase, a database
        # error…) rolls back and propagates.
        async with self.kit.withdrawal(token, price, f"Demo game: {item.name}") as w:
            await self.inventory.grant(
                f"shop:{w.mm_transaction_id}",
                player_id,
                item.id,
                1,
                "shop",
                w.mm_transaction_id,
                self.clock.now(),
                unique=item.unique,
            )
        assert w.result is not None
        return {
            "item": item_json(item),
            "mmTransactionId": w.mm_transaction_id,
            "qwTransactionId": w.result.qw_transaction_id,
            "balance": money_json(w.result.balance),
            "confirmed": w.acknowledged,
        }

    async def bonus(self, request: Request) -> dict[str, Any]:
        token = self._text(await self._body(request), "token")
        player_id, _ = await self._player(token)
        config = self.config
        async with self._lock(player_id):
            now = self.clock.now()
            last = await self.inventory.last_bonus_at(player_id)
            if last is not None and now - last < config.bonus_cooldown_s:
                wait_s = int(config.bonus_cooldown_s - (now - last)) + 1
                raise ApiError(
                    429,
                    "bonus_cooldown",
                    f"The next bonus is ready in {wait_s} s.",
                    retryAfterS=wait_s,
                )
            balance = await self.kit.client.get_balance(token)
            amount = Money(config.bonus_amount, balance.currency_code)
            async with self.kit.deposit(token, amount, "Demo game: bonus") as d:
                await self.inventory.record_bonus(d.mm_transaction_id, player_id, now)
        try:
            after: dict[str, str] | None = money_json(await self.kit.client.get_balance(token))
        except Exception:
            after = None  # the bonus is confirmed (or queued); the client refreshes later
        return {
            "amount": money_json(amount),
            "mmTransactionId": d.mm_transaction_id,
            "confirmed": d.acknowledged,
            "balance": after,
            "nextBonusInS": config.bonus_cooldown_s,
        }

    async def inventory_view(self, request: Request) -> dict[str, Any]:
        token = self._text(await self._body(request), "token")
        player_id, _ = await self._player(token)
        totals = await self.inventory.totals(player_id)
        grants = await self.inventory.grants(player_id, limit=50)
        orders = await self.inventory.orders(player_id, limit=10)
        return {
            "playerId": player_id,
            "items": [
                {**item_json(ITEMS[item_id]), "quantity": quantity}
                for item_id, quantity in sorted(totals.items())
                if item_id in ITEMS
            ],
            "grants": [
                {
                    "grantId": g.grant_id,
                    "itemId": g.item_id,
                    "quantity": g.quantity,
                    "source": g.source,
                    "reference": g.reference,
                    "grantedAt": g.granted_at,
                }
                for g in grants
            ],
            "orders": [
                {
                    "cpOrderId": o.cp_order_id,
                    "packId": o.pack_id,
                    "price": o.price,
                    "currencyCode": o.currency_code,
                    "createdAt": o.created_at,
                    "status": "delivered" if o.delivered_at is not None else "waiting",
                }
                for o in orders
            ],
        }

    async def create_order(self, request: Request) -> dict[str, Any]:
        body = await self._body(request)
        token = self._text(body, "token")
        pack = PACKS.get(self._text(body, "packId"))
        if pack is None:
            raise ApiError(404, "unknown_pack", "No such pack.")
        player_id, _ = await self._player(token)
        cp_order_id = uuid.uuid4().hex
        # Recorded before the message leaves: the callback delivers only orders issued here.
        await self.inventory.create_order(
            cp_order_id,
            player_id,
            pack.id,
            str(pack.price),
            self.config.pack_currency,
            self.clock.now(),
        )
        # Exactly the purchase message of spec §2.2; the client posts it to the parent page.
        message = {
            "serverId": self.config.server_id,
            "cpOrderId": cp_order_id,
            "productId": pack.id,
            "productName": pack.name,
            "productDesc": pack.description,
            "productNumber": 1,
            "productPrice": pack.price,  # a JSON number, e.g. 4.99
            "extParams": json.dumps(
                {"playerId": player_id, "packId": pack.id}, separators=(",", ":")
            ),
        }
        return {"message": message, "targetOrigin": self.config.origin}

    # -- platform → studio -------------------------------------------------------------------

    async def issued_order(self, cp_order_id: str) -> IssuedOrder | None:
        """The kit's issued-order lookup: what this game issued under ``cp_order_id``.

        The receiver refuses (422) a callback for an order not found here, issued to another
        player, or whose product, price, amount or currency differ, before anything is recorded.
        """
        known = await self.inventory.get_order(cp_order_id)
        if known is None:
            return None
        price = Decimal(known.price)
        return IssuedOrder(
            uid=known.player_id,
            product_id=known.pack_id,
            product_price=price,
            amount=price,  # productNumber is always 1 here
            currency_code=known.currency_code,
        )

    async def deliver(self, order: PaymentOrder) -> None:
        """The payment callback's hook: grant the paid pack to ``uid`` (idempotent by order)."""
        pack = PACKS.get(order.product_id)
        if pack is None:
            raise UndeliverableOrder(f"unknown productId {order.product_id!r}")
        try:
            price = Decimal(order.product_price)
        except ArithmeticError:
            raise UndeliverableOrder(f"unreadable price {order.product_price!r}") from None
        if price != pack.price:
            raise UndeliverableOrder(f"price {order.product_price} is not the {pack.id} price")
        try:
            # Checked again inside the grant's transaction: only an order issued here, to uid.
            granted = await self.inventory.deliver_order(
                order.cp_order_id,
                order.uid,
                pack.id,
                pack.item_id,
                pack.quantity,
                self.clock.now(),
            )
        except NotIssuedError:
            raise UndeliverableOrder(f"order {order.cp_order_id} was not issued here") from None
        logger.info(
            "order %s: %s for %s %s (%s %s by %s)",
            order.cp_order_id,
            pack.id,
            order.uid,
            "delivered" if granted else "already delivered",
            order.amount,
            order.currency_code,
            order.provider,
        )

    # -- lifespan ----------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with self.kit:  # runs the outbox worker; closes the client and the store after
            try:
                yield
            finally:
                await self.inventory.close()


def item_json(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "icon": item.icon,
        "price": None if item.price is None else str(item.price),
        "currencyCode": SHOP_CURRENCY,
        "unique": item.unique,
    }


def pack_json(pack: Pack) -> dict[str, Any]:
    return {
        "id": pack.id,
        "name": pack.name,
        "description": pack.description,
        "icon": pack.icon,
        "price": str(pack.price),
    }


def catalog_json() -> dict[str, Any]:
    return {
        "items": [item_json(item) for item in ITEMS.values() if item.price is not None],
        "packs": [pack_json(pack) for pack in PACKS.values()],
    }


def _map_error(error: Exception) -> ApiError:
    if isinstance(error, AlreadyOwnedError):
        return ApiError(409, "already_owned", "You already own that; nothing was charged.")
    if isinstance(error, InsufficientFundsError):
        extra: dict[str, Any] = {}
        if error.balance is not None:
            extra["balance"] = {"amount": str(error.balance[0]), "currencyCode": error.balance[1]}
        return ApiError(409, "insufficient_funds", "Not enough funds for that.", **extra)
    if isinstance(error, PlayerBlockedError):
        return ApiError(403, "player_blocked", "This account is blocked.")
    if isinstance(error, SessionError):
        return ApiError(401, "session", "Your session has ended; reopen the game from the lobby.")
    if isinstance(error, CurrencyMismatchError):
        return ApiError(422, "currency", f"This game sells for {SHOP_CURRENCY} only.")
    if isinstance(error, LimitExceededError):
        return ApiError(422, "limit", "A spending limit of your account was reached.")
    if isinstance(error, InvalidAmountError):
        return ApiError(422, "amount", "The platform refused the amount.")
    if isinstance(error, NotAllowedError):
        return ApiError(502, "studio_credentials", "The platform refused the game's credentials.")
    if isinstance(error, OutcomeUnknownError):
        return ApiError(
            503,
            "platform_unavailable",
            "The platform did not answer; nothing was charged. Try again in a moment.",
        )
    if isinstance(error, WalletAPIError):
        return ApiError(422, "refused", f"The platform refused: {error.code}.", code=error.code)
    return ApiError(500, "internal", "Something went wrong; nothing was charged.")


def _frame_ancestors(origin: str) -> str:
    """The origins allowed to embed the game: the platform's (both loopback spellings)."""
    origins = [origin]
    for a, b in (("://127.0.0.1", "://localhost"), ("://localhost", "://127.0.0.1")):
        if a in origin:
            origins.append(origin.replace(a, b))
    return " ".join(["'self'", *origins])


def create_demo_game(
    config: DemoConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
    schedule: RetrySchedule | None = None,
    callback_window_s: float = 600.0,
) -> Starlette:
    """The demo studio backend as a Starlette app (serve it with uvicorn, lifespan on).

    ``transport`` replaces real HTTP to the platform (e.g. ``InMemoryWallet().transport``);
    ``clock`` and ``schedule`` go to the kit (tests run the outbox on a fake clock).
    The game's state is on ``app.state.game`` (a ``DemoGame``).
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or SystemClock()
    store: KitStore = (
        PostgresStore(config.kit_database_url)
        if config.kit_database_url
        else SQLiteStore(config.kit_db_path)
    )
    client = WalletClient(
        config.platform_url,
        config.username,
        config.password,
        timeout_s=config.timeout_s,
        transport=transport,
    )
    kit = PartnerKit(client, store, clock=clock, schedule=schedule, id_prefix="demo-")
    game = DemoGame(config, kit, InventoryStore(config.game_db_path), clock)
    templates = Jinja2Templates(directory=HERE / "templates")
    origin = config.origin
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; frame-ancestors {_frame_ancestors(origin)}"
    )

    async def index(request: Request) -> Response:
        page_config = {
            "platformOrigin": origin,
            "serverId": config.server_id,
            "bonusAmount": str(config.bonus_amount),
            "catalog": catalog_json(),
        }
        response = templates.TemplateResponse(request, "game.html", {"page_config": page_config})
        response.headers["Content-Security-Policy"] = csp
        response.headers["Referrer-Policy"] = "no-referrer"  # the URL carries the token
        response.headers["Cache-Control"] = "no-store"
        return response

    async def healthz(request: Request) -> Response:
        return json_response({"ok": True})

    api = game.endpoint
    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/api/catalog", api(game.catalog)),
        Route("/api/session", api(game.session), methods=["POST"]),
        Route("/api/balance", api(game.balance), methods=["POST"]),
        Route("/api/buy", api(game.buy), methods=["POST"]),
        Route("/api/bonus", api(game.bonus), methods=["POST"]),
        Route("/api/inventory", api(game.inventory_view), methods=["POST"]),
        Route("/api/orders", api(game.create_order), methods=["POST"]),
        # The kit's apps are plain ASGI apps: a Route (not a Mount, which would redirect the
        # exact path with a 307) serves them at exactly the URL registered with the platform.
        Route(
            QUERY_PATH, QueryWithdrawalApp(store, [(config.query_username, config.query_password)])
        ),
        Route(
            CALLBACK_PATH,
            PaymentCallbackApp(
                store,
                config.callback_secret,
                game.deliver,
                issued_order=game.issued_order,
                body_format="auto",
                clock=clock,
                window_s=callback_window_s,
            ),
        ),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=game.lifespan)
    app.state.game = game
    return app
