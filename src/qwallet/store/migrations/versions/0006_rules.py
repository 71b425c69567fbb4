"""rules: the wallet functions take the domain's constants as parameters (PostgreSQL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

``wallet_v1_session`` and ``wallet_v1_begin`` used to hold the session refresh interval
(60000 ms) and the length of a day (86400000 ms) as literals copied from
``qwallet.domain.sessions``. They now receive them from ``qwallet.store.postgres`` on every call
(``p_touch_interval_ms``, ``p_today``), which gives both functions a new signature. Re-installs
``store/sql/wallet_v1.sql`` (the new signatures; the other functions are replaced in place) and
turns the two signatures of 0005 into thin wrappers over the new ones, so a server process of
the previous release still running during a rolling upgrade keeps its exact behaviour. SQLite
runs the same rules in Python (``qwallet.store.engine``): nothing to do there.
"""

from __future__ import annotations

from alembic import op

from qwallet.store.postgres import wallet_function_statements, wrappers_before_0006

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for statement in wallet_function_statements():
        bind.exec_driver_sql(statement)
    # CREATE OR REPLACE keeps the functions' identity, so nothing that refers to them breaks.
    for statement in wrappers_before_0006():
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    # The wrappers give the 0005 signatures the behaviour they had, so code of revision 0005
    # runs unchanged on the current functions; like 0005, a downgrade keeps them.
    pass
