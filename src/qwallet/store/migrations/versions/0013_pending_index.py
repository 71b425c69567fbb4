"""a partial index of the pending transactions; no second copy of the idempotency key

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

- ``ix_transactions_state (state, created_at_ms)`` indexed every transaction, although every
  query that relies on it reads the pending ones (the hold resolver's scan, the metrics gauges,
  the dashboard's capped counts, the archive's no-pending check, the console's pending filter).
  It becomes ``ix_transactions_pending (created_at_ms, kind) WHERE state = 'pending'``: the
  size of the backlog, not of the history; ``kind`` second, so a scan of one kind checks it in
  the index and a scan of both still walks time order. A filter on ``confirmed`` or
  ``rolled_back`` walks the time index instead (most rows have one of those states).
- ``ix_transactions_mm_id (partner_id, mm_transaction_id, kind)`` duplicated the primary key of
  ``transaction_keys``; it is dropped. A lookup by mmTransactionId reads the key, then the row
  by ``(qw_transaction_id, created_at_ms)`` (one partition on PostgreSQL).

On PostgreSQL ``transactions`` is partitioned (migration 0011) and an index of a partitioned
table cannot be built ``CONCURRENTLY``. An operator of a large database may build the new index
on every partition concurrently beforehand (docs/operations.md, "Upgrading a large database to
0013"): ``CREATE INDEX`` on the parent then attaches each valid one instead of building it, and
builds it only on partitions without one (the empty months ahead). An index left invalid by an
interrupted concurrent build is dropped here: it is never read but costs every write. Dropping
the two old indexes changes only the catalogue and deletes files. The migration holds the
locks it takes (writes to ``transactions`` wait) until it commits: with the index prebuilt,
seconds; without, as long as the build over every partition.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PENDING_INDEX = "ix_transactions_pending"
PENDING_COLUMNS = ["created_at_ms", "kind"]
PENDING = "state = 'pending'"
# How PostgreSQL prints the predicate (pg_get_expr), to recognise a prebuilt index.
PENDING_PRINTED = "(state = 'pending'::text)"

_DROPPED = (
    ("ix_transactions_state", ["state", "created_at_ms"]),
    ("ix_transactions_mm_id", ["partner_id", "mm_transaction_id", "kind"]),
)

# Indexes of transactions' partitions that are invalid (an interrupted CREATE INDEX
# CONCURRENTLY), not attached to a parent index, and of the pending predicate.
_INVALID_PREBUILT = """
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_inherits p
  JOIN pg_index i ON i.indrelid = p.inhrelid
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.inhparent = 'transactions'::regclass
   AND NOT i.indisvalid
   AND NOT EXISTS (SELECT 1 FROM pg_inherits a WHERE a.inhrelid = i.indexrelid)
   AND pg_get_expr(i.indpred, i.indrelid) = :predicate
"""

_PARENT_INDEX = """
SELECT i.indisvalid AS valid, pg_get_expr(i.indpred, i.indrelid) AS predicate,
       ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS columns
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE c.relname = :name AND pg_table_is_visible(c.oid)
"""


def _create_pending_postgres(bind: sa.Connection) -> None:
    existing = bind.execute(sa.text(_PARENT_INDEX), {"name": PENDING_INDEX}).first()
    if existing is not None:
        if (
            existing.valid
            and list(existing.columns) == PENDING_COLUMNS
            and existing.predicate == PENDING_PRINTED
        ):
            return
        raise RuntimeError(
            f"index {PENDING_INDEX} exists but is not ({', '.join(PENDING_COLUMNS)})"
            f" WHERE {PENDING} on every partition: drop it and upgrade again"
            " (docs/operations.md, 'Upgrading a large database to 0013')"
        )
    for row in bind.execute(sa.text(_INVALID_PREBUILT), {"predicate": PENDING_PRINTED}):
        bind.exec_driver_sql(f'DROP INDEX "{row.schema}"."{row.name}"')
    # On the parent: attaches every valid matching partition index, builds the missing ones.
    op.create_index(
        PENDING_INDEX, "transactions", PENDING_COLUMNS, postgresql_where=sa.text(PENDING)
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _create_pending_postgres(bind)
    else:
        op.create_index(
            PENDING_INDEX, "transactions", PENDING_COLUMNS, sqlite_where=sa.text(PENDING)
        )
    for name, _columns in _DROPPED:
        op.drop_index(name, "transactions")


def downgrade() -> None:
    # A plain build on the parent (every partition): on a large database, plan it like 0011's
    # indexes (docs/operations.md).
    for name, columns in reversed(_DROPPED):
        op.create_index(name, "transactions", columns)
    op.drop_index(PENDING_INDEX, "transactions")
