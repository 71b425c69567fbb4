"""growth: indexes for keyset pages, the mm-id key in lookup order, reconciliation checkpoints

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

- ``uq_transactions_mm_id`` becomes ``(partner_id, mm_transaction_id, kind)``. Every query that
  relies on it (the wallet functions of ``store/sql``, ``engine``'s repository, the
  ``ON CONFLICT DO NOTHING`` claims) filters on all three columns with ``=``, so the order does
  not change what it guarantees; with ``kind`` last, a lookup by partner and mmTransactionId
  alone (the console's filter) is an index range of at most two rows instead of a scan.
- Indexes behind the console's keyset pages (docs/operator-guide.md): transactions, orders and
  players by creation time, audit entries per filter, adjustments per player, and a partial
  index of adjustment entries (reconciliation re-checks an adjustment's step by it).
- ``reconcile_checkpoints`` / ``checkpoint_balances``: verified balances at a ledger position,
  so ``qwallet reconcile`` reads only the entries after the last one (docs/operations.md).
- PostgreSQL: autovacuum storage parameters of ``transactions`` and ``ledger_entries`` for a
  write rate of about 1,000 transactions/s (docs/operations.md, "Vacuum").

On a large live database a plain ``CREATE INDEX`` blocks every write to its table for as long as
the build takes, so an operator may build these indexes beforehand with ``CREATE INDEX
CONCURRENTLY`` (docs/operations.md, "Upgrading a large database to 0008"). This migration then
keeps an index that already exists, valid and on the same columns (it fails, naming it, when one
of that name covers other columns), rebuilds one left invalid by an interrupted concurrent
build, and turns a pre-built ``uq_transactions_mm_id_v2`` into the new
``uq_transactions_mm_id`` (``ADD CONSTRAINT ... USING INDEX`` renames it: no second build). On a
fresh database the result is the same as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Scale factors of 0 and fixed thresholds: the default 20 % of a table of billions of rows
# would let hundreds of millions of dead rows (transactions are updated at confirm/rollback)
# pile up between vacuums, and insert-only ledger pages would wait as long for their
# visibility-map bits and freezing. See docs/operations.md for the arithmetic.
TRANSACTIONS_STORAGE = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "100000",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "1000000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "1000000",
    "autovacuum_vacuum_cost_delay": "1",
    # Room on each page for the confirm/rollback update to stay on the page (HOT is impossible
    # while an indexed column changes, but the new version still lands on the same page).
    "fillfactor": "90",
}
LEDGER_STORAGE = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "100000",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "4000000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "4000000",
    "autovacuum_vacuum_cost_delay": "1",
}

_INDEXES = (
    ("ix_transactions_created", "transactions", ["created_at_ms"]),
    ("ix_payment_orders_created", "payment_orders", ["created_at_ms"]),
    ("ix_payment_orders_state_created", "payment_orders", ["state", "created_at_ms"]),
    ("ix_players_created", "players", ["created_at_ms"]),
    ("ix_adjustments_player", "adjustments", ["player_id", "created_at_ms"]),
    ("ix_audit_log_operator", "audit_log", ["operator", "id"]),
    ("ix_audit_log_action", "audit_log", ["action", "id"]),
    ("ix_audit_log_target", "audit_log", ["target", "id"]),
)


# The unique index an operator may build beforehand (docs/operations.md); the constraint takes
# it over under its own name.
PREBUILT_MM_ID_INDEX = "uq_transactions_mm_id_v2"
MM_ID_COLUMNS = ["partner_id", "mm_transaction_id", "kind"]


def _existing_index(bind: sa.Connection, name: str) -> tuple[bool, list[str], str | None] | None:
    """(valid, columns, predicate) of the PostgreSQL index ``name``, or None if there is none."""
    row = bind.execute(
        sa.text(
            "SELECT i.indisvalid AS valid, pg_get_expr(i.indpred, i.indrelid) AS predicate,"
            " ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            "       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            "       ORDER BY k.n) AS columns"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = :name AND pg_table_is_visible(c.oid)"
        ),
        {"name": name},
    ).first()
    if row is None:
        return None
    return bool(row.valid), [str(column) for column in row.columns], row.predicate


def _create_index(
    bind: sa.Connection, name: str, table: str, columns: list[str], where: str | None = None
) -> None:
    """``CREATE INDEX`` unless the operator already built it (CONCURRENTLY, beforehand)."""
    predicate = sa.text(where) if where else None
    if bind.dialect.name == "postgresql":
        existing = _existing_index(bind, name)
        if existing is not None:
            valid, found, _predicate = existing
            if found != columns:
                raise RuntimeError(
                    f"index {name} exists on ({', '.join(found)}), not on ({', '.join(columns)}):"
                    " drop it (DROP INDEX CONCURRENTLY) and upgrade again"
                )
            if valid:
                return
            # Left invalid by an interrupted CREATE INDEX CONCURRENTLY: it is not used for
            # reads but still costs every write; build it again.
            op.drop_index(name, table)
        op.create_index(name, table, columns, postgresql_where=predicate)
        return
    op.create_index(name, table, columns, sqlite_where=predicate, if_not_exists=True)


def _new_mm_id_constraint(bind: sa.Connection) -> None:
    existing = _existing_index(bind, PREBUILT_MM_ID_INDEX)
    if existing is not None and (not existing[0] or existing[1] != MM_ID_COLUMNS):
        bind.exec_driver_sql(f"DROP INDEX {PREBUILT_MM_ID_INDEX}")
        existing = None
    if existing is None:
        op.drop_constraint("uq_transactions_mm_id", "transactions", type_="unique")
        op.create_unique_constraint("uq_transactions_mm_id", "transactions", MM_ID_COLUMNS)
        return
    # One statement, so the table is never without its key; the index keeps its contents.
    bind.exec_driver_sql(
        "ALTER TABLE transactions DROP CONSTRAINT uq_transactions_mm_id,"
        f" ADD CONSTRAINT uq_transactions_mm_id UNIQUE USING INDEX {PREBUILT_MM_ID_INDEX}"
    )


def _storage(parameters: dict[str, str]) -> str:
    return ", ".join(f"{name} = {value}" for name, value in parameters.items())


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _new_mm_id_constraint(bind)
    else:
        # SQLite cannot drop a table constraint: batch mode copies the table.
        with op.batch_alter_table("transactions", recreate="always") as batch_op:
            batch_op.drop_constraint("uq_transactions_mm_id", type_="unique")
            batch_op.create_unique_constraint("uq_transactions_mm_id", MM_ID_COLUMNS)
    for name, table, columns in _INDEXES:
        _create_index(bind, name, table, columns)
    _create_index(
        bind,
        "ix_ledger_entries_adjustment",
        "ledger_entries",
        ["adjustment_id"],
        "adjustment_id IS NOT NULL",
    )
    op.create_table(
        "reconcile_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("full_run", sa.Integer(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("full_run IN (0, 1)", name="ck_reconcile_checkpoints_full_run"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reconcile_checkpoints_position", "reconcile_checkpoints", ["position"])
    op.create_table(
        "checkpoint_balances",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "account", "currency"),
    )
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(f"ALTER TABLE transactions SET ({_storage(TRANSACTIONS_STORAGE)})")
        bind.exec_driver_sql(f"ALTER TABLE ledger_entries SET ({_storage(LEDGER_STORAGE)})")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        names = ", ".join([*TRANSACTIONS_STORAGE])
        bind.exec_driver_sql(f"ALTER TABLE transactions RESET ({names})")
        bind.exec_driver_sql(f"ALTER TABLE ledger_entries RESET ({', '.join(LEDGER_STORAGE)})")
    op.drop_table("checkpoint_balances")
    op.drop_index("ix_reconcile_checkpoints_position", "reconcile_checkpoints")
    op.drop_table("reconcile_checkpoints")
    op.drop_index("ix_ledger_entries_adjustment", "ledger_entries")
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table)
    if bind.dialect.name == "postgresql":
        op.drop_constraint("uq_transactions_mm_id", "transactions", type_="unique")
        op.create_unique_constraint(
            "uq_transactions_mm_id", "transactions", ["partner_id", "kind", "mm_transaction_id"]
        )
    else:
        with op.batch_alter_table("transactions", recreate="always") as batch_op:
            batch_op.drop_constraint("uq_transactions_mm_id", type_="unique")
            batch_op.create_unique_constraint(
                "uq_transactions_mm_id", ["partner_id", "kind", "mm_transaction_id"]
            )
