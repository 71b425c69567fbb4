"""PostgreSQL wallet functions (one round trip per call)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Installs ``store/sql/wallet_v1.sql`` on PostgreSQL. SQLite runs the same use cases in Python
(``qwallet.store.engine``), so there is nothing to do there.
"""

from __future__ import annotations

from alembic import op

from qwallet.store.postgres import WALLET_FUNCTIONS, WALLET_FUNCTIONS_SCRIPT, read_sql, split_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # pgcrypto is not needed: gen_random_uuid() is built in since PostgreSQL 13.
    for statement in split_sql(read_sql(WALLET_FUNCTIONS_SCRIPT)):
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for signature in WALLET_FUNCTIONS:
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature}")
