"""Which payment methods a partner's players may use: configured per partner, never by a client.

``partners.payment_methods`` is a comma-separated list of method names (``wallet``,
``sandbox_card``). A sandbox method (one that "pays" without moving money) is allowed only for a
partner marked ``sandbox = 1``; the database refuses any other row (CHECK
``ck_partners_sandbox_methods``), the payment transactions check it again against the row they
read, and ``qwallet serve`` refuses to start if a row got around the check
(``qwallet.service.partners.sandbox_violations``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

WALLET = "wallet"
SANDBOX_CARD = "sandbox_card"
KNOWN_METHODS = (WALLET, SANDBOX_CARD)
# Methods that confirm payments no one paid for: demo and partner test integrations only.
SANDBOX_METHODS = frozenset({SANDBOX_CARD})
DEFAULT_METHODS = (WALLET,)


class MethodsError(ValueError):
    """A payment-method list that cannot be configured; the message says why."""


def split_methods(text: str | None) -> tuple[str, ...]:
    """The methods of a stored or typed list, in order, without blanks or repeats."""
    seen: list[str] = []
    for part in (text or "").replace(" ", ",").split(","):
        name = part.strip()
        if name and name not in seen:
            seen.append(name)
    return tuple(seen)


def check_methods(methods: Iterable[str], *, sandbox: bool) -> tuple[str, ...]:
    """Validate a list for a partner (``sandbox`` or not); returns it without repeats."""
    names = split_methods(",".join(methods))
    if not names:
        raise MethodsError(f"at least one payment method is needed ({', '.join(KNOWN_METHODS)})")
    unknown = [name for name in names if name not in KNOWN_METHODS]
    if unknown:
        raise MethodsError(
            f"unknown payment method {unknown[0]!r} (known: {', '.join(KNOWN_METHODS)})"
        )
    demo_only = [name for name in names if name in SANDBOX_METHODS]
    if demo_only and not sandbox:
        raise MethodsError(
            f"{demo_only[0]} is a sandbox method: only a sandbox partner may offer it"
        )
    return names


@dataclass(frozen=True, slots=True)
class PartnerMethods:
    """A partner's payment settings as stored: what its players may pay with."""

    methods: tuple[str, ...]
    sandbox: bool

    @classmethod
    def from_row(cls, payment_methods: object, sandbox: object) -> PartnerMethods:
        return cls(split_methods(str(payment_methods or "")), bool(sandbox))

    def allows(self, method: str) -> bool:
        # Both conditions, always: a row that slipped past the database check still cannot
        # make a production partner accept a sandbox payment.
        if method not in self.methods or method not in KNOWN_METHODS:
            return False
        return self.sandbox or method not in SANDBOX_METHODS


__all__ = [
    "DEFAULT_METHODS",
    "KNOWN_METHODS",
    "SANDBOX_CARD",
    "SANDBOX_METHODS",
    "WALLET",
    "MethodsError",
    "PartnerMethods",
    "check_methods",
    "split_methods",
]
