"""Keyset pagination: the position after the last row shown, instead of an OFFSET.

An OFFSET page reads and throws away every row before it, so page 200 of a list costs 200
pages; a keyset page starts where the previous one ended, inside an index, and costs the same
on any page however many rows are stored. The cursor is the ordering key of the last row shown,
as text the pages carry in ``?after=``: ``<created_at_ms>_<id>`` for lists ordered by time, or
``<id>`` for lists ordered by a serial id. A cursor that does not parse is a clear error
(``OperatorError``), never a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qwallet.service.partners import OperatorError
from qwallet.store.sql import Row

MAX_CURSOR_CHARS = 200


@dataclass(frozen=True, slots=True)
class TimeCursor:
    """After the row created at ``at_ms`` with id ``key`` (newest first, ties by id, descending)."""

    at_ms: int
    key: str

    def text(self) -> str:
        return f"{self.at_ms}_{self.key}"

    @staticmethod
    def parse(text: str | None) -> TimeCursor | None:
        if not text:
            return None
        at, sep, key = text.partition("_")
        if not sep or not key or len(text) > MAX_CURSOR_CHARS or not at.isdigit() or len(at) > 15:
            raise OperatorError(f"not a page cursor: {text[:40]!r}")
        return TimeCursor(int(at), key)

    def where(self, time_column: str, key_column: str, first_placeholder: int) -> str:
        """Rows strictly after this cursor; the ``<=`` bound alone is an index range."""
        at, key = f"${first_placeholder}", f"${first_placeholder + 1}"
        return f"{time_column} <= {at} AND ({time_column} < {at} OR {key_column} < {key})"


def parse_id_cursor(text: str | None) -> int | None:
    """The serial id after which (descending) the next page starts."""
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise OperatorError(f"not a page cursor: {text[:40]!r}")
    return int(text)


def next_time_cursor(
    rows: Sequence[Row], page_size: int, time_field: str, key_field: str
) -> str | None:
    """The cursor of the next page, or None when ``rows`` (fetched ``page_size + 1``) is the end."""
    if len(rows) <= page_size:
        return None
    last = rows[page_size - 1]
    return TimeCursor(int(last[time_field]), str(last[key_field])).text()


def next_id_cursor(rows: Sequence[Row], page_size: int, id_field: str = "id") -> str | None:
    if len(rows) <= page_size:
        return None
    return str(int(rows[page_size - 1][id_field]))
