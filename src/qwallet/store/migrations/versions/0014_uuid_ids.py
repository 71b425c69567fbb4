"""uuid ids: the platform's transaction ids stored as ``uuid`` on PostgreSQL

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

The transaction ids the platform generates itself (``gen_random_uuid()`` in the wallet
functions, ``uuid4()`` in the engine and the payments) were ``text``: 37 bytes in a row and
about as much again in every index entry, where ``uuid`` takes 16. PostgreSQL only; SQLite
keeps ``text`` (it has no uuid type) and this revision changes nothing there.

- ``transactions.qw_transaction_id`` (primary key and ``ix_transactions_partner_created``),
  ``transaction_keys.qw_transaction_id``, ``ledger_entries.transaction_id``
  (``ix_ledger_entries_transaction``): one per transaction or entry, where the bytes are.
- ``hold_resolutions.qw_transaction_id`` and ``payment_orders.qw_transaction_id``: joined with
  or copied from ``transactions.qw_transaction_id``; kept of the same type.

Player ids (they may be supplied from outside), mmTransactionIds and order ids stay ``text``,
and so do ``adjustments.id`` and ``ledger_entries.adjustment_id``: the archive's carry-forward
entries are owned by ``archive:YYYY-MM``, not a UUID (a cast would fail on every database that
archived a month), and the bytes are not there (one adjustment per funding, a NULL in every
transaction entry). The reconciliation, which grouped entries by ``COALESCE(transaction_id,
adjustment_id)``, now groups by the two columns (``service/reconcile.py``).

The wallet functions are re-installed (``store/sql/wallet_v1.sql``): their signatures are
unchanged, ids still cross them as text. The asyncpg pool hands ``uuid`` values to Python as
``str`` (``store/postgres.py``), so the code above the store sees what it saw before.

``ALTER COLUMN … TYPE`` rewrites each table and its indexes under an ACCESS EXCLUSIVE lock
(partitions included): plan it like migration 0011, about a minute per few million
transactions on a small machine. A stored id that is not a UUID makes the cast fail and the
whole migration roll back, changing nothing. The downgrade casts back to text (the canonical
lower-case form, as ``gen_random_uuid()::text`` wrote it) and re-installs the functions of
revision 0012 (``store/sql/wallet_v1_before_0014.sql``).
"""

from __future__ import annotations

from alembic import op

from qwallet.store.postgres import read_sql, split_sql, wallet_function_statements

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

FUNCTIONS_BEFORE_0014 = "wallet_v1_before_0014.sql"

# table → its columns that hold platform-generated UUIDs.
UUID_COLUMNS: dict[str, tuple[str, ...]] = {
    "transactions": ("qw_transaction_id",),
    "transaction_keys": ("qw_transaction_id",),
    "ledger_entries": ("transaction_id",),
    "hold_resolutions": ("qw_transaction_id",),
    "payment_orders": ("qw_transaction_id",),
}
# Returns the row type of ``transactions``: dropped while its column types change, then
# re-created by the script.
_FIND = "wallet_v1_find(integer, text, text)"


def _alter(type_name: str) -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {_FIND}")
    for table, columns in UUID_COLUMNS.items():
        # One statement per table: one rewrite of the table and its indexes, not one per column.
        changes = ", ".join(
            f"ALTER COLUMN {column} TYPE {type_name} USING {column}::{type_name}"
            for column in columns
        )
        bind.exec_driver_sql(f"ALTER TABLE {table} {changes}")


def _run_script(name: str) -> None:
    bind = op.get_bind()
    for statement in split_sql(read_sql(name)):
        bind.exec_driver_sql(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _alter("uuid")
    for statement in wallet_function_statements():
        op.get_bind().exec_driver_sql(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _alter("text")
    _run_script(FUNCTIONS_BEFORE_0014)
