"""archive: the idempotency key table; monthly partitions of transactions and ledger entries

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

- ``transaction_keys`` (both databases): one row per Wallet API transaction, primary key
  ``(partner_id, mm_transaction_id, kind)``, filled from ``transactions``. It now holds the
  uniqueness ``uq_transactions_mm_id`` held, which becomes the plain index
  ``ix_transactions_mm_id``, and it keeps the final answer of transactions whose month
  ``qwallet db archive`` exported (docs/operations.md, "Archiving").
- PostgreSQL: ``transactions`` and ``ledger_entries`` are rebuilt as tables partitioned by
  month on ``created_at_ms`` (primary keys ``(qw_transaction_id, created_at_ms)`` and
  ``(id, created_at_ms)``; the entry id sequence is kept), partitions in the schema
  ``qwallet_partitions``: a default partition each with the autovacuum parameters of 0008, a
  month for every month that holds rows, and the current month and the next three
  (``store/sql/partitions_v1.sql``). The rows are copied: on a large database this migration
  takes minutes (about one per few million transactions on a small machine) and holds the
  tables locked meanwhile; plan it like any table rewrite. The wallet functions are
  re-installed: they find a transaction through its key and claim ids on the key table.
- SQLite keeps one table of each (docs/operations.md says what that means).
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

from qwallet.store.postgres import read_sql, split_sql, wallet_function_statements

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

PARTITIONS_SCRIPT = "partitions_v1.sql"
FUNCTIONS_BEFORE_0011 = "wallet_v1_before_0011.sql"
MONTHS_AHEAD = 3
_MONTH_MS = 31 * 86_400_000

# The storage parameters of migration 0008, which partitioned parents cannot hold: they go on
# the default partitions, from which every month partition copies them.
_TRANSACTIONS_STORAGE = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 100000,"
    " autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000000,"
    " autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000000,"
    " autovacuum_vacuum_cost_delay = 1, fillfactor = 90"
)
_LEDGER_STORAGE = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 100000,"
    " autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 4000000,"
    " autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 4000000,"
    " autovacuum_vacuum_cost_delay = 1"
)

_TRANSACTION_COLUMNS = (
    "qw_transaction_id, partner_id, kind, mm_transaction_id, player_id, amount_minor, currency,"
    " state, description, rollback_reason, begin_balance_minor, final_balance_minor,"
    " created_at_ms, updated_at_ms"
)
_ENTRY_COLUMNS = (
    "id, transaction_id, adjustment_id, phase, account, player_id, partner_id, currency,"
    " amount_minor, created_at_ms"
)

_CREATE_TRANSACTIONS = """
CREATE TABLE transactions (
    qw_transaction_id TEXT NOT NULL,
    partner_id INTEGER NOT NULL REFERENCES partners (id),
    kind TEXT NOT NULL,
    mm_transaction_id TEXT NOT NULL,
    player_id TEXT NOT NULL REFERENCES players (id),
    amount_minor BIGINT,
    currency TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT,
    rollback_reason TEXT,
    begin_balance_minor BIGINT,
    final_balance_minor BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CONSTRAINT transactions_pkey PRIMARY KEY (qw_transaction_id, created_at_ms),
    CONSTRAINT ck_transactions_kind CHECK (kind IN ('withdrawal', 'deposit')),
    CONSTRAINT ck_transactions_state CHECK (state IN ('pending', 'confirmed', 'rolled_back')),
    CONSTRAINT ck_transactions_amount_positive CHECK (amount_minor IS NULL OR amount_minor > 0)
) PARTITION BY RANGE (created_at_ms)
"""
_CREATE_LEDGER = """
CREATE TABLE ledger_entries (
    id BIGINT NOT NULL DEFAULT nextval('ledger_entries_id_seq'::regclass),
    transaction_id TEXT,
    adjustment_id TEXT,
    phase TEXT NOT NULL,
    account TEXT NOT NULL,
    player_id TEXT,
    partner_id INTEGER,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CONSTRAINT ledger_entries_pkey PRIMARY KEY (id, created_at_ms),
    CONSTRAINT ck_ledger_entries_owner CHECK ((transaction_id IS NULL) <> (adjustment_id IS NULL))
) PARTITION BY RANGE (created_at_ms)
"""
_TRANSACTION_INDEXES = (
    "CREATE INDEX ix_transactions_mm_id ON transactions (partner_id, mm_transaction_id, kind)",
    "CREATE INDEX ix_transactions_player ON transactions (player_id, created_at_ms)",
    "CREATE INDEX ix_transactions_state ON transactions (state, created_at_ms)",
    "CREATE INDEX ix_transactions_created ON transactions (created_at_ms)",
    "CREATE INDEX ix_transactions_partner_created"
    " ON transactions (partner_id, created_at_ms, qw_transaction_id)",
    "CREATE INDEX ix_transactions_partner_updated ON transactions (partner_id, updated_at_ms)",
)
_LEDGER_INDEXES = (
    "CREATE INDEX ix_ledger_entries_transaction ON ledger_entries (transaction_id)",
    "CREATE INDEX ix_ledger_entries_player ON ledger_entries (player_id)",
    "CREATE INDEX ix_ledger_entries_adjustment ON ledger_entries (adjustment_id)"
    " WHERE adjustment_id IS NOT NULL",
)
_OLD_INDEXES = (
    "ix_transactions_player",
    "ix_transactions_state",
    "ix_transactions_created",
    "ix_transactions_partner_created",
    "ix_transactions_partner_updated",
    "ix_ledger_entries_transaction",
    "ix_ledger_entries_player",
    "ix_ledger_entries_adjustment",
)


def _create_keys_table() -> None:
    op.create_table(
        "transaction_keys",
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("mm_transaction_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("qw_transaction_id", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("player_id", sa.Text(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("begin_balance_minor", sa.BigInteger(), nullable=True),
        sa.Column("final_balance_minor", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "state IS NULL OR state IN ('confirmed', 'rolled_back')",
            name="ck_transaction_keys_state",
        ),
        sa.PrimaryKeyConstraint("partner_id", "mm_transaction_id", "kind"),
    )
    op.execute(
        "INSERT INTO transaction_keys (partner_id, mm_transaction_id, kind, qw_transaction_id,"
        " created_at_ms) SELECT partner_id, mm_transaction_id, kind, qw_transaction_id,"
        " created_at_ms FROM transactions"
    )


def _run_script(name: str) -> None:
    bind = op.get_bind()
    for statement in split_sql(read_sql(name)):
        bind.exec_driver_sql(statement)


def _partition_postgres() -> None:
    bind = op.get_bind()
    # Returns the row type of the table about to be replaced; the script re-creates it.
    bind.exec_driver_sql("DROP FUNCTION IF EXISTS wallet_v1_find(integer, text, text)")
    bind.exec_driver_sql("LOCK TABLE transactions, ledger_entries IN ACCESS EXCLUSIVE MODE")
    for name in _OLD_INDEXES:
        bind.exec_driver_sql(f"DROP INDEX {name}")
    bind.exec_driver_sql("ALTER TABLE transactions DROP CONSTRAINT uq_transactions_mm_id")
    bind.exec_driver_sql("ALTER TABLE transactions RENAME TO transactions_v10")
    bind.exec_driver_sql(
        "ALTER TABLE transactions_v10 RENAME CONSTRAINT transactions_pkey TO transactions_v10_pkey"
    )
    bind.exec_driver_sql("ALTER TABLE ledger_entries RENAME TO ledger_entries_v10")
    bind.exec_driver_sql(
        "ALTER TABLE ledger_entries_v10 RENAME CONSTRAINT ledger_entries_pkey"
        " TO ledger_entries_v10_pkey"
    )
    bind.exec_driver_sql(_CREATE_TRANSACTIONS)
    bind.exec_driver_sql(_CREATE_LEDGER)
    for statement in (*_TRANSACTION_INDEXES, *_LEDGER_INDEXES):
        bind.exec_driver_sql(statement)
    bind.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS qwallet_partitions")
    bind.exec_driver_sql(
        "CREATE TABLE qwallet_partitions.transactions_default PARTITION OF transactions DEFAULT"
        f" WITH ({_TRANSACTIONS_STORAGE})"
    )
    bind.exec_driver_sql(
        "CREATE TABLE qwallet_partitions.ledger_entries_default PARTITION OF ledger_entries"
        f" DEFAULT WITH ({_LEDGER_STORAGE})"
    )
    _run_script(PARTITIONS_SCRIPT)
    # A month for every month that holds rows, then now and the months ahead.
    months = bind.exec_driver_sql(
        "SELECT DISTINCT (qwallet_month_bounds(created_at_ms)).lower_ms AS m FROM ("
        " SELECT created_at_ms FROM transactions_v10"
        " UNION SELECT created_at_ms FROM ledger_entries_v10) t"
    ).all()
    for (lower_ms,) in months:
        bind.exec_driver_sql(f"SELECT qwallet_ensure_partitions({lower_ms}, {lower_ms})")
    now_ms = int(time.time() * 1000)
    bind.exec_driver_sql(
        f"SELECT qwallet_ensure_partitions({now_ms}, {now_ms + MONTHS_AHEAD * _MONTH_MS})"
    )
    bind.exec_driver_sql(
        f"INSERT INTO transactions ({_TRANSACTION_COLUMNS})"
        f" SELECT {_TRANSACTION_COLUMNS} FROM transactions_v10"
    )
    bind.exec_driver_sql(
        f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) SELECT {_ENTRY_COLUMNS}"
        " FROM ledger_entries_v10"
    )
    # The sequence belongs to the old column and would be dropped with it.
    bind.exec_driver_sql("ALTER SEQUENCE ledger_entries_id_seq OWNED BY ledger_entries.id")
    bind.exec_driver_sql("DROP TABLE transactions_v10")
    bind.exec_driver_sql("DROP TABLE ledger_entries_v10")
    for statement in wallet_function_statements():
        bind.exec_driver_sql(statement)


def _unpartition_postgres() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql("DROP FUNCTION IF EXISTS wallet_v1_find(integer, text, text)")
    bind.exec_driver_sql("ALTER TABLE transactions RENAME TO transactions_v11")
    bind.exec_driver_sql("ALTER TABLE ledger_entries RENAME TO ledger_entries_v11")
    for name in (*_OLD_INDEXES, "ix_transactions_mm_id"):
        bind.exec_driver_sql(f"DROP INDEX {name}")
    bind.exec_driver_sql(
        "ALTER TABLE transactions_v11 RENAME CONSTRAINT transactions_pkey TO transactions_v11_pkey"
    )
    bind.exec_driver_sql(
        "ALTER TABLE ledger_entries_v11 RENAME CONSTRAINT ledger_entries_pkey"
        " TO ledger_entries_v11_pkey"
    )
    plain_transactions = (
        _CREATE_TRANSACTIONS.replace(" PARTITION BY RANGE (created_at_ms)", "")
        .replace(
            "PRIMARY KEY (qw_transaction_id, created_at_ms)", "PRIMARY KEY (qw_transaction_id)"
        )
        .replace(
            "CONSTRAINT ck_transactions_kind",
            "CONSTRAINT uq_transactions_mm_id UNIQUE (partner_id, mm_transaction_id, kind),"
            " CONSTRAINT ck_transactions_kind",
        )
    )
    plain_ledger = _CREATE_LEDGER.replace(" PARTITION BY RANGE (created_at_ms)", "").replace(
        "PRIMARY KEY (id, created_at_ms)", "PRIMARY KEY (id)"
    )
    bind.exec_driver_sql(plain_transactions)
    bind.exec_driver_sql(plain_ledger)
    for statement in (*_TRANSACTION_INDEXES[1:], *_LEDGER_INDEXES):
        bind.exec_driver_sql(statement)
    bind.exec_driver_sql(
        f"INSERT INTO transactions ({_TRANSACTION_COLUMNS})"
        f" SELECT {_TRANSACTION_COLUMNS} FROM transactions_v11"
    )
    bind.exec_driver_sql(
        f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) SELECT {_ENTRY_COLUMNS}"
        " FROM ledger_entries_v11"
    )
    bind.exec_driver_sql("ALTER SEQUENCE ledger_entries_id_seq OWNED BY ledger_entries.id")
    bind.exec_driver_sql("DROP TABLE transactions_v11")
    bind.exec_driver_sql("DROP TABLE ledger_entries_v11")
    bind.exec_driver_sql("DROP SCHEMA qwallet_partitions CASCADE")
    bind.exec_driver_sql("DROP FUNCTION qwallet_ensure_partitions(bigint, bigint)")
    bind.exec_driver_sql("DROP FUNCTION qwallet_month_bounds(bigint)")
    bind.exec_driver_sql(f"ALTER TABLE transactions SET ({_TRANSACTIONS_STORAGE})")
    bind.exec_driver_sql(f"ALTER TABLE ledger_entries SET ({_LEDGER_STORAGE})")
    # The functions of revision 0010 (they claim ids on uq_transactions_mm_id again).
    _run_script(FUNCTIONS_BEFORE_0011)


def upgrade() -> None:
    bind = op.get_bind()
    _create_keys_table()
    if bind.dialect.name == "postgresql":
        _partition_postgres()
        return
    # SQLite cannot drop a table constraint: batch mode copies the table.
    with op.batch_alter_table("transactions", recreate="always") as batch_op:
        batch_op.drop_constraint("uq_transactions_mm_id", type_="unique")
        batch_op.create_index(
            "ix_transactions_mm_id", ["partner_id", "mm_transaction_id", "kind"], unique=False
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _unpartition_postgres()
    else:
        with op.batch_alter_table("transactions", recreate="always") as batch_op:
            batch_op.drop_index("ix_transactions_mm_id")
            batch_op.create_unique_constraint(
                "uq_transactions_mm_id", ["partner_id", "mm_transaction_id", "kind"]
            )
    op.drop_table("transaction_keys")
