"""The partner reports: ``GET /partner/transactions``, ``/partner/settlement`` and its CSV form.

A partner authenticates exactly as on the Wallet API (``qwallet.api.partner_access``) and sees
only its own rows: every query is filtered by the authenticated partner's id, and nothing a
caller sends (a cursor, a date) can name another partner. Every answer is bounded: a listing
page holds at most ``MAX_PAGE_SIZE`` rows of a range of at most 31 days, a settlement at most 31
days. Bad input is answered 400 with the contract's error body (code 101) before any query runs;
unknown or repeated parameters are refused rather than ignored, so a typo is not silently a
different question. See ``docs/api.md`` ("Partner reports") for the parameters and answers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from qwallet.api.auth import ClientAddressResolver, FailedAuthLimiter, PartnerAuthenticator
from qwallet.api.auth import forwarded_for as forwarded_for_header
from qwallet.api.partner_access import PartnerAccess
from qwallet.api.ratelimit import TokenBuckets
from qwallet.api.responses import amount_object, plain_error
from qwallet.api.wallet import HttpError, rate_limited, request_id_from
from qwallet.domain.errors import ErrorCode
from qwallet.domain.ids import is_platform_id
from qwallet.domain.money import CurrencyRegistry
from qwallet.service import partner_reports as reports
from qwallet.settings import Settings
from qwallet.store.sql import Row, SqlDatabase

log = logging.getLogger("qwallet.api")

_encode = msgspec.json.Encoder().encode
_MILLISECONDS = re.compile(r"0|[1-9][0-9]{0,14}")  # below 10**15 ms: the year 33658
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CURSOR_POSITION = re.compile(r"(0|[1-9][0-9]{0,14})\.([A-Za-z0-9-]{1,64})")
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# Report queries run at most this many at a time per server process, and at most
# MAX_REPORTS_IN_FLIGHT wait or run; beyond that the answer is 429 / 104 at once. A report reads
# up to 31 days of a partner's rows; on SQLite its transaction also holds the database's write
# lock, so money calls wait behind it: these bounds keep any number of report requests from
# queueing the money path behind many of them.
MAX_CONCURRENT_REPORTS = 2
MAX_REPORTS_IN_FLIGHT = 32
STATES = {"pending": "PENDING", "confirmed": "CONFIRMED", "rolled_back": "ROLLED_BACK"}


class BadRequest(Exception):
    """A parameter is missing, unknown, repeated or out of range (400 / 101)."""


# -- the opaque cursor ----------------------------------------------------------------------------


def encode_cursor(position: reports.Position) -> str:
    """base64url of ``<created_at_ms>.<qw_transaction_id>``, unpadded. Opaque to callers: only
    its own answers make one, and it can only name a place in the caller's own listing."""
    text = f"{position.created_at_ms}.{position.qw_transaction_id}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> reports.Position:
    if not _CURSOR.fullmatch(cursor):
        raise BadRequest("cursor is not a cursor this API returned.")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise BadRequest("cursor is not a cursor this API returned.") from None
    match = _CURSOR_POSITION.fullmatch(text)
    # The id is compared with a uuid column (PostgreSQL, migration 0014): a forged one that is
    # not a UUID is refused here, as on SQLite, instead of failing in the database.
    if match is None or not is_platform_id(match.group(2)):
        raise BadRequest("cursor is not a cursor this API returned.")
    return reports.Position(int(match.group(1)), match.group(2))


# -- parameters -----------------------------------------------------------------------------------


def _parameters(request: Request, allowed: set[str], required: set[str]) -> dict[str, str]:
    items = request.query_params.multi_items()
    if len(items) > len(allowed):
        raise BadRequest(f"At most {len(allowed)} query parameters: {', '.join(sorted(allowed))}.")
    found: dict[str, str] = {}
    for name, value in items:
        if name not in allowed:
            raise BadRequest(
                f"Unknown query parameter {name[:40]!r}; allowed: {', '.join(sorted(allowed))}."
            )
        if name in found:
            raise BadRequest(f"Query parameter {name!r} is given more than once.")
        found[name] = value
    if missing := sorted(required - set(found)):
        raise BadRequest(f"Missing query parameter(s): {', '.join(missing)}.")
    return found


def _milliseconds(name: str, text: str) -> int:
    if not _MILLISECONDS.fullmatch(text):
        raise BadRequest(f"{name} must be an integer number of milliseconds since the epoch.")
    return int(text)


def _date(name: str, text: str) -> dt.date:
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be a date YYYY-MM-DD (a UTC day).") from None
    if day.year < 1970:
        raise BadRequest(f"{name} must not be before 1970-01-01.")
    return day


def listing_query(request: Request) -> tuple[int, int, int, reports.Position | None]:
    """``fromMs``, ``toMs`` (half-open, at most 31 days), ``limit``, ``cursor``."""
    found = _parameters(request, {"fromMs", "toMs", "limit", "cursor"}, {"fromMs", "toMs"})
    from_ms = _milliseconds("fromMs", found["fromMs"])
    to_ms = _milliseconds("toMs", found["toMs"])
    if to_ms <= from_ms:
        raise BadRequest("toMs must be after fromMs (the range is [fromMs, toMs)).")
    if to_ms - from_ms > reports.MAX_LISTING_RANGE_MS:
        raise BadRequest("The range may span at most 31 days (2678400000 ms).")
    limit = reports.DEFAULT_PAGE_SIZE
    if "limit" in found:
        text = found["limit"]
        if not _LIMIT.fullmatch(text) or int(text) > reports.MAX_PAGE_SIZE:
            raise BadRequest(f"limit must be an integer from 1 to {reports.MAX_PAGE_SIZE}.")
        limit = int(text)
    after = decode_cursor(found["cursor"]) if "cursor" in found else None
    return from_ms, to_ms, limit, after


def settlement_query(request: Request) -> tuple[dt.date, dt.date]:
    """``fromDate`` and ``toDate`` (inclusive UTC days, ``toDate`` defaults to ``fromDate``)."""
    found = _parameters(request, {"fromDate", "toDate"}, {"fromDate"})
    first = _date("fromDate", found["fromDate"])
    last = _date("toDate", found["toDate"]) if "toDate" in found else first
    if last < first:
        raise BadRequest("toDate must not be before fromDate.")
    if (last - first).days >= reports.MAX_SETTLEMENT_DAYS:
        raise BadRequest(f"At most {reports.MAX_SETTLEMENT_DAYS} days per request.")
    return first, last


# -- answers --------------------------------------------------------------------------------------


def transaction_object(row: Row, currencies: CurrencyRegistry) -> dict[str, Any]:
    currency = currencies[str(row["currency"])]
    amount = row["amount_minor"]
    state = str(row["state"])
    return {
        "qwTransactionId": row["qw_transaction_id"],
        "mmTransactionId": row["mm_transaction_id"],
        "kind": "WITHDRAWAL" if row["kind"] == "withdrawal" else "DEPOSIT",
        "state": STATES[state],
        "playerId": row["player_id"],
        # Null only for a rollback that arrived before its original (it blocks a late one).
        "amount": None if amount is None else amount_object(int(amount), currency),
        "currencyCode": currency.code,
        "txDescription": row["description"],
        "rollbackReason": row["rollback_reason"],
        "createdAtMs": int(row["created_at_ms"]),
        "finishedAtMs": None if state == "pending" else int(row["updated_at_ms"]),
    }


def settlement_object(entry: reports.DayTotals, currencies: CurrencyRegistry) -> dict[str, Any]:
    currency = currencies[entry.currency]
    return {
        "date": entry.day.isoformat(),
        "currencyCode": currency.code,
        "withdrawals": {
            "confirmedCount": entry.withdrawals_confirmed_count,
            "confirmedAmount": amount_object(entry.withdrawals_confirmed_minor, currency),
            "rolledBackCount": entry.withdrawals_rolled_back_count,
            "rolledBackAmount": amount_object(entry.withdrawals_rolled_back_minor, currency),
        },
        "deposits": {
            "confirmedCount": entry.deposits_confirmed_count,
            "confirmedAmount": amount_object(entry.deposits_confirmed_minor, currency),
            "rolledBackCount": entry.deposits_rolled_back_count,
            "rolledBackAmount": amount_object(entry.deposits_rolled_back_minor, currency),
        },
        "net": amount_object(entry.net_minor, currency),
    }


def _error(status: int, code: ErrorCode, description: str, retry_after_s: int = 0) -> Response:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="wallet", charset="UTF-8"'
    elif status == 429:
        headers["Retry-After"] = str(retry_after_s)
    return Response(
        plain_error(code, description),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class PartnerReports:
    """Built with the app; ``start`` attaches the store and the shared authentication state."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._currencies = settings.currency_registry
        self._db: SqlDatabase | None = None
        self._access: PartnerAccess | None = None
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_REPORTS)
        self._in_flight = 0

    def start(
        self,
        db: SqlDatabase,
        authenticator: PartnerAuthenticator,
        auth_failures: FailedAuthLimiter,
    ) -> None:
        self._db = db
        # A budget of its own (the Wallet API's partner rate), so that reading reports never
        # spends what the money calls need.
        requests = TokenBuckets(
            self._settings.rate_limit_partner_rps, self._settings.rate_limit_partner_burst
        )
        addresses = ClientAddressResolver(self._settings.trusted_proxies)
        self._access = PartnerAccess(authenticator, auth_failures, addresses, requests)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/partner/transactions", self.transactions, methods=["GET"]),
            Route("/partner/settlement", self.settlement, methods=["GET"]),
            Route("/partner/settlement.csv", self.settlement_csv, methods=["GET"]),
        ]

    async def _answer(self, request: Request, work: Any) -> Response:
        if self._db is None or self._access is None:
            return _error(503, ErrorCode.OTHER, "The server is starting; retry shortly.")
        client = request.scope.get("client")
        try:
            partner = await self._access.partner(
                request.headers.get("authorization", "").encode("latin-1") or None,
                client[0] if client else None,
                forwarded_for_header(request.scope["headers"]),
            )
            if self._in_flight >= MAX_REPORTS_IN_FLIGHT:
                raise rate_limited(1, "too many report requests in progress")
            self._in_flight += 1
            try:
                async with self._slots:
                    response: Response = await work(self._db, partner.id)
            finally:
                self._in_flight -= 1
            return response
        except HttpError as error:
            return _error(error.status, error.code, error.description, error.retry_after_s)
        except BadRequest as error:
            return _error(400, ErrorCode.MALFORMED_REQUEST, str(error))
        except Exception:
            request_id = request_id_from(request.headers.get("x-request-id", "").encode())
            log.exception("partner report failed", extra={"path": request.url.path})
            return _error(
                500, ErrorCode.OTHER, f"Unexpected error (request {request_id}); retry later."
            )

    def _json(self, body: dict[str, Any]) -> Response:
        return Response(_encode(body), media_type="application/json", headers=_NO_STORE)

    async def transactions(self, request: Request) -> Response:
        async def work(db: SqlDatabase, partner_id: int) -> Response:
            from_ms, to_ms, limit, after = listing_query(request)
            rows, position = await reports.list_transactions(
                db, partner_id, from_ms, to_ms, limit, after
            )
            return self._json(
                {
                    "transactions": [transaction_object(row, self._currencies) for row in rows],
                    "nextCursor": None if position is None else encode_cursor(position),
                }
            )

        return await self._answer(request, work)

    async def settlement(self, request: Request) -> Response:
        async def work(db: SqlDatabase, partner_id: int) -> Response:
            first, last = settlement_query(request)
            totals = await reports.settlement(db, partner_id, first, last)
            return self._json(
                {
                    "fromDate": first.isoformat(),
                    "toDate": last.isoformat(),
                    "days": [settlement_object(entry, self._currencies) for entry in totals],
                }
            )

        return await self._answer(request, work)

    async def settlement_csv(self, request: Request) -> Response:
        async def work(db: SqlDatabase, partner_id: int) -> Response:
            first, last = settlement_query(request)
            totals = await reports.settlement(db, partner_id, first, last)
            filename = f"settlement-{first.isoformat()}-{last.isoformat()}.csv"
            return Response(
                reports.csv_text(totals, self._currencies),
                media_type="text/csv; charset=utf-8",
                headers={**_NO_STORE, "Content-Disposition": f'attachment; filename="{filename}"'},
            )

        return await self._answer(request, work)


__all__ = ["PartnerReports", "decode_cursor", "encode_cursor"]
