"""The error codes of the Wallet API contract (spec §1.2) and the exception that carries them.

Every failure the service can report maps to one ``ErrorCode``. Business errors travel as
HTTP 200 with the error body; 101 is HTTP 400 and 100 is HTTP 500 (the outcome is unknown to the
caller, so retrying the same call is safe). 103 is our addition for HTTP 401 and 403.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    OTHER = 100
    MALFORMED_REQUEST = 101
    INVALID_AMOUNT = 102
    NOT_AUTHORIZED = 103  # ours: HTTP 401 (credentials) or 403 (address not allowed)
    RATE_LIMITED = 104  # ours: HTTP 429 with Retry-After; nothing was processed
    UNKNOWN_SESSION = 110
    SESSION_EXPIRED = 111
    PLAYER_BLOCKED = 112
    CURRENCY_MISMATCH = 120
    INSUFFICIENT_FUNDS = 121
    LIMIT_EXCEEDED = 122
    TRANSACTION_NOT_FOUND = 130
    TRANSACTION_DATA_MISMATCH = 131
    TRANSACTION_ROLLED_BACK = 132
    TRANSACTION_CONFIRMED = 133
    TRANSACTION_IN_PROGRESS = 134

    @property
    def http_status(self) -> int:
        if self is ErrorCode.OTHER:
            return 500
        if self is ErrorCode.MALFORMED_REQUEST:
            return 400
        if self is ErrorCode.NOT_AUTHORIZED:
            return 401
        if self is ErrorCode.RATE_LIMITED:
            return 429
        return 200

    @property
    def retryable(self) -> bool:
        return self in (
            ErrorCode.OTHER,
            ErrorCode.RATE_LIMITED,
            ErrorCode.TRANSACTION_IN_PROGRESS,
        )


DEFAULT_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.OTHER: "Unexpected error; the outcome is unknown, retrying the same call is safe.",
    ErrorCode.MALFORMED_REQUEST: "Malformed request.",
    ErrorCode.INVALID_AMOUNT: "Invalid amount.",
    ErrorCode.NOT_AUTHORIZED: "Missing or invalid credentials.",
    ErrorCode.RATE_LIMITED: "Rate limited; retry later (see Retry-After).",
    ErrorCode.UNKNOWN_SESSION: "Unknown or revoked session token.",
    ErrorCode.SESSION_EXPIRED: "Session expired.",
    ErrorCode.PLAYER_BLOCKED: "Player is blocked.",
    ErrorCode.CURRENCY_MISMATCH: "Currency does not match the player's wallet.",
    ErrorCode.INSUFFICIENT_FUNDS: "Insufficient funds.",
    ErrorCode.LIMIT_EXCEEDED: "Limit exceeded.",
    ErrorCode.TRANSACTION_NOT_FOUND: "Transaction not found.",
    ErrorCode.TRANSACTION_DATA_MISMATCH: "Transaction id already used with different data.",
    ErrorCode.TRANSACTION_ROLLED_BACK: "Transaction already rolled back.",
    ErrorCode.TRANSACTION_CONFIRMED: "Transaction already confirmed.",
    ErrorCode.TRANSACTION_IN_PROGRESS: "Transaction is being processed by a concurrent request.",
}


class WalletError(Exception):
    """A contract error: ``code`` and a human-readable ``description`` for debugging.

    ``extra`` holds the optional fields the contract allows in an error body
    (``balance`` on 121, ``mmTransactionId`` / ``qwTransactionId`` where known), already in
    their JSON shape.
    """

    def __init__(self, code: ErrorCode, description: str | None = None, **extra: Any) -> None:
        self.code = code
        self.description = description or DEFAULT_DESCRIPTIONS[code]
        self.extra = extra
        super().__init__(f"{int(code)}: {self.description}")
