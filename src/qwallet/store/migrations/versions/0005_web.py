"""web: confirm and rollback accept a revoked session token (PostgreSQL wallet functions)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Signing out and blocking a player now revoke their game session tokens. ``withdraw``,
``deposit``, ``verifySession`` and ``getBalance`` refuse a revoked token (110) as before, but
confirm and rollback accept it, as they accept an expired one, so funds already held stay
releasable by the partner's retries. Re-installs ``store/sql/wallet_v1.sql`` (every function is
``CREATE OR REPLACE``); SQLite runs the same rule in Python (``qwallet.store.engine``).
"""

from __future__ import annotations

from alembic import op

from qwallet.store.postgres import wallet_function_statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for statement in wallet_function_statements():
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    # The previous functions refused revoked tokens in confirm and rollback as well; nothing in
    # the schema depends on the difference, so a downgrade keeps the current ones.
    pass
