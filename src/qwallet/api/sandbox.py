"""The Wallet API's sandbox path: faults on demand and the call log, for sandbox partners only.

``WalletAPI`` sends a call here only when the authenticated partner is a sandbox partner — a
flag read with the credential and cached with it (``Partner.sandbox``), so a production call
pays one attribute test and no query. Here, per call: one transaction takes the faults of the
matching rules (``sandbox_faults.take``), the faults are applied around the real handler, and
one row is written to the call log. A partner switched to production stops meeting faults at
once (``take`` re-checks the flag in the database); its cached flag only routes its calls here
until the credential cache renews (``QWALLET_CREDENTIAL_CACHE_TTL_S``).

How the faults combine on one call: the delays add up; then the first rule (oldest) among the
others decides — ``error`` answers its code before the call runs (or after it committed, with
``after_commit``), ``drop`` runs the call and closes the connection without an answer,
``expire_session`` ends the session and lets the call run (so it meets 111 where a live session
is needed). The call log names that fault, and every fault is in ``sandbox_faults``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from starlette.types import Receive

from qwallet.clock import Clock
from qwallet.domain.errors import ErrorCode, WalletError
from qwallet.service import sandbox_faults
from qwallet.store.port import Partner
from qwallet.store.sql import SqlDatabase

log = logging.getLogger("qwallet.api.sandbox")

Handler = Callable[[Partner, bytes], Awaitable[bytes]]

PURGE_INTERVAL_S = 60.0


class DropConnection(Exception):
    """Raised after a call committed: close the connection without answering."""


class _Peek(msgspec.Struct):
    """The fields the call log and the faults need, read leniently (the handler is strict)."""

    token: str | None = None
    mmTransactionId: str | None = None


_peek = msgspec.json.Decoder(_Peek).decode


def _peek_body(body: bytes) -> _Peek:
    try:
        peeked = _peek(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _Peek()
    if peeked.mmTransactionId is not None and len(peeked.mmTransactionId) > 64:
        peeked.mmTransactionId = None
    return peeked


async def drop_connection(receive: Receive) -> None:
    """Close the client's connection with nothing written (uvicorn's transport, reached through
    the request cycle ``receive`` belongs to). If it cannot be reached, the caller answers
    nothing and uvicorn answers a bare 500 — still no Wallet API answer."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    abort = getattr(transport, "abort", None)
    if callable(abort):
        abort()
        # Let uvicorn see the connection lost before the app returns: it then sends nothing.
        await asyncio.sleep(0)


class SandboxCalls:
    def __init__(self, db: SqlDatabase, clock: Clock, retention_s: int) -> None:
        self._db, self._clock = db, clock
        self._retention_ms = retention_s * 1000
        self._next_purge = 0.0

    async def handle(
        self, partner: Partner, endpoint: str, body: bytes, handler: Handler, request_id: str
    ) -> bytes:
        started_ms = self._clock.now_ms()
        started = time.perf_counter()
        peeked = _peek_body(body)
        faults = await sandbox_faults.take(
            self._db, partner.id, endpoint, peeked.mmTransactionId, request_id, started_ms
        )
        if faults is None:  # switched to production since its credential was cached
            return await handler(partner, body)
        delay_ms = sum(f.delay_ms or 0 for f in faults if f.action == "delay")
        decisive = next((f for f in faults if f.action != "delay"), None)
        shown = decisive or (faults[0] if faults else None)
        status: int | None = 200
        code = 0
        try:
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            if decisive is not None and decisive.action == "expire_session" and peeked.token:
                await sandbox_faults.expire_session(
                    self._db, partner.id, peeked.token, self._clock.now_ms()
                )
            code_given = decisive.error_code if decisive is not None else None
            injected = None if code_given is None else ErrorCode(code_given)
            after_commit = decisive is not None and decisive.after_commit
            rule = decisive.rule_id if decisive is not None else 0
            if injected is not None and not after_commit:
                raise WalletError(injected, f"Injected by sandbox fault rule {rule}.")
            try:
                answer = await handler(partner, body)
            except WalletError:
                if decisive is not None and decisive.action == "drop":
                    raise DropConnection from None  # no answer, whatever it would have been
                raise
            if injected is not None:
                raise WalletError(
                    injected,
                    f"Injected after the commit by sandbox fault rule {rule}.",
                )
            if decisive is not None and decisive.action == "drop":
                raise DropConnection
            return answer
        except WalletError as error:
            status, code = error.code.http_status, int(error.code)
            raise
        except DropConnection:
            status, code = None, 0
            raise
        except Exception:
            status, code = 500, int(ErrorCode.OTHER)
            raise
        finally:
            await self._record(
                sandbox_faults.CallRecord(
                    partner_id=partner.id,
                    at_ms=started_ms,
                    duration_ms=int((time.perf_counter() - started) * 1000),
                    endpoint=endpoint,
                    mm_transaction_id=peeked.mmTransactionId,
                    request_id=request_id,
                    http_status=status,
                    error_code=code,
                    fault_id=shown.id if shown else None,
                )
            )

    async def _record(self, call: sandbox_faults.CallRecord) -> None:
        # The log serves the report; losing a row must never change the studio's answer.
        try:
            await sandbox_faults.record_call(self._db, call)
            if time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + PURGE_INTERVAL_S
                await sandbox_faults.purge_calls(self._db, call.at_ms - self._retention_ms)
        except Exception:
            log.exception("sandbox call log write failed", extra={"request_id": call.request_id})


__all__ = ["DropConnection", "SandboxCalls", "drop_connection"]
