"""The Query Withdrawal endpoint (spec §3): the platform asks for a withdrawal's final state.

The studio mounts ``QueryWithdrawalApp`` at the URL it registered with the platform (any path:
the app answers ``POST`` wherever it is mounted)::

    POST <query URL>            Authorization: Basic <the platform's credentials at the studio>
    {"mmTransactionId": "…", "qwTransactionId": "…"}
    → 200 {"mmTransactionId": "…", "status": "CONFIRMED" | "ROLLED_BACK" | "PENDING" | "UNKNOWN"}

The status is the studio's **decision**, read from the kit's records, not the delivery state of
the outbox: a confirm that was decided but never acknowledged still answers ``CONFIRMED``. The
platform applies what we answer, and the item was delivered; answering anything else would take
the money back for an item the player kept.

=====================================  ==============
kit record                             status
=====================================  ==============
decided confirm (delivered or not)     CONFIRMED
decided rollback (delivered or not)    ROLLED_BACK
withdraw sent / follow-up running      PENDING (the outbox worker turns an abandoned one into a
                                       rollback after ``abandon_after_s``)
no record, or a record whose known     UNKNOWN
qwTransactionId differs
=====================================  ==============

Bad input answers 400 and wrong credentials 401, with the contract's error body; nothing ever
changes on this endpoint (it only reads).

Failed authentications are throttled per client address (``FailureBudget``: ``failure_burst``
failures at once, then one per ``failure_refill_s``; right credentials cost nothing). Once an
address has none left, it is answered 429 with ``Retry-After`` (code 103) **without** checking
its credentials, so guessing cannot go faster than the budget. The address is the ASGI peer
(``scope["client"]``; behind a reverse proxy, configure the server's proxy headers or pass
``client_address``). The buckets are per process: with N processes an address gets N times the
budget.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from qwallet_partner._http import BodyTooLarge, check_basic_auth, lifespan, read_body
from qwallet_partner._store import KitStore, TransactionRecord, WithdrawalStatus
from qwallet_partner._throttle import FailureBudget

__all__ = ["QueryWithdrawalApp", "WithdrawalStatus"]

logger = logging.getLogger("qwallet.partner.query")


_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,64}")
MAX_BODY_BYTES = 4096


class _Query(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    mm_transaction_id: str
    qw_transaction_id: str


class QueryWithdrawalApp:
    """ASGI app answering the platform's Query Withdrawal calls from ``store``."""

    def __init__(
        self,
        store: KitStore,
        credentials: Iterable[tuple[str, str]],
        *,
        failure_burst: int = 10,
        failure_refill_s: float = 10.0,
        client_address: Callable[[Request], str] | None = None,
    ) -> None:
        self.store = store
        self.credentials = tuple(credentials)
        assert self.credentials, "at least one (username, password) pair is needed"
        self.failures = FailureBudget(failure_burst, failure_refill_s)
        self.client_address = client_address or _peer_address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        assert scope["type"] == "http"
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "Only POST is allowed.", headers={"Allow": "POST"})
        address = self.client_address(request)
        if wait_s := self.failures.take(address):
            retry_after = self.failures.retry_after_s(wait_s)
            logger.warning("query from %s throttled: too many failed authentications", address)
            return _error(
                429,
                f"Too many failed authentications; retry after {retry_after} s.",
                code=103,
                headers={"Retry-After": str(retry_after)},
            )
        if not check_basic_auth(request.headers.get("authorization"), self.credentials):
            logger.warning("query from %s: invalid credentials", address)
            return _error(
                401,
                "Missing or invalid credentials.",
                code=103,
                headers={"WWW-Authenticate": 'Basic realm="query-withdrawal"'},
            )
        self.failures.give_back(address)
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return _error(413, f"Body larger than {MAX_BODY_BYTES} bytes.")
        try:
            query = msgspec.json.decode(body, type=_Query)
        except msgspec.ValidationError as exc:
            return _error(400, f"Invalid request: {exc}")
        except msgspec.DecodeError:
            return _error(400, "Body is not valid JSON.")
        if not _PRINTABLE_ASCII.fullmatch(query.mm_transaction_id):
            return _error(400, "mmTransactionId must be 1-64 printable ASCII characters.")
        if not 1 <= len(query.qw_transaction_id) <= 64:
            return _error(400, "qwTransactionId must be 1-64 characters.")
        record = await self.store.get_transaction("withdrawal", query.mm_transaction_id)
        status = status_of(record, query.qw_transaction_id)
        logger.info("query %s → %s", query.mm_transaction_id, status)
        return JSONResponse({"mmTransactionId": query.mm_transaction_id, "status": status})


def _peer_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def status_of(record: TransactionRecord | None, qw_transaction_id: str) -> WithdrawalStatus:
    if record is None:
        return "UNKNOWN"
    if record.qw_transaction_id is not None and record.qw_transaction_id != qw_transaction_id:
        # Not the platform transaction we know under this id: we made no decision about it.
        logger.warning(
            "query for %s names qwTransactionId %s, our record has %s",
            record.mm_transaction_id,
            qw_transaction_id,
            record.qw_transaction_id,
        )
        return "UNKNOWN"
    if record.state == "confirmed":
        return "CONFIRMED"
    if record.state == "rolled_back":
        return "ROLLED_BACK"
    return "PENDING"


def _error(
    status: int, description: str, *, code: int = 101, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(
        {"errorCode": code, "errorDescription": description}, status_code=status, headers=headers
    )
