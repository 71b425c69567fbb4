"""An in-memory store: the Python engine over dictionaries.

For fast tests of the use cases and for kit users who want a platform stand-in without a
database. Each call works on copies and swaps them in only when the call succeeds, so a failing
call changes nothing — the same all-or-nothing guarantee the database adapters give.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from qwallet.domain import ledger
from qwallet.domain.ledger import WalletBalances
from qwallet.domain.sessions import SessionRecord
from qwallet.domain.transactions import Kind, Phase, TransactionRecord
from qwallet.store import engine
from qwallet.store.engine import PlayerRecord
from qwallet.store.port import (
    BalanceView,
    BeginCall,
    ConfirmCall,
    MoneyResult,
    PartnerCredential,
    RollbackCall,
    SessionView,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Entry:
    qw_transaction_id: str
    phase: Phase
    account: ledger.Account
    player_id: str
    partner_id: int
    currency: str
    amount_minor: int


@dataclass
class MemoryState:
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    players: dict[str, PlayerRecord] = field(default_factory=dict)
    transactions: dict[tuple[int, Kind, str], TransactionRecord] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)


class MemoryRepository:
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    def get_session(self, token: str) -> SessionRecord | None:
        return self.state.sessions.get(token)

    def touch_session(self, token: str, now_ms: int) -> None:
        self.state.sessions[token] = replace(self.state.sessions[token], last_seen_at_ms=now_ms)

    def get_player(self, player_id: str) -> PlayerRecord | None:
        return self.state.players.get(player_id)

    def save_player(self, player: PlayerRecord) -> None:
        self.state.players[player.id] = player

    def get_transaction(
        self, partner_id: int, kind: Kind, mm_transaction_id: str
    ) -> TransactionRecord | None:
        return self.state.transactions.get((partner_id, kind, mm_transaction_id))

    def insert_transaction(
        self, record: TransactionRecord, description: str | None, now_ms: int
    ) -> None:
        key = (record.partner_id, record.kind, record.mm_transaction_id)
        assert key not in self.state.transactions, "unique (partner, kind, mmTransactionId)"
        self.state.transactions[key] = record

    def finish_transaction(
        self, record: TransactionRecord, reason: str | None, now_ms: int
    ) -> None:
        self.state.transactions[(record.partner_id, record.kind, record.mm_transaction_id)] = record

    def add_entries(
        self, record: TransactionRecord, phase: Phase, entries: ledger.Movement, now_ms: int
    ) -> None:
        assert sum(delta for _, delta in entries) == 0
        self.state.entries.extend(
            Entry(
                record.qw_transaction_id,
                phase,
                account,
                record.player_id,
                record.partner_id,
                record.currency,
                delta,
            )
            for account, delta in entries
        )


class MemoryStore:
    """``WalletStore`` over ``MemoryState`` (the hot path only; no operator SQL)."""

    def __init__(self) -> None:
        self.state = MemoryState()

    def add_player(
        self,
        player_id: str,
        currency: str,
        available_minor: int,
        *,
        blocked: bool = False,
        daily_withdraw_limit_minor: int | None = None,
    ) -> None:
        self.state.players[player_id] = PlayerRecord(
            id=player_id,
            nickname=player_id,
            currency=currency,
            language="en",
            blocked=blocked,
            balances=WalletBalances(available_minor, 0, 0),
            daily_withdraw_limit_minor=daily_withdraw_limit_minor,
            limit_day=0,
            day_withdrawn_minor=0,
        )

    def add_session(self, session: SessionRecord) -> None:
        self.state.sessions[session.token] = session

    def _run(self, work: Callable[[MemoryRepository], T]) -> T:
        draft = copy.deepcopy(self.state)
        result = work(MemoryRepository(draft))
        self.state = draft
        return result

    async def verify_session(self, partner_id: int, token: str, now_ms: int) -> SessionView:
        return self._run(lambda repo: engine.verify_session(repo, partner_id, token, now_ms))

    async def get_balance(self, partner_id: int, token: str, now_ms: int) -> BalanceView:
        return self._run(lambda repo: engine.get_balance(repo, partner_id, token, now_ms))

    async def begin(self, call: BeginCall) -> MoneyResult:
        return self._run(lambda repo: engine.begin(repo, call))

    async def confirm(self, call: ConfirmCall) -> MoneyResult:
        return self._run(lambda repo: engine.confirm(repo, call))

    async def rollback(self, call: RollbackCall) -> MoneyResult:
        return self._run(lambda repo: engine.rollback(repo, call))

    async def find_credential(self, username: str) -> list[PartnerCredential]:
        return []

    async def find_operator_key(self, key_hash: str) -> str | None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
