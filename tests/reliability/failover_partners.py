"""The partners' side of the failover suite for the hold resolver and the payment worker.

Both ``qwallet serve`` processes run their hold resolver and payment worker with short intervals
while the cluster fails over. On loopback, beside them:

- a *holds* partner that opens withdrawals and never finalizes them. Before each withdraw it
  records its decision in the partner kit's store (confirm, roll back, or nothing: UNKNOWN), so
  whatever moment the resolver asks the kit's real Query Withdrawal endpoint, the answer is the
  partner's final word. Every such hold must end in the state its decision says, with exactly
  one resolution that moved money, however many passes (of either process) asked;
- a *shop* partner whose players buy: orders are created and paid from the wallet through the
  service functions (retried through the failover, as the web page's caller would), and both
  payment workers deliver them to the kit's real callback receiver. The receiver notes every
  request per order: two in flight at once for one order would be two senders. Every order must
  end ``delivered``, and the studio's delivery hook must have run exactly once per order.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx

from qwallet.clock import SystemClock
from qwallet.partner import (
    IssuedOrder,
    PaymentCallbackApp,
    PaymentOrder,
    QueryWithdrawalApp,
    SQLiteStore,
)
from qwallet.payments.messages import PurchaseMessage
from qwallet.payments.orders import create_order
from qwallet.payments.wallet import pay_with_wallet
from qwallet.settings import Settings
from qwallet.store.factory import Store, open_store
from tests.partner.conftest import serve
from tests.reliability.harness import (
    CENTS,
    Ack,
    Caller,
    CallerStats,
    CallFailed,
    Flow,
    World,
    amount_minor,
    amount_text,
    money_body,
)

_T = TypeVar("_T")

# The resolver asks about holds older than the window, every interval; the worker delivers due
# orders every interval. A hold is asked about again after HOLD_RETRY_S when the answer was not
# final (a failed pass, a partner that did not answer).
WORKER_ENV = {
    "QWALLET_HOLD_WINDOW_S": "1",
    "QWALLET_HOLD_RESOLVER_INTERVAL_S": "0.3",
    "QWALLET_HOLD_RETRY_S": "1",
    "QWALLET_HOLD_RETRY_MAX_S": "2",
    "QWALLET_HOLD_QUERY_TIMEOUT_S": "2",
    "QWALLET_PAYMENT_WORKER_INTERVAL_S": "0.2",
    "QWALLET_PAYMENT_RETRY_SCHEDULE_S": "0.5",
    "QWALLET_PAYMENT_MAX_ATTEMPTS": "1000",
    "QWALLET_PAYMENT_CALLBACK_TIMEOUT_S": "2",
}
FATES = ("confirmed", "rolled_back", "unknown")
PRICE = "4.90"
QUERY_USER = "qwallet"
QUERY_PASSWORD = "query-" + secrets.token_hex(8)


@dataclass
class CallbackLog:
    """Every callback request per order, and any that overlapped another for the same order."""

    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    overlaps: list[str] = field(default_factory=list)
    delivered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Logged:
    """ASGI wrapper: reads the body for its ``cpOrderId``, then hands it on unchanged."""

    def __init__(self, app: Any, log: CallbackLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        order = _cp_order_id(body)
        with self.log.lock:
            self.log.requests[order] += 1
            self.log.in_flight[order] += 1
            if self.log.in_flight[order] > 1:
                self.log.overlaps.append(order)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.app(scope, replay, send)
        finally:
            with self.log.lock:
                self.log.in_flight[order] -= 1


def _cp_order_id(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        try:
            return str(json.loads(text).get("cpOrderId", "?"))
        except ValueError:
            return "?"
    return urllib.parse.parse_qs(text).get("cpOrderId", ["?"])[0]


@dataclass
class PartnerSide:
    kit_db: Path
    query_url: str
    callback_url: str
    callback_log: CallbackLog
    issued: dict[str, IssuedOrder]


@contextmanager
def partner_servers(directory: Path, callback_secret: str) -> Iterator[PartnerSide]:
    """The kit's Query Withdrawal endpoint and payment-callback receiver, on loopback."""
    kit_db = directory / "kit.db"
    query_store = SQLiteStore(kit_db)
    callback_store = SQLiteStore(directory / "kit-callbacks.db")
    log = CallbackLog()
    issued: dict[str, IssuedOrder] = {}

    def deliver(order: PaymentOrder) -> None:
        with log.lock:
            log.delivered[order.cp_order_id] += 1

    receiver = PaymentCallbackApp(
        callback_store, callback_secret, deliver, issued_order=issued.get, body_format="form"
    )
    query = QueryWithdrawalApp(query_store, [(QUERY_USER, QUERY_PASSWORD)])
    with serve(query) as query_base, serve(_Logged(receiver, log)) as callback_base:
        yield PartnerSide(kit_db, query_base + "/query", callback_base + "/pay", log, issued)
    asyncio.run(query_store.close())
    asyncio.run(callback_store.close())


# -- abandoned holds -------------------------------------------------------------------------


@dataclass
class Abandoned:
    flow: Flow
    fate: str


async def abandon_holds(
    base_urls: list[str],
    world: World,
    kit_db: Path,
    stop: asyncio.Event,
    made: list[Abandoned],
    stats: CallerStats,
    rng: random.Random,
) -> None:
    """Open withdrawals through alternate servers and never finalize them; the kit knows each
    one's fate before it is sent."""
    kit = SQLiteStore(kit_db)
    clients = [
        httpx.AsyncClient(
            base_url=url,
            auth=(world.username, world.password),
            timeout=httpx.Timeout(30, connect=2.0),
        )
        for url in base_urls
    ]
    try:
        index = 0
        while not stop.is_set():
            fate = rng.choice(FATES)
            flow = Flow(
                rng.choice(world.players),
                "withdrawal",
                f"abandoned-{index}-{secrets.token_hex(4)}",
                rng.randint(1, 5 * CENTS),
            )
            index += 1
            if fate != "unknown":
                amount = Decimal(amount_text(flow.amount_minor))
                now = time.time()
                await kit.start_transaction(
                    "withdrawal",
                    flow.mm_transaction_id,
                    flow.player.token,
                    amount,
                    "XAG",
                    None,
                    now,
                )
                if fate == "confirmed":
                    await kit.decide("withdrawal", flow.mm_transaction_id, "confirm", None, now)
                else:
                    await kit.decide("withdrawal", flow.mm_transaction_id, "rollback", None, now)
            made.append(Abandoned(flow, fate))
            caller = Caller(clients[index % len(clients)], stats, call_deadline_s=120)
            body = money_body(flow.player.token, flow.mm_transaction_id, flow.amount_minor)
            try:
                status, payload, attempts = await caller.call("withdraw", body)
            except CallFailed:
                flow.begin_error = -1
            else:
                if status == 200 and "errorCode" not in payload:
                    flow.acks.append(
                        Ack(
                            "withdraw",
                            str(payload["mmTransactionId"]),
                            str(payload["qwTransactionId"]),
                            amount_minor(payload["balance"]["amount"]),
                            attempts,
                        )
                    )
                else:
                    flow.begin_error = int(payload.get("errorCode", -1))
            await asyncio.sleep(rng.uniform(0.1, 0.4))
    finally:
        for client in clients:
            await client.aclose()
        await kit.close()


# -- paid orders -----------------------------------------------------------------------------


async def _until_done(operation: Callable[[], Awaitable[_T]], deadline_s: float = 120) -> _T:
    """Retry an idempotent service call through the failover (its errors are the store's)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await operation()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def buy(
    database_url: str,
    world: World,
    partner: PartnerSide,
    stop: asyncio.Event,
    orders: list[str],
    rng: random.Random,
) -> None:
    """Create and pay orders from the wallet, one every few hundred milliseconds."""
    settings = Settings(database_url=database_url)
    store: Store = await _until_done(lambda: open_store(settings))
    clock = SystemClock()
    try:
        while not stop.is_set():
            buyer = rng.choice(world.players)
            cp_order_id = secrets.token_hex(8)
            partner.issued[cp_order_id] = IssuedOrder(buyer.player_id)
            message = PurchaseMessage(
                server_id=b"10001",  # type: ignore[arg-type]
                cp_order_id=cp_order_id,
                product_id="gems.100",
                product_price=PRICE.encode(),  # type: ignore[arg-type]
                ext_params="x=1",
            )
            order, _ = await _until_done(
                lambda buyer=buyer, message=message: create_order(  # type: ignore[misc]
                    store,
                    settings.currency_registry,
                    player_id=buyer.player_id,
                    token=buyer.token,
                    message=message,
                    now_ms=clock.now_ms(),
                )
            )
            await _until_done(
                lambda order=order, buyer=buyer: pay_with_wallet(  # type: ignore[misc]
                    store, order.id, buyer.player_id, clock.now_ms()
                )
            )
            orders.append(order.id)
            await asyncio.sleep(rng.uniform(0.1, 0.5))
    finally:
        await store.close()


# -- afterwards ------------------------------------------------------------------------------


async def _fetch(database_url: str, sql: str, *args: object) -> list[dict[str, Any]]:
    store = await open_store(Settings(database_url=database_url))
    try:
        async with store.transaction() as tx:
            return [dict(row) for row in await tx.fetch(sql, *args)]
    finally:
        await store.close()


def settled(database_url: str, holds_partner_id: int, orders: list[str]) -> tuple[int, int]:
    """(holds of the holds partner still pending, orders not yet delivered)."""
    pending = asyncio.run(
        _fetch(
            database_url,
            "SELECT COUNT(*) AS n FROM transactions WHERE partner_id = $1 AND state = 'pending'",
            holds_partner_id,
        )
    )
    states = asyncio.run(_fetch(database_url, "SELECT id, state FROM payment_orders"))
    undelivered = sum(
        1 for row in states if row["id"] in set(orders) and row["state"] != "delivered"
    )
    return int(pending[0]["n"]), undelivered


def wait_settled(
    database_url: str, holds_partner_id: int, orders: list[str], timeout_s: float
) -> float:
    """Wait until the resolver finalized every hold and the workers delivered every order (the
    servers still running); the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if settled(database_url, holds_partner_id, orders) == (0, 0):
            break
        time.sleep(0.5)
    return time.monotonic() - started


@dataclass
class WorkerVerdict:
    problems: list[str] = field(default_factory=list)
    checks: int = 0
    figures: dict[str, int] = field(default_factory=dict)

    def check(self, condition: bool, message: str) -> None:
        self.checks += 1
        if not condition and len(self.problems) < 50:
            self.problems.append(message)


def check_workers(
    database_url: str,
    holds_world: World,
    abandoned: list[Abandoned],
    orders: list[str],
    log: CallbackLog,
) -> WorkerVerdict:
    """The resolver's and the payment worker's guarantees, from the database and the partner.

    Sets each abandoned flow's ``final`` to what its fate says, for the history checker."""
    verdict = WorkerVerdict()
    rows = {
        str(row["mm_transaction_id"]): row
        for row in asyncio.run(
            _fetch(
                database_url,
                "SELECT * FROM transactions WHERE partner_id = $1",
                holds_world.partner_id,
            )
        )
    }
    resolutions: dict[str, list[str]] = defaultdict(list)
    for row in asyncio.run(
        _fetch(database_url, "SELECT qw_transaction_id, action FROM hold_resolutions")
    ):
        resolutions[str(row["qw_transaction_id"])].append(str(row["action"]))
    expected = {"confirmed": "confirmed", "rolled_back": "rolled_back", "unknown": "rolled_back"}
    resolved = 0
    for item in abandoned:
        flow, stored = item.flow, rows.get(item.flow.mm_transaction_id)
        if stored is None:  # never reached the database: nothing may have been acknowledged
            verdict.check(not flow.acks, f"{flow.mm_transaction_id}: acknowledged, not stored")
            continue
        if stored["begin_balance_minor"] is None:
            continue  # refused (121): no hold, nothing to resolve
        flow.final = expected[item.fate]
        actions = resolutions[str(stored["qw_transaction_id"])]
        moved = [a for a in actions if a in ("confirmed", "rolled_back")]
        verdict.check(
            moved == [flow.final],
            f"{flow.mm_transaction_id} (partner: {item.fate}): resolutions {actions}",
        )
        resolved += 1
    states = {
        str(row["id"]): row
        for row in asyncio.run(
            _fetch(database_url, "SELECT id, cp_order_id, state FROM payment_orders")
        )
    }
    resent = 0
    for order_id in orders:
        order = states.get(order_id)
        verdict.check(order is not None, f"order {order_id} missing")
        if order is None:
            continue
        cp = str(order["cp_order_id"])
        verdict.check(order["state"] == "delivered", f"order {order_id}: {order['state']}")
        verdict.check(
            log.delivered.get(cp, 0) == 1, f"order {cp} delivered {log.delivered.get(cp, 0)} times"
        )
        resent += max(0, log.requests.get(cp, 0) - 1)
    verdict.check(not log.overlaps, f"two senders at once for orders {log.overlaps}")
    verdict.figures = {
        "holdsAbandoned": resolved,
        "holdsResolvedByResolver": resolved,
        "resolverPassesAsked": sum(
            len(resolutions[str(r["qw_transaction_id"])]) for r in rows.values()
        ),
        "ordersPaid": len(orders),
        "ordersDelivered": sum(1 for o in orders if states.get(o, {}).get("state") == "delivered"),
        "callbacksSent": sum(log.requests.values()),
        "callbacksResent": resent,
        "callbackOverlaps": len(log.overlaps),
    }
    return verdict


__all__ = [
    "FATES",
    "PRICE",
    "QUERY_PASSWORD",
    "QUERY_USER",
    "WORKER_ENV",
    "Abandoned",
    "CallbackLog",
    "PartnerSide",
    "WorkerVerdict",
    "abandon_holds",
    "buy",
    "check_workers",
    "partner_servers",
    "settled",
    "wait_settled",
]
