"""The platform's own ids (transactions, adjustments): UUIDs in their canonical text form.

On PostgreSQL they are stored as ``uuid`` (migration 0014), so comparing a column with a string
that is not a UUID is an error there (``invalid input syntax for type uuid``), where SQLite,
which stores text, finds nothing. Every place that looks an id up from an outside string (a URL
path, a console form, an API cursor, a command-line argument) checks it with ``is_platform_id``
first and answers as for an unknown id: the same answer on both databases, and never a 500.

Only the canonical form counts (36 characters, lower-case hex, hyphens at 8-4-4-4-12), the one
``gen_random_uuid()::text`` and ``str(uuid4())`` write: PostgreSQL would also accept upper case,
braces or no hyphens, but the same text finds nothing on SQLite, so it finds nothing anywhere.
"""

from __future__ import annotations

import re

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

NIL_ID = "00000000-0000-0000-0000-000000000000"
"""Below every generated id (version-4 UUIDs are never nil): where a keyset scan starts."""


def is_platform_id(text: object) -> bool:
    """Whether ``text`` is a UUID in canonical lower-case form (and so may name a stored id)."""
    return isinstance(text, str) and len(text) == 36 and _CANONICAL.fullmatch(text) is not None


__all__ = ["NIL_ID", "is_platform_id"]
