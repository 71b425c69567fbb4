"""time-ordered transaction ids: the wallet functions create version-7 UUIDs

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03

PostgreSQL only (SQLite's engine and the payments create ids in Python, ``domain/ids.py``;
nothing is stored differently, so there is nothing to do there).

Installs ``store/sql/ids_v1.sql`` (``qwallet_uuid_v7(bigint)``: PostgreSQL 15 has no
``uuidv7()``) and re-installs ``store/sql/wallet_v1.sql``, whose ``wallet_v1_begin`` and
``wallet_v1_rollback`` now draw a new transaction's id from it instead of ``gen_random_uuid()``.
Signatures are unchanged. Only functions are replaced: no table is rewritten or locked beyond
the catalogue, so it runs in well under a second on any size of database. Stored ids stay what
they are (version 4); new ones are version 7, time-ordered (docs/benchmarks.md says why).

The downgrade re-installs the functions of revision 0017 (``store/sql/wallet_v1_before_0018.sql``)
and drops ``qwallet_uuid_v7``; ids created meanwhile stay, still valid UUIDs.
"""

from __future__ import annotations

from alembic import op

from qwallet.store.postgres import ID_FUNCTIONS, read_sql, split_sql, wallet_function_statements

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

FUNCTIONS_BEFORE_0018 = "wallet_v1_before_0018.sql"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for statement in wallet_function_statements():
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for statement in split_sql(read_sql(FUNCTIONS_BEFORE_0018)):
        bind.exec_driver_sql(statement)
    # After the functions that call it are replaced: nothing refers to it any more.
    for signature in ID_FUNCTIONS:
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature}")
