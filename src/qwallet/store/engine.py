"""The wallet use cases in Python, over a row-level repository.

Used by the SQLite and in-memory adapters. The caller runs each function inside one database
transaction (SQLite: ``BEGIN IMMEDIATE``, so writers are serialized and no concurrent duplicate can
interleave); a ``WalletError`` or any other exception rolls the whole call back.

The PostgreSQL adapter implements the same steps in PL/pgSQL; keep the order of checks here and
there identical: session → currency → state machine → limits → funds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from qwallet.domain import ledger
from qwallet.domain.errors import ErrorCode, WalletError
from qwallet.domain.ids import new_transaction_id
from qwallet.domain.ledger import WalletBalances
from qwallet.domain.sessions import SessionRecord, utc_day
from qwallet.domain.transactions import (
    Action,
    Kind,
    Phase,
    State,
    TransactionRecord,
    decide_begin,
    decide_confirm,
    decide_rollback,
)
from qwallet.store.port import (
    BalanceView,
    BeginCall,
    ConfirmCall,
    MoneyResult,
    RollbackCall,
    SessionView,
)


@dataclass(frozen=True, slots=True)
class PlayerRecord:
    id: str
    nickname: str
    currency: str
    language: str
    blocked: bool
    balances: WalletBalances
    daily_withdraw_limit_minor: int | None
    limit_day: int
    day_withdrawn_minor: int


class Repository(Protocol):
    """Row access inside one open transaction. Repositories never commit."""

    def get_session(self, token: str) -> SessionRecord | None: ...

    def touch_session(self, token: str, now_ms: int) -> None: ...

    def get_player(self, player_id: str) -> PlayerRecord | None: ...

    def save_player(self, player: PlayerRecord) -> None: ...

    def get_transaction(
        self, partner_id: int, kind: Kind, mm_transaction_id: str
    ) -> TransactionRecord | None: ...

    def insert_transaction(
        self, record: TransactionRecord, description: str | None, now_ms: int
    ) -> None: ...

    def finish_transaction(
        self, record: TransactionRecord, reason: str | None, now_ms: int
    ) -> None: ...

    def add_entries(
        self,
        record: TransactionRecord,
        phase: Phase,
        entries: ledger.Movement,
        now_ms: int,
    ) -> None: ...


def _session_player(
    repo: Repository, partner_id: int, token: str, now_ms: int, *, live: bool
) -> tuple[SessionRecord, PlayerRecord]:
    session = repo.get_session(token)
    # A token of another partner is as unknown as a made-up one.
    if session is None or session.partner_id != partner_id:
        raise WalletError(ErrorCode.UNKNOWN_SESSION)
    player = repo.get_player(session.player_id)
    assert player is not None, "sessions reference existing players"
    if live:
        # Revocation (sign-out, block) stops new calls only. Confirm and rollback finish money
        # already held and are retried by the partner for 48 hours: refusing them would leave
        # the funds held until the hold resolver steps in.
        if session.revoked_at_ms is not None:
            raise WalletError(ErrorCode.UNKNOWN_SESSION)
        if session.is_expired(now_ms):
            raise WalletError(ErrorCode.SESSION_EXPIRED)
        if player.blocked:
            raise WalletError(ErrorCode.PLAYER_BLOCKED)
        if session.needs_touch(now_ms):
            repo.touch_session(token, now_ms)
    return session, player


def verify_session(repo: Repository, partner_id: int, token: str, now_ms: int) -> SessionView:
    _, player = _session_player(repo, partner_id, token, now_ms, live=True)
    return SessionView(
        player.id,
        player.nickname,
        player.currency,
        player.language,
        player.balances.available_minor,
    )


def get_balance(repo: Repository, partner_id: int, token: str, now_ms: int) -> BalanceView:
    _, player = _session_player(repo, partner_id, token, now_ms, live=True)
    return BalanceView(player.currency, player.balances.available_minor)


def _result(record: TransactionRecord, balance_minor: int | None) -> MoneyResult:
    assert balance_minor is not None
    return MoneyResult(
        record.mm_transaction_id, record.qw_transaction_id, record.currency, balance_minor
    )


def begin(repo: Repository, call: BeginCall) -> MoneyResult:
    """withdraw / deposit: open a pending transaction (or replay the first answer)."""
    _, player = _session_player(repo, call.partner_id, call.token, call.now_ms, live=True)
    if call.currency != player.currency:
        raise WalletError(ErrorCode.CURRENCY_MISMATCH)
    existing = repo.get_transaction(call.partner_id, call.kind, call.mm_transaction_id)
    action = decide_begin(
        existing, player_id=player.id, amount_minor=call.amount_minor, currency=call.currency
    )
    if action is Action.REPLAY:
        assert existing is not None
        return _result(existing, existing.begin_balance_minor)

    balances = player.balances
    limit_day, day_withdrawn = player.limit_day, player.day_withdrawn_minor
    if call.kind is Kind.WITHDRAWAL:
        today = utc_day(call.now_ms)
        if limit_day != today:
            limit_day, day_withdrawn = today, 0
        day_withdrawn += call.amount_minor
        limit = player.daily_withdraw_limit_minor
        if limit is not None and day_withdrawn > limit:
            raise WalletError(ErrorCode.LIMIT_EXCEEDED, "Daily withdrawal limit exceeded.")
        if balances.available_minor < call.amount_minor:
            raise WalletError(ErrorCode.INSUFFICIENT_FUNDS, balance=balances.available_minor)
    elif (
        balances.available_minor + balances.pending_in_minor + call.amount_minor
        > call.max_balance_minor
    ):
        raise WalletError(
            ErrorCode.INVALID_AMOUNT, "Deposit would take the wallet above its maximum balance."
        )

    entries = ledger.movement(call.kind, Phase.BEGIN, call.amount_minor)
    balances = balances.apply(entries)
    record = TransactionRecord(
        qw_transaction_id=new_transaction_id(call.now_ms),
        partner_id=call.partner_id,
        kind=call.kind,
        mm_transaction_id=call.mm_transaction_id,
        player_id=player.id,
        amount_minor=call.amount_minor,
        currency=call.currency,
        state=State.PENDING,
        begin_balance_minor=balances.available_minor,
        final_balance_minor=None,
    )
    repo.insert_transaction(record, call.description, call.now_ms)
    repo.save_player(
        replace(player, balances=balances, limit_day=limit_day, day_withdrawn_minor=day_withdrawn)
    )
    repo.add_entries(record, Phase.BEGIN, entries, call.now_ms)
    return _result(record, balances.available_minor)


def _finish(
    repo: Repository,
    player: PlayerRecord,
    record: TransactionRecord,
    phase: Phase,
    reason: str | None,
    now_ms: int,
) -> MoneyResult:
    assert record.amount_minor is not None
    entries = ledger.movement(record.kind, phase, record.amount_minor)
    balances = player.balances.apply(entries)
    state = State.CONFIRMED if phase is Phase.CONFIRM else State.ROLLED_BACK
    finished = replace(record, state=state, final_balance_minor=balances.available_minor)
    repo.finish_transaction(finished, reason, now_ms)
    repo.save_player(replace(player, balances=balances))
    repo.add_entries(finished, phase, entries, now_ms)
    return _result(finished, balances.available_minor)


def confirm(repo: Repository, call: ConfirmCall) -> MoneyResult:
    # Expired sessions are accepted: the partner retries confirm for 48 hours.
    _, player = _session_player(repo, call.partner_id, call.token, call.now_ms, live=False)
    existing = repo.get_transaction(call.partner_id, call.kind, call.mm_transaction_id)
    action = decide_confirm(
        existing, player_id=player.id, amount_minor=call.amount_minor, currency=call.currency
    )
    assert existing is not None
    if action is Action.REPLAY:
        return _result(existing, existing.final_balance_minor)
    return _finish(repo, player, existing, Phase.CONFIRM, None, call.now_ms)


def rollback(repo: Repository, call: RollbackCall) -> MoneyResult:
    _, player = _session_player(repo, call.partner_id, call.token, call.now_ms, live=False)
    existing = repo.get_transaction(call.partner_id, call.kind, call.mm_transaction_id)
    action = decide_rollback(existing, player_id=player.id)
    if action is Action.BLOCK:
        # The original never arrived (or is still on its way): record the rollback so that a
        # late original is refused with 132 instead of holding funds nobody will release.
        blocker = TransactionRecord(
            qw_transaction_id=new_transaction_id(call.now_ms),
            partner_id=call.partner_id,
            kind=call.kind,
            mm_transaction_id=call.mm_transaction_id,
            player_id=player.id,
            amount_minor=None,
            currency=player.currency,
            state=State.ROLLED_BACK,
            begin_balance_minor=None,
            final_balance_minor=player.balances.available_minor,
        )
        repo.insert_transaction(blocker, None, call.now_ms)
        repo.finish_transaction(blocker, call.reason, call.now_ms)
        return _result(blocker, blocker.final_balance_minor)
    assert existing is not None
    if action is Action.REPLAY:
        return _result(existing, existing.final_balance_minor)
    return _finish(repo, player, existing, Phase.ROLLBACK, call.reason, call.now_ms)
