"""A grown PostgreSQL database made with ``generate_series``, for plan checks and timings.

Not a benchmark preload (``qwallet bench`` owns that): rows have the shape and the
distribution of real traffic (mostly settled transactions, a small pending backlog, many
delivered orders), so the planner chooses the plans it would choose on a large database.
Cached balances are not kept consistent with the entries: only plans are looked at.
"""

from __future__ import annotations

import asyncpg

BASE_MS = 1_780_000_000_000


def statements(transactions: int, players: int = 5_000) -> list[str]:
    pending = max(50, transactions // 200)
    orders = max(1_000, transactions // 5)
    return [
        "INSERT INTO partners (id, name, created_at_ms)"
        " SELECT i, 'studio-' || i, 0 FROM generate_series(1, 3) i",
        "INSERT INTO players (id, nickname, currency, language, status, available_minor,"
        " held_minor, pending_in_minor, limit_day, day_withdrawn_minor, created_at_ms)"
        f" SELECT 'p' || lpad(i::text, 7, '0'), 'nick ' || i, 'XAG', 'en', 'active', 100000, 0,"
        f" 0, 0, 0, {BASE_MS} + i FROM generate_series(1, {players}) i",
        # Settled history, then the pending backlog at the newest end.
        "INSERT INTO transactions (qw_transaction_id, partner_id, kind, mm_transaction_id,"
        " player_id, amount_minor, currency, state, begin_balance_minor, final_balance_minor,"
        " created_at_ms, updated_at_ms)"
        " SELECT md5(i::text)::uuid, 1 + i % 3,"
        " CASE WHEN i % 10 = 0 THEN 'deposit' ELSE 'withdrawal' END, 'mm-' || i,"
        f" 'p' || lpad((1 + i % {players})::text, 7, '0'), 100 + i % 900, 'XAG',"
        f" CASE WHEN i > {transactions - pending} THEN 'pending'"
        " WHEN i % 97 = 0 THEN 'rolled_back' ELSE 'confirmed' END, 1, 1,"
        f" {BASE_MS} + i * 20, {BASE_MS} + i * 20 + 5 FROM generate_series(1, {transactions}) i",
        # Every transaction's idempotency key (migration 0011), as the wallet functions write it.
        "INSERT INTO transaction_keys (partner_id, mm_transaction_id, kind, qw_transaction_id,"
        " created_at_ms) SELECT partner_id, mm_transaction_id, kind, qw_transaction_id,"
        " created_at_ms FROM transactions",
        "INSERT INTO ledger_entries (transaction_id, phase, account, player_id, partner_id,"
        " currency, amount_minor, created_at_ms)"
        " SELECT t.qw_transaction_id, s.phase, s.account,"
        " CASE WHEN s.account = 'partner' THEN NULL ELSE t.player_id END,"
        " CASE WHEN s.account = 'partner' THEN t.partner_id END, 'XAG',"
        " s.sign * t.amount_minor, t.created_at_ms"
        " FROM transactions t CROSS JOIN (VALUES (1, 'begin', 'available', -1),"
        " (2, 'begin', 'held', 1), (3, 'confirm', 'held', -1), (4, 'confirm', 'partner', 1)) s"
        " (n, phase, account, sign)"
        " WHERE s.n <= CASE WHEN t.state = 'pending' THEN 2 ELSE 4 END"
        " ORDER BY t.created_at_ms, s.n",
        "INSERT INTO payment_orders (id, partner_id, player_id, cp_order_id, server_id,"
        " product_id, product_number, product_price, amount_minor, currency, ext_params, state,"
        " next_delivery_at_ms, created_at_ms, updated_at_ms)"
        f" SELECT 'o' || i, 1 + i % 3, 'p' || lpad((1 + i % {players})::text, 7, '0'),"
        " 'cp-' || i, '1', 'gem', 1, '1.00', 100, 'XAG', '{}',"
        f" CASE WHEN i > {orders - 20} THEN 'paid' WHEN i % 50 = 0 THEN 'failed'"
        " ELSE 'delivered' END,"
        f" CASE WHEN i > {orders - 20} THEN {BASE_MS} + i * 100 END,"
        f" {BASE_MS} + i * 100, {BASE_MS} + i * 100 FROM generate_series(1, {orders}) i",
        "INSERT INTO audit_log (at_ms, operator, action, target, details)"
        " SELECT i, 'op-' || (i % 7), CASE WHEN i % 5 = 0 THEN 'player.adjust'"
        " ELSE 'session.create' END, 'p' || lpad((1 + i % 5000)::text, 7, '0'), '{}'"
        " FROM generate_series(1, 20000) i",
        "INSERT INTO hold_resolutions (qw_transaction_id, at_ms, actor, partner_status, action)"
        " SELECT md5(i::text)::uuid, i, 'resolver', 'PENDING', 'retry_later'"
        f" FROM generate_series({transactions - pending + 1}, {transactions}) i",
        # The log of holds resolved earlier (every 20th settled one: a retry, then the outcome):
        # it only grows, so a per-hold lookup must stay an index range even where the rows are
        # narrow (uuid ids, migration 0014) and the backlog's rows alone would fit a few pages.
        "INSERT INTO hold_resolutions (qw_transaction_id, at_ms, actor, partner_status, action)"
        " SELECT md5(i::text)::uuid, i + s.n, 'resolver', s.status, s.action"
        f" FROM generate_series(20, {transactions - pending}, 20) i"
        " CROSS JOIN (VALUES (0, 'PENDING', 'retry_later'), (1, 'CONFIRMED', 'confirmed')) s"
        " (n, status, action)",
        # A checkpoint a little behind the newest entry (minutes of traffic against months of
        # history): the incremental run reads the rest.
        "INSERT INTO reconcile_checkpoints (position, at_ms, full_run, entries)"
        " SELECT MAX(id) - 400, MAX(created_at_ms) - 5000, 1, 0 FROM ledger_entries",
        "ANALYZE",
    ]


async def grow(url: str, transactions: int) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements(transactions):
            await connection.execute(statement, timeout=3600)
    finally:
        await connection.close()
