"""Keyset pages of the console's lists, on both databases: following ``after`` cursors visits
every row once, newest first, ties on the creation time broken by id; filters hold on every
page; a cursor that does not parse is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from qwallet.admin import queries
from qwallet.domain.transactions import Kind
from qwallet.service import audit, holds, orders_admin
from qwallet.service.keyset import next_id_cursor, next_time_cursor
from qwallet.service.partners import OperatorError
from qwallet.store.sql import Row, SqlDatabase
from tests.store.conftest import Backend
from tests.store.world import NOW_MS, begin_call, confirm_call, standard_world

COUNT = 2 * queries.PAGE_SIZE + 7


async def follow(
    page: Callable[[str | None], Awaitable[list[Row]]],
    next_cursor: Callable[[list[Row]], str | None],
) -> list[list[Row]]:
    pages: list[list[Row]] = []
    cursor: str | None = None
    while True:
        rows = await page(cursor)
        pages.append(rows[: queries.PAGE_SIZE])
        cursor = next_cursor(rows)
        if cursor is None:
            return pages


async def transactions_world(store: Any) -> None:
    await standard_world(store)
    for i in range(COUNT):
        # Three transactions per millisecond: the id decides their order.
        call = begin_call(Kind.WITHDRAWAL, f"m{i}", 10, now_ms=NOW_MS + i // 3)
        await store.begin(call)
        if i % 2:
            await store.confirm(confirm_call(Kind.WITHDRAWAL, f"m{i}", 10, now_ms=NOW_MS))


def test_transaction_pages_visit_every_row_once_in_order(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await transactions_world(store)

        def lister(filters: queries.TransactionFilter) -> Callable[[str | None], Any]:
            return lambda cursor: queries.transactions(store, filters, cursor)

        def cursor_of(rows: list[Row]) -> str | None:
            return queries.next_cursor(rows, "qw_transaction_id")

        pages = await follow(lister(queries.TransactionFilter()), cursor_of)
        rows = [row for page in pages for row in page]
        assert [len(page) for page in pages] == [50, 50, 7]
        keys = [(int(r["created_at_ms"]), str(r["qw_transaction_id"])) for r in rows]
        assert keys == sorted(keys, reverse=True) and len(set(keys)) == COUNT

        confirmed = await follow(lister(queries.TransactionFilter(state="confirmed")), cursor_of)
        states = {str(r["state"]) for page in confirmed for r in page}
        assert states == {"confirmed"} and sum(map(len, confirmed)) == COUNT // 2

        # By mmTransactionId, with and without the partner.
        for filters in (
            queries.TransactionFilter(mm_id="m17"),
            queries.TransactionFilter(mm_id="m17", partner="mm"),
        ):
            found = await queries.transactions(store, filters)
            assert [str(r["mm_transaction_id"]) for r in found] == ["m17"]
        assert (
            await queries.transactions(
                store, queries.TransactionFilter(mm_id="m17", partner="other")
            )
            == []
        )

        with pytest.raises(OperatorError, match="not a page cursor"):
            await queries.transactions(store, queries.TransactionFilter(), "12; DROP TABLE x")

    backend.run(scenario)


async def orders_audit_and_resolutions(store: SqlDatabase) -> None:
    async with store.transaction() as tx:
        for i in range(COUNT):
            await tx.execute(
                "INSERT INTO payment_orders (id, partner_id, player_id, cp_order_id, server_id,"
                " product_id, product_number, product_price, amount_minor, currency, ext_params,"
                " state, created_at_ms, updated_at_ms)"
                " VALUES ($1, 1, 'p1', $2, '1', 'gem', 1, '1.00', 100, 'XAG', '{}', $3, $4, $4)",
                f"o{i:04d}",
                f"cp{i}",
                "failed" if i % 4 == 0 else "delivered",
                NOW_MS + i // 2,
            )
            await audit.record(tx, f"op{i % 2}", "player.adjust", "p1", None, NOW_MS + i)
            await tx.execute(
                "INSERT INTO hold_resolutions (qw_transaction_id, at_ms, actor, action)"
                " VALUES ('00000000-0000-4000-8000-000000000001', $1, 'resolver', 'retry_later')",
                NOW_MS + i,
            )


def test_order_audit_and_resolution_pages(backend: Backend) -> None:
    async def scenario(store: Any) -> None:
        await standard_world(store)
        async with store.transaction() as tx:
            await tx.execute("DELETE FROM payment_orders")
            await tx.execute("DELETE FROM audit_log")
            await tx.execute("DELETE FROM hold_resolutions")
        await orders_audit_and_resolutions(store)

        def time_cursor(rows: list[Row]) -> str | None:
            return next_time_cursor(rows, queries.PAGE_SIZE, "created_at_ms", "id")

        def id_cursor(rows: list[Row]) -> str | None:
            return next_id_cursor(rows, queries.PAGE_SIZE)

        orders = await follow(
            lambda c: orders_admin.list_orders(store, None, limit=51, cursor=c), time_cursor
        )
        ids = [str(r["id"]) for page in orders for r in page]
        assert ids == [f"o{i:04d}" for i in reversed(range(COUNT))]
        failed = await follow(
            lambda c: orders_admin.list_orders(store, "failed", limit=51, cursor=c), time_cursor
        )
        assert sum(map(len, failed)) == len(range(0, COUNT, 4))
        counts = await orders_admin.counts_by_state(store)
        assert counts == {
            "failed": len(range(0, COUNT, 4)),
            "delivered": COUNT - len(range(0, COUNT, 4)),
        }

        entries = await follow(
            lambda c: audit.entries(
                store, operator="op1", limit=51, before_id=int(c) if c else None
            ),
            id_cursor,
        )
        seen = [int(r["id"]) for page in entries for r in page]
        assert seen == sorted(seen, reverse=True) and len(seen) == COUNT // 2

        log = await follow(
            lambda c: holds.resolutions(store, limit=51, before_id=int(c) if c else None), id_cursor
        )
        assert sum(map(len, log)) == COUNT

    backend.run(scenario)
