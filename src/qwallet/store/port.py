"""The storage port: what the wallet service needs from a database, one method per use case.

Each method is one database transaction holding every effect of the call (transaction state,
ledger entries, balance change). Methods raise ``WalletError`` for contract errors and anything
else for unexpected failures, after which nothing of the call has been applied.

The port is at use-case granularity, not row granularity, so that the PostgreSQL adapter can do
each money call in one round trip (a PL/pgSQL function); the SQLite and in-memory adapters run
the pure domain rules in Python over a repository (``qwallet.store.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from qwallet.domain.transactions import Kind


@dataclass(frozen=True, slots=True)
class Partner:
    id: int
    name: str
    ip_allow: tuple[str, ...]
    client_url: str | None
    # Read with the credential and cached with it (qwallet.api.auth), so the Wallet API knows
    # without a query whether the partner may meet sandbox faults (qwallet.api.sandbox).
    sandbox: bool = False


@dataclass(frozen=True, slots=True)
class PartnerCredential:
    partner: Partner
    username: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class SessionView:
    """What ``verifySession`` answers."""

    player_id: str
    nickname: str
    currency: str
    language: str
    available_minor: int


@dataclass(frozen=True, slots=True)
class BalanceView:
    currency: str
    available_minor: int


@dataclass(frozen=True, slots=True)
class BeginCall:
    """withdraw or deposit."""

    partner_id: int
    kind: Kind
    token: str
    mm_transaction_id: str
    amount_minor: int
    currency: str
    description: str | None
    max_balance_minor: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class ConfirmCall:
    partner_id: int
    kind: Kind
    token: str
    mm_transaction_id: str
    amount_minor: int
    currency: str
    now_ms: int


@dataclass(frozen=True, slots=True)
class RollbackCall:
    partner_id: int
    kind: Kind
    token: str
    mm_transaction_id: str
    reason: str | None
    now_ms: int


@dataclass(frozen=True, slots=True)
class MoneyResult:
    """The answer to every successful money call (spec §1.4)."""

    mm_transaction_id: str
    qw_transaction_id: str
    currency: str
    balance_minor: int


class WalletStore(Protocol):
    """The hot path. Implemented by every adapter."""

    async def verify_session(self, partner_id: int, token: str, now_ms: int) -> SessionView: ...

    async def get_balance(self, partner_id: int, token: str, now_ms: int) -> BalanceView: ...

    async def begin(self, call: BeginCall) -> MoneyResult: ...

    async def confirm(self, call: ConfirmCall) -> MoneyResult: ...

    async def rollback(self, call: RollbackCall) -> MoneyResult: ...

    async def find_credential(self, username: str) -> list[PartnerCredential]: ...

    async def find_operator_key(self, key_hash: str) -> str | None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
