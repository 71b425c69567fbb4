"""Building a partial index on the partitioned ``transactions`` table in a migration.

An index of a partitioned table cannot be built ``CONCURRENTLY``. An operator of a large
database builds it on every partition concurrently beforehand (docs/operations.md, the
"Upgrading a large database to …" sections); ``CREATE INDEX`` on the parent then attaches each
valid matching partition index instead of building it, and builds it only on the partitions
without one (the empty months ahead). A partition index left invalid by an interrupted
concurrent build is dropped first: it is never read but costs every write. An index of that
name on the parent that is not the one asked for stops the upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Indexes of the table's partitions that are invalid (an interrupted CREATE INDEX
# CONCURRENTLY), not attached to a parent index, and of the given predicate.
_INVALID_PREBUILT = """
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_inherits p
  JOIN pg_index i ON i.indrelid = p.inhrelid
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.inhparent = CAST(:table AS regclass)
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


def create_partial_index(
    bind: sa.Connection,
    *,
    name: str,
    table: str,
    columns: list[str],
    predicate: str,
    printed: str,
    section: str,
) -> None:
    """Create ``name`` on ``table`` (``columns`` WHERE ``predicate``) on PostgreSQL, attaching
    prebuilt partition indexes. ``printed`` is the predicate as ``pg_get_expr`` prints it, to
    recognise them; ``section`` names the docs/operations.md section an error points to."""
    existing = bind.execute(sa.text(_PARENT_INDEX), {"name": name}).first()
    if existing is not None:
        if existing.valid and list(existing.columns) == columns and existing.predicate == printed:
            return
        raise RuntimeError(
            f"index {name} exists but is not ({', '.join(columns)}) WHERE {predicate} on every"
            f" partition: drop it and upgrade again (docs/operations.md, '{section}')"
        )
    for row in bind.execute(sa.text(_INVALID_PREBUILT), {"table": table, "predicate": printed}):
        bind.exec_driver_sql(f'DROP INDEX "{row.schema}"."{row.name}"')
    # On the parent: attaches every valid matching partition index, builds the missing ones.
    op.create_index(name, table, columns, postgresql_where=sa.text(predicate))
