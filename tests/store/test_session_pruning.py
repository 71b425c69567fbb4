"""Session revocation reads only live sessions; expired ones are pruned in bounded batches.

Both databases. On PostgreSQL the plans are checked too: revocation is a range of
``ix_sessions_player_live`` and a prune batch a range of ``ix_sessions_expires``, so neither
grows with the sessions a player (or the platform) had over the years.
"""

from __future__ import annotations

import json
from typing import Any

from qwallet.service import players, sessions
from tests.store.conftest import Backend
from tests.store.world import NOW_MS, add_session, count, standard_world

HOUR_MS = 3_600_000
RETENTION_MS = 49 * HOUR_MS


async def revoked(store: Any, token: str) -> int | None:
    async with store.transaction() as tx:
        row = await tx.fetchrow("SELECT revoked_at_ms FROM sessions WHERE token = $1", token)
    assert row is not None
    return None if row["revoked_at_ms"] is None else int(row["revoked_at_ms"])


def test_blocking_revokes_the_live_sessions_only(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        await add_session(store, "old-expired", "p1", expires_at_ms=NOW_MS - HOUR_MS)
        await add_session(store, "old-revoked", "p1", revoked_at_ms=NOW_MS - 5)
        await add_session(store, "second-live", "p1", expires_at_ms=NOW_MS + HOUR_MS)
        await players.set_blocked(store, "p1", True, now_ms=NOW_MS)
        assert await revoked(store, "t1") == NOW_MS
        assert await revoked(store, "t1-other") == NOW_MS
        assert await revoked(store, "second-live") == NOW_MS
        assert await revoked(store, "old-expired") is None  # expired: already refused (111)
        assert await revoked(store, "old-revoked") == NOW_MS - 5  # first revocation kept
        assert await revoked(store, "t2") is None  # another player's
        async with store.transaction() as tx:
            again = await sessions.revoke_player_sessions_in(tx, "p1", NOW_MS + 1)
        assert again == 0

    backend.run(scenario)


def test_prune_deletes_sessions_expired_past_the_retention_in_batches(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        cutoff = NOW_MS - RETENTION_MS
        for i in range(7):
            await add_session(store, f"gone-{i}", "p1", expires_at_ms=cutoff - 1 - i)
        await add_session(store, "gone-revoked", "p2", expires_at_ms=cutoff - 1, revoked_at_ms=1)
        # Expired, but a partner may still confirm or roll back with it: kept.
        await add_session(store, "kept-recent", "p2", expires_at_ms=cutoff + 1)
        await add_session(store, "kept-revoked", "p2", expires_at_ms=NOW_MS, revoked_at_ms=2)
        before = await count(store, "SELECT COUNT(*) FROM sessions")
        bounded = await sessions.prune_sessions(
            store, now_ms=NOW_MS, retention_ms=RETENTION_MS, batch=3, max_batches=2
        )
        assert bounded == 6  # two batches of three, then the call stops
        rest = await sessions.prune_sessions(
            store, now_ms=NOW_MS, retention_ms=RETENTION_MS, batch=3
        )
        assert rest == 2
        assert await count(store, "SELECT COUNT(*) FROM sessions") == before - 8
        tokens = {
            str(r["token"])
            for r in await _fetch(store, "SELECT token FROM sessions WHERE player_id = 'p2'")
        }
        assert tokens == {"t2", "kept-recent", "kept-revoked"}
        idle = await sessions.prune_sessions(store, now_ms=NOW_MS, retention_ms=RETENTION_MS)
        assert idle == 0

    backend.run(scenario)


def test_revocation_and_prune_plans_use_the_session_indexes(backend: Backend) -> None:
    if backend.name != "postgres":
        return  # SQLite's planner is not what production runs

    async def scenario(store: Any) -> None:
        await standard_world(store)
        async with store.transaction() as tx:
            # Years of sessions of one player, nearly all revoked or expired.
            await tx.execute(
                "INSERT INTO sessions (token, player_id, partner_id, game_code, created_at_ms,"
                " last_seen_at_ms, idle_timeout_ms, expires_at_ms, revoked_at_ms)"
                " SELECT 'h' || g, 'p1', 1, 'demo', g, g, 1, g + 1000,"
                " CASE WHEN g % 2 = 0 THEN g + 10 END FROM generate_series(1, 20000) g"
            )
            # And the other players' live sessions of today.
            await tx.execute(
                "INSERT INTO sessions (token, player_id, partner_id, game_code, created_at_ms,"
                " last_seen_at_ms, idle_timeout_ms, expires_at_ms)"
                " SELECT 'l' || g, 'p2', 1, 'demo', $1::bigint, $1::bigint, 1, $1::bigint + g"
                " FROM generate_series(1, 20000) g",
                NOW_MS,
            )
            await tx.execute("ANALYZE sessions")
            plans = []
            for sql, args in (
                (
                    "UPDATE sessions SET revoked_at_ms = $1"
                    " WHERE player_id = $2 AND revoked_at_ms IS NULL AND expires_at_ms > $1",
                    (NOW_MS, "p1"),
                ),
                (
                    "DELETE FROM sessions WHERE token IN (SELECT token FROM sessions"
                    " WHERE expires_at_ms < $1 ORDER BY expires_at_ms LIMIT $2)",
                    (NOW_MS, 1000),
                ),
            ):
                row = await tx.fetchrow(f"EXPLAIN (FORMAT JSON) {sql}", *args)
                assert row is not None
                plans.append(json.dumps(row["QUERY PLAN"]))
            await tx.execute("DELETE FROM sessions WHERE token LIKE 'h%' OR token LIKE 'l%'")
        assert "ix_sessions_player_live" in plans[0] and "Seq Scan" not in plans[0]
        assert "ix_sessions_expires" in plans[1]

    backend.run(scenario)


async def _fetch(store: Any, sql: str) -> list[Any]:
    async with store.transaction() as tx:
        return list(await tx.fetch(sql))
