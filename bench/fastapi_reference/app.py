"""withdraw, built the way most teams would: FastAPI + pydantic + SQLAlchemy ORM (async, asyncpg).

The comparison point for ``qwallet bench``: the same tables, the same rules for a withdrawal
(session, player lock, idempotency by mmTransactionId, funds, two ledger entries), written in the
usual style — dependency-injected session and credentials, ORM objects, ``SELECT … FOR UPDATE``,
several round trips inside one transaction. Run it with

    REFERENCE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/DB \
        uvicorn app:app --app-dir bench/fastapi_reference --workers 2

Only ``POST /wallet/withdraw`` (and ``/healthz``) exist.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, Integer, Text, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qwallet.service.credentials import verify_password

DATABASE_URL = os.environ["REFERENCE_DATABASE_URL"].replace(
    "postgresql://", "postgresql+asyncpg://", 1
)
engine = create_async_engine(DATABASE_URL, pool_size=16, max_overflow=0)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
app = FastAPI(title="withdraw reference")
security = HTTPBasic()


class Base(DeclarativeBase):
    pass


class Player(Base):
    __tablename__ = "players"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    currency: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    available_minor: Mapped[int] = mapped_column(BigInteger)
    held_minor: Mapped[int] = mapped_column(BigInteger)
    daily_withdraw_limit_minor: Mapped[int | None] = mapped_column(BigInteger)
    limit_day: Mapped[int] = mapped_column(Integer)
    day_withdrawn_minor: Mapped[int] = mapped_column(BigInteger)


class GameSession(Base):
    __tablename__ = "sessions"
    token: Mapped[str] = mapped_column(Text, primary_key=True)
    player_id: Mapped[str] = mapped_column(Text)
    partner_id: Mapped[int] = mapped_column(Integer)
    last_seen_at_ms: Mapped[int] = mapped_column(BigInteger)
    idle_timeout_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class Transaction(Base):
    __tablename__ = "transactions"
    qw_transaction_id: Mapped[str] = mapped_column(Text, primary_key=True)
    partner_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(Text)
    mm_transaction_id: Mapped[str] = mapped_column(Text)
    player_id: Mapped[str] = mapped_column(Text)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    rollback_reason: Mapped[str | None] = mapped_column(Text)
    begin_balance_minor: Mapped[int | None] = mapped_column(BigInteger)
    final_balance_minor: Mapped[int | None] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str | None] = mapped_column(Text)
    adjustment_id: Mapped[str | None] = mapped_column(Text)
    phase: Mapped[str] = mapped_column(Text)
    account: Mapped[str] = mapped_column(Text)
    player_id: Mapped[str | None] = mapped_column(Text)
    partner_id: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(Text)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class PartnerCredential(Base):
    __tablename__ = "partner_credentials"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    revoked_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class Amount(BaseModel):
    amount: Decimal
    currencyCode: str = Field(max_length=3)


class WithdrawRequest(BaseModel):
    token: str = Field(max_length=64)
    mmTransactionId: str = Field(min_length=1, max_length=64)
    amount: Amount
    txDescription: str | None = Field(default=None, max_length=255)


class WithdrawResponse(BaseModel):
    mmTransactionId: str
    qwTransactionId: str
    balance: Amount


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


_verified: dict[tuple[str, str], int] = {}
_pending: dict[tuple[str, str], asyncio.Future[int | None]] = {}


async def _verify(username: str, password: str) -> int | None:
    async with SessionLocal() as db:
        rows = list(
            await db.scalars(
                select(PartnerCredential).where(
                    PartnerCredential.username == username,
                    PartnerCredential.revoked_at_ms.is_(None),
                )
            )
        )
    for credential in rows:
        # scrypt off the event loop, as qwallet does.
        if await asyncio.to_thread(verify_password, password.encode(), credential.password_hash):
            _verified[(username, password)] = credential.partner_id
            return credential.partner_id
    return None


async def current_partner(
    credentials: Annotated[HTTPBasicCredentials, Depends(security)],
) -> int:
    # The same cost as qwallet's authentication: one cached lookup per request once verified,
    # and concurrent first requests share one scrypt (so the comparison measures the request
    # path, not password hashing).
    key = (credentials.username, credentials.password)
    if key in _verified:
        return _verified[key]
    pending = _pending.get(key)
    if pending is None:
        pending = asyncio.ensure_future(_verify(*key))
        _pending[key] = pending
        pending.add_done_callback(lambda _done: _pending.pop(key, None))
    partner_id = await asyncio.shield(pending)
    if partner_id is None:
        raise HTTPException(status_code=401, detail="Not authorized")
    return partner_id


def error(code: int, description: str) -> JSONResponse:
    return JSONResponse({"errorCode": code, "errorDescription": description})


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/wallet/withdraw", response_model=WithdrawResponse)
async def withdraw(
    request: WithdrawRequest,
    partner_id: Annotated[int, Depends(current_partner)],
    db: Annotated[AsyncSession, Depends(get_db)],
) -> WithdrawResponse | JSONResponse:
    now_ms = int(time.time() * 1000)
    amount_minor = int(request.amount.amount * 100)
    if amount_minor <= 0:
        return error(102, "Invalid amount")
    async with db.begin():
        session = await db.get(GameSession, request.token)
        if session is None or session.partner_id != partner_id or session.revoked_at_ms:
            return error(110, "Session not found")
        if now_ms >= session.expires_at_ms or now_ms >= (
            session.last_seen_at_ms + session.idle_timeout_ms
        ):
            return error(111, "Session expired")
        player = await db.scalar(
            select(Player).where(Player.id == session.player_id).with_for_update()
        )
        assert player is not None
        if player.status == "blocked":
            return error(112, "Player blocked")
        if request.amount.currencyCode != player.currency:
            return error(120, "Currency mismatch")
        existing = await db.scalar(
            select(Transaction).where(
                Transaction.partner_id == partner_id,
                Transaction.kind == "withdrawal",
                Transaction.mm_transaction_id == request.mmTransactionId,
            )
        )
        if existing is not None:
            if existing.state == "rolled_back":
                return error(132, "Transaction was rolled back")
            if existing.player_id != player.id or existing.amount_minor != amount_minor:
                return error(131, "Transaction id reused")
            return WithdrawResponse(
                mmTransactionId=existing.mm_transaction_id,
                qwTransactionId=existing.qw_transaction_id,
                balance=Amount(
                    amount=Decimal(existing.begin_balance_minor or 0) / 100,
                    currencyCode=existing.currency,
                ),
            )
        today = now_ms // 86_400_000
        withdrawn = player.day_withdrawn_minor if player.limit_day == today else 0
        if (
            player.daily_withdraw_limit_minor is not None
            and withdrawn + amount_minor > player.daily_withdraw_limit_minor
        ):
            return error(122, "Daily withdrawal limit exceeded")
        if player.available_minor < amount_minor:
            return error(121, "Insufficient funds")
        player.available_minor -= amount_minor
        player.held_minor += amount_minor
        player.limit_day = today
        player.day_withdrawn_minor = withdrawn + amount_minor
        transaction = Transaction(
            qw_transaction_id=str(uuid.uuid4()),
            partner_id=partner_id,
            kind="withdrawal",
            mm_transaction_id=request.mmTransactionId,
            player_id=player.id,
            amount_minor=amount_minor,
            currency=player.currency,
            state="pending",
            description=request.txDescription,
            begin_balance_minor=player.available_minor,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
        db.add(transaction)
        for account, amount in (("available", -amount_minor), ("held", amount_minor)):
            db.add(
                LedgerEntry(
                    transaction_id=transaction.qw_transaction_id,
                    phase="begin",
                    account=account,
                    player_id=player.id,
                    currency=player.currency,
                    amount_minor=amount,
                    created_at_ms=now_ms,
                )
            )
    return WithdrawResponse(
        mmTransactionId=transaction.mm_transaction_id,
        qwTransactionId=transaction.qw_transaction_id,
        balance=Amount(amount=Decimal(player.available_minor) / 100, currencyCode=player.currency),
    )
