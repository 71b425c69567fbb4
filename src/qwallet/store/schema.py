"""The database schema, as SQLAlchemy Core metadata (the same for SQLite and PostgreSQL).

Only migrations and schema checks use this module; the hot path runs raw SQL. Times are integer
milliseconds since the Unix epoch (``*_at_ms``) so both dialects store and compare them alike;
money is integer minor units (``*_minor``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

partners = Table(
    "partners",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    # JSON list of CIDRs; NULL or empty means every address is allowed.
    Column("ip_allow", Text, nullable=True),
    Column("client_url", Text, nullable=True),
    Column("callback_url", Text, nullable=True),
    Column("query_url", Text, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
)

partner_credentials = Table(
    "partner_credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("partner_id", Integer, ForeignKey("partners.id"), nullable=False),
    Column("username", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    Index("ix_partner_credentials_username", "username"),
)

players = Table(
    "players",
    metadata,
    Column("id", Text, primary_key=True),
    Column("nickname", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("available_minor", BigInteger, nullable=False),
    Column("held_minor", BigInteger, nullable=False),
    Column("pending_in_minor", BigInteger, nullable=False),
    # Responsible-gaming limit on withdrawals per UTC day; NULL means no limit.
    Column("daily_withdraw_limit_minor", BigInteger, nullable=True),
    Column("limit_day", Integer, nullable=False),
    Column("day_withdrawn_minor", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint("available_minor >= 0", name="ck_players_available_not_negative"),
    CheckConstraint("held_minor >= 0", name="ck_players_held_not_negative"),
    CheckConstraint("pending_in_minor >= 0", name="ck_players_pending_in_not_negative"),
    CheckConstraint("status IN ('active', 'blocked')", name="ck_players_status"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token", Text, primary_key=True),
    Column("player_id", Text, ForeignKey("players.id"), nullable=False),
    Column("partner_id", Integer, ForeignKey("partners.id"), nullable=False),
    Column("game_code", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("last_seen_at_ms", BigInteger, nullable=False),
    Column("idle_timeout_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    Index("ix_sessions_player", "player_id"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("qw_transaction_id", Text, primary_key=True),
    Column("partner_id", Integer, ForeignKey("partners.id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("mm_transaction_id", Text, nullable=False),
    Column("player_id", Text, ForeignKey("players.id"), nullable=False),
    # NULL only for a rollback recorded before its original arrived.
    Column("amount_minor", BigInteger, nullable=True),
    Column("currency", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("rollback_reason", Text, nullable=True),
    Column("begin_balance_minor", BigInteger, nullable=True),
    Column("final_balance_minor", BigInteger, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    UniqueConstraint("partner_id", "kind", "mm_transaction_id", name="uq_transactions_mm_id"),
    CheckConstraint("kind IN ('withdrawal', 'deposit')", name="ck_transactions_kind"),
    CheckConstraint(
        "state IN ('pending', 'confirmed', 'rolled_back')", name="ck_transactions_state"
    ),
    CheckConstraint(
        "amount_minor IS NULL OR amount_minor > 0", name="ck_transactions_amount_positive"
    ),
    Index("ix_transactions_player", "player_id", "created_at_ms"),
    Index("ix_transactions_state", "state", "created_at_ms"),
)

adjustments = Table(
    "adjustments",
    metadata,
    Column("id", Text, primary_key=True),
    Column("player_id", Text, ForeignKey("players.id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("operator", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint("amount_minor <> 0", name="ck_adjustments_amount_not_zero"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    # Exactly one of transaction_id / adjustment_id names what the entry belongs to.
    Column("transaction_id", Text, nullable=True),
    Column("adjustment_id", Text, nullable=True),
    Column("phase", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("player_id", Text, nullable=True),
    Column("partner_id", Integer, nullable=True),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint(
        "(transaction_id IS NULL) <> (adjustment_id IS NULL)", name="ck_ledger_entries_owner"
    ),
    Index("ix_ledger_entries_transaction", "transaction_id"),
    Index("ix_ledger_entries_player", "player_id"),
)

operator_api_keys = Table(
    "operator_api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
)
