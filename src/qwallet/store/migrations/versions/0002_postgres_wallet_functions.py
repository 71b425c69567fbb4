"""PostgreSQL wallet functions (one round trip per call)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Installs ``store/sql/wallet_v1.sql`` on PostgreSQL (the current functions, and since migration
0018 ``store/sql/ids_v1.sql`` before them, which they call). SQLite runs the same use cases in
Python (``qwallet.store.engine``), so there is nothing to do there.
"""

from __future__ import annotations

from alembic import op

from qwallet.store.postgres import ID_FUNCTIONS, WALLET_FUNCTIONS, wallet_function_statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # pgcrypto is not needed: gen_random_uuid() is built in since PostgreSQL 13.
    for statement in wallet_function_statements():
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # The id function too: the current script installs it with the functions (migration 0018).
    for signature in (*WALLET_FUNCTIONS, *ID_FUNCTIONS):
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature}")
