"""The platform's own ids (transactions, adjustments): UUIDs in their canonical text form.

On PostgreSQL they are stored as ``uuid`` (migration 0014), so comparing a column with a string
that is not a UUID is an error there (``invalid input syntax for type uuid``), where SQLite,
which stores text, finds nothing. Every place that looks an id up from an outside string (a URL
path, a console form, an API cursor, a command-line argument) checks it with ``is_platform_id``
first and answers as for an unknown id: the same answer on both databases, and never a 500.

Only the canonical form counts (36 characters, lower-case hex, hyphens at 8-4-4-4-12), the one
``uuid::text`` and ``str(UUID)`` write: PostgreSQL would also accept upper case, braces or no
hyphens, but the same text finds nothing on SQLite, so it finds nothing anywhere. Any version
passes: transactions created before migration 0018 have version-4 (random) ids, later ones
version 7 (``new_transaction_id``).

Transaction ids are time-ordered since migration 0018 (RFC 9562 version 7): the first 48 bits
are the creation millisecond, so a new id lands at the right edge of every B-tree index on it
(the primary key of ``transactions``, ``transaction_keys``, ``ix_ledger_entries_transaction``)
instead of on a random page, which on a loaded database costs a page read and a full-page image
in the WAL per insert (docs/benchmarks.md). ``store/sql/ids_v1.sql`` (``qwallet_uuid_v7``) is
the same layout for the wallet functions; tests/store/test_uuid_v7.py holds both to it.
"""

from __future__ import annotations

import re
import secrets
import uuid

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

NIL_ID = "00000000-0000-0000-0000-000000000000"
"""Below every generated id (version-4 and version-7 UUIDs are never nil): where a keyset scan
starts."""

_MS_BITS = 48
_RANDOM_BITS = 74
_RAND_B_BITS = 62  # the random bits after the variant; the 12 before it are rand_a
_VERSION_7 = 0x7
_VARIANT_RFC = 0b10


def new_transaction_id(now_ms: int) -> str:
    """A version-7 UUID for a transaction created at ``now_ms`` (the call's clock).

    Layout (RFC 9562, 5.7): 48-bit Unix milliseconds, version 7, 12 random bits, variant 10,
    62 random bits. Uniqueness comes from the 74 random bits alone (two ids of the same
    millisecond collide with probability 2**-74), not from the clock: ids of one millisecond
    are not ordered among themselves, and a clock that steps back only puts an id on an older
    page, it cannot repeat one. Within a process they are therefore not strictly monotonic;
    nothing needs them to be, only roughly time-ordered for the indexes.
    """
    random = secrets.randbits(_RANDOM_BITS)
    value = (
        (now_ms & ((1 << _MS_BITS) - 1)) << 80
        | _VERSION_7 << 76
        | (random >> _RAND_B_BITS) << 64
        | _VARIANT_RFC << 62
        | random & ((1 << _RAND_B_BITS) - 1)
    )
    return str(uuid.UUID(int=value))


def is_platform_id(text: object) -> bool:
    """Whether ``text`` is a UUID in canonical lower-case form (and so may name a stored id)."""
    return isinstance(text, str) and len(text) == 36 and _CANONICAL.fullmatch(text) is not None


__all__ = ["NIL_ID", "is_platform_id", "new_transaction_id"]
