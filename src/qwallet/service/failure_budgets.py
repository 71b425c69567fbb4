"""Budgets of failed authentications, kept in the database and shared by every server process.

A budget is a token bucket per ``(scope, key)`` (a row; the arithmetic is
``qwallet.domain.token_buckets``'s): it holds up to ``burst`` tokens and regains one every
``refill_s``. An attempt ``take``s a token *before* the password hash runs and, when the
credentials turn out right, ``give_back`` returns it, so only failures spend the budget. An empty
bucket refuses the attempt without hashing anything (no CPU spent on a flood), and reports how
long until a token is back (``Retry-After``).

Why the database and not process memory: sign-ins are rare, so a write per attempt costs nothing,
and a budget in memory would be multiplied by ``--workers N`` and by every machine. The table
grows with the number of distinct keys seen; a bucket that has refilled completely holds no
information, and ``prune`` deletes those (it runs with each ``take`` at most once a minute per
process, through the ``updated_at_ms`` index).

Scopes in use (docs/security.md): ``player_sign_in`` and ``admin_sign_in`` (keys: ``a:<address>``
and ``u:<username>|a:<address>``), ``operator_api`` (key: ``a:<address>``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from qwallet.domain.token_buckets import refill, retry_after_s
from qwallet.store.sql import SqlDatabase

MAX_KEY_CHARS = 200
PRUNE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Budget:
    """``burst`` tries, one regained every ``refill_s``."""

    burst: int
    refill_s: float

    def __post_init__(self) -> None:
        assert self.burst >= 1 and self.refill_s > 0, (self.burst, self.refill_s)

    @property
    def full_after_ms(self) -> int:
        """An untouched bucket is full again after this long (safe to forget)."""
        return math.ceil(self.burst * self.refill_s * 1000)

    @classmethod
    def per_second(cls, rate_per_s: float, burst: int) -> Budget:
        return cls(burst, 1.0 / rate_per_s)


_last_prune_s = 0.0


async def take(db: SqlDatabase, scope: str, key: str, budget: Budget, now_ms: int) -> int:
    """Spend one token: 0 when the attempt may go on, else the seconds until one is back (≥ 1).

    Read and write happen in one transaction that holds the row (``FOR UPDATE`` on PostgreSQL,
    ``BEGIN IMMEDIATE`` on SQLite), so concurrent attempts from any process cannot spend the
    same token twice.
    """
    await _maybe_prune(db, budget, now_ms)
    key = key[:MAX_KEY_CHARS]
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO failure_budgets (scope, key, tokens, updated_at_ms)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO NOTHING",
            scope,
            key,
            float(budget.burst),
            now_ms,
        )
        row = await tx.fetchrow(
            "SELECT tokens, updated_at_ms FROM failure_budgets"
            f" WHERE scope = $1 AND key = $2{lock}",
            scope,
            key,
        )
        assert row is not None
        elapsed_ms = max(0, now_ms - int(row["updated_at_ms"]))
        tokens = refill(
            float(row["tokens"]), elapsed_ms / 1000 / budget.refill_s, float(budget.burst)
        )
        if tokens >= 1.0:
            await tx.execute(
                "UPDATE failure_budgets SET tokens = $1, updated_at_ms = $2"
                " WHERE scope = $3 AND key = $4",
                tokens - 1.0,
                now_ms,
                scope,
                key,
            )
            return 0
        await tx.execute(
            "UPDATE failure_budgets SET tokens = $1, updated_at_ms = $2"
            " WHERE scope = $3 AND key = $4",
            tokens,
            now_ms,
            scope,
            key,
        )
    return retry_after_s((1.0 - tokens) * budget.refill_s)


async def give_back(db: SqlDatabase, scope: str, key: str, budget: Budget) -> None:
    """Return the token of an attempt whose credentials were right."""
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE failure_budgets SET tokens = CASE WHEN tokens + 1 > $1 THEN $1"
            " ELSE tokens + 1 END WHERE scope = $2 AND key = $3",
            float(budget.burst),
            scope,
            key[:MAX_KEY_CHARS],
        )


async def take_all(db: SqlDatabase, scope: str, keys: list[tuple[str, Budget]], now_ms: int) -> int:
    """``take`` from several buckets (address, username and address…); all or nothing.

    Returns 0 when every bucket had a token; otherwise the longest wait, and the tokens already
    taken are given back, so a refused attempt spends nothing.
    """
    taken: list[tuple[str, Budget]] = []
    for key, budget in keys:
        wait_s = await take(db, scope, key, budget, now_ms)
        if wait_s:
            for done_key, done_budget in taken:
                await give_back(db, scope, done_key, done_budget)
            return wait_s
        taken.append((key, budget))
    return 0


async def give_back_all(db: SqlDatabase, scope: str, keys: list[tuple[str, Budget]]) -> None:
    for key, budget in keys:
        await give_back(db, scope, key, budget)


async def prune(db: SqlDatabase, older_than_ms: int) -> int:
    """Forget buckets untouched since ``older_than_ms`` (they are full again); returns how many."""
    async with db.transaction() as tx:
        return await tx.execute(
            "DELETE FROM failure_budgets WHERE updated_at_ms < $1", older_than_ms
        )


async def _maybe_prune(db: SqlDatabase, budget: Budget, now_ms: int) -> None:
    global _last_prune_s
    now_s = time.monotonic()
    if now_s - _last_prune_s < PRUNE_EVERY_S:
        return
    _last_prune_s = now_s
    # The longest budget in use decides what is safe to forget; a day is far beyond all of them.
    await prune(db, now_ms - max(budget.full_after_ms, 24 * 60 * 60 * 1000))


__all__ = ["Budget", "give_back", "give_back_all", "prune", "take", "take_all"]
