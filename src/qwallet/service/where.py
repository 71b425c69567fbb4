"""A WHERE clause assembled from optional filters, for the operator side's portable SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Where:
    """A WHERE clause built from optional filters, numbering placeholders as it goes."""

    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, template: str, value: Any) -> None:
        self.args.append(value)
        self.clauses.append(template.replace("?", f"${len(self.args)}"))

    @property
    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""

    def next_placeholder(self, ahead: int = 1) -> str:
        return f"${len(self.args) + ahead}"
