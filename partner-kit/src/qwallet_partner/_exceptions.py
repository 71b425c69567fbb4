"""The partner kit's exceptions.

The kit must be usable without the rest of ``qwallet``, so the error codes of the contract
(spec §1.2) are duplicated here rather than imported from the platform's domain;
``tests/partner/test_error_codes.py`` proves the copy equals ``qwallet.domain.errors.ErrorCode``
member by member.

Our exception hierarchy::

    PartnerKitError
    ├── WalletAPIError ················· the platform answered with an error body (``code``)
    │   ├── OtherError (100) ··········· also an OutcomeUnknownError: HTTP 500, retry is safe
    │   ├── MalformedRequestError (101)  HTTP 400
    │   ├── InvalidAmountError (102)
    │   ├── NotAllowedError (103) ······ HTTP 401/403 (our extension of the table)
    │   ├── RateLimitedError (104) ····· HTTP 429, nothing processed; retryable after
    │   │                                ``retry_after_s`` (the Retry-After header)
    │   ├── SessionError
    │   │   ├── UnknownSessionError (110)
    │   │   ├── SessionExpiredError (111)
    │   │   └── PlayerBlockedError (112)
    │   ├── CurrencyMismatchError (120)
    │   ├── InsufficientFundsError (121)  carries ``balance``
    │   ├── LimitExceededError (122)
    │   └── TransactionError
    │       ├── TransactionNotFoundError (130)
    │       ├── TransactionDataMismatchError (131)
    │       ├── TransactionRolledBackError (132)
    │       ├── TransactionConfirmedError (133)
    │       └── TransactionInProgressError (134)  retryable
    ├── OutcomeUnknownError ············ we cannot tell whether the platform applied the call
    │   ├── OtherError (see above)
    │   ├── UnexpectedResponseError ···· a status or body outside the contract (e.g. a 502 page)
    │   └── TransportError
    │       ├── WalletTimeoutError
    │       └── WalletConnectionError
    └── FlowError ······················ a withdrawal/deposit flow used the wrong way

``retryable`` is true where repeating the same call is the right reaction (100, 104, 134 and
every outcome-unknown error). The kit never repeats a ``withdraw`` or ``deposit`` itself: the
contract says those are sent once, and an unknown outcome is resolved by rolling back. A 104 is
not an unknown outcome (the platform refused before processing anything), but the flow still
rolls back, as the contract asks after any failed original; its outbox sends that rollback, and
every later confirm or rollback, no sooner than ``retry_after_s``.
"""

from __future__ import annotations

from decimal import Decimal
from enum import IntEnum
from typing import Any

MAX_RETRY_AFTER_S = 3600.0
"""The longest pause a ``Retry-After`` header can impose. The platform's own ask for seconds; a
larger value (a misconfigured proxy) must not park a confirm or rollback for days."""


class ErrorCode(IntEnum):
    """The codes of the contract's error table (spec §1.2), plus 103 (HTTP 401/403) and 104
    (HTTP 429): the same members as the platform's ``qwallet.domain.errors.ErrorCode``.

    ``NOT_ALLOWED`` is the kit's earlier name of 103, kept as an alias of ``NOT_AUTHORIZED``.
    """

    OTHER = 100
    MALFORMED_REQUEST = 101
    INVALID_AMOUNT = 102
    NOT_AUTHORIZED = 103
    NOT_ALLOWED = 103
    RATE_LIMITED = 104
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


class PartnerKitError(Exception):
    """Base class of every exception the kit raises on purpose."""

    retryable: bool = False


class OutcomeUnknownError(PartnerKitError):
    """The call may or may not have been applied by the platform.

    For ``withdraw``/``deposit`` this means: roll back (the flows do it for you). For confirm and
    rollback it means: send the same call again later (the outbox does it for you).
    """

    retryable = True


class WalletAPIError(PartnerKitError):
    """The platform answered with the contract's error body.

    ``extra`` holds the other fields of the error body as decoded JSON (``balance`` on 121,
    ``mmTransactionId``/``qwTransactionId`` where the platform knows them).
    """

    code: int = ErrorCode.OTHER

    def __init__(
        self,
        description: str = "",
        *,
        code: int | None = None,
        http_status: int = 200,
        extra: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.description = description
        self.http_status = http_status
        self.extra: dict[str, Any] = dict(extra or {})
        self.request_id = request_id
        super().__init__(f"{self.code}: {description}" if description else str(self.code))


class OtherError(WalletAPIError, OutcomeUnknownError):
    code = ErrorCode.OTHER
    retryable = True


class MalformedRequestError(WalletAPIError):
    code = ErrorCode.MALFORMED_REQUEST


class InvalidAmountError(WalletAPIError):
    code = ErrorCode.INVALID_AMOUNT


class NotAllowedError(WalletAPIError):
    """Wrong credentials, or a caller the platform does not accept (HTTP 401 or 403)."""

    code = ErrorCode.NOT_AUTHORIZED


class RateLimitedError(WalletAPIError):
    """104 / HTTP 429: the platform refused the call before processing it, for now.

    ``retry_after_s`` is the pause the platform asked for (its ``Retry-After`` header, at most
    ``MAX_RETRY_AFTER_S``), or None if it gave none. Sending the same call again after it is safe.
    """

    code = ErrorCode.RATE_LIMITED
    retryable = True

    def __init__(
        self,
        description: str = "",
        *,
        code: int | None = None,
        http_status: int = 429,
        extra: dict[str, Any] | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            description, code=code, http_status=http_status, extra=extra, request_id=request_id
        )
        if retry_after_s is not None:
            retry_after_s = min(max(0.0, retry_after_s), MAX_RETRY_AFTER_S)
        self.retry_after_s = retry_after_s


class SessionError(WalletAPIError):
    """The session token cannot be used (unknown, expired, or its player is blocked)."""


class UnknownSessionError(SessionError):
    code = ErrorCode.UNKNOWN_SESSION


class SessionExpiredError(SessionError):
    code = ErrorCode.SESSION_EXPIRED


class PlayerBlockedError(SessionError):
    code = ErrorCode.PLAYER_BLOCKED


class CurrencyMismatchError(WalletAPIError):
    code = ErrorCode.CURRENCY_MISMATCH


class InsufficientFundsError(WalletAPIError):
    """121. ``balance`` is the player's available balance when the platform sent it."""

    code = ErrorCode.INSUFFICIENT_FUNDS

    @property
    def balance(self) -> tuple[Decimal, str] | None:
        raw = self.extra.get("balance")
        if not isinstance(raw, dict):
            return None
        amount, currency_code = raw.get("amount"), raw.get("currencyCode")
        if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
            return None
        if not isinstance(currency_code, str):
            return None
        return Decimal(amount), currency_code


class LimitExceededError(WalletAPIError):
    code = ErrorCode.LIMIT_EXCEEDED


class TransactionError(WalletAPIError):
    """The transaction named by ``mmTransactionId`` is in a state that refuses the call."""


class TransactionNotFoundError(TransactionError):
    code = ErrorCode.TRANSACTION_NOT_FOUND


class TransactionDataMismatchError(TransactionError):
    code = ErrorCode.TRANSACTION_DATA_MISMATCH


class TransactionRolledBackError(TransactionError):
    code = ErrorCode.TRANSACTION_ROLLED_BACK


class TransactionConfirmedError(TransactionError):
    code = ErrorCode.TRANSACTION_CONFIRMED


class TransactionInProgressError(TransactionError):
    code = ErrorCode.TRANSACTION_IN_PROGRESS
    retryable = True


class UnexpectedResponseError(OutcomeUnknownError):
    """An answer outside the contract: a status such as 502/503/504, or a body we cannot read."""

    def __init__(self, message: str, *, http_status: int | None, request_id: str | None) -> None:
        self.http_status = http_status
        self.request_id = request_id
        super().__init__(message)


class TransportError(OutcomeUnknownError):
    """No answer: the request may have reached the platform, or not."""

    def __init__(self, message: str, *, request_id: str | None) -> None:
        self.request_id = request_id
        super().__init__(message)


class WalletTimeoutError(TransportError):
    pass


class WalletConnectionError(TransportError):
    pass


class FlowError(PartnerKitError):
    """A withdrawal or deposit flow was used in a way that could break the contract."""


_BY_CODE: dict[int, type[WalletAPIError]] = {
    cls.code: cls
    for cls in (
        OtherError,
        MalformedRequestError,
        InvalidAmountError,
        NotAllowedError,
        RateLimitedError,
        UnknownSessionError,
        SessionExpiredError,
        PlayerBlockedError,
        CurrencyMismatchError,
        InsufficientFundsError,
        LimitExceededError,
        TransactionNotFoundError,
        TransactionDataMismatchError,
        TransactionRolledBackError,
        TransactionConfirmedError,
        TransactionInProgressError,
    )
}


def error_for_code(
    code: int,
    description: str,
    *,
    http_status: int,
    extra: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> WalletAPIError:
    """Build the exception for ``code``; a code outside the table gives a plain WalletAPIError."""
    cls = _BY_CODE.get(code, WalletAPIError)
    return cls(description, code=code, http_status=http_status, extra=extra, request_id=request_id)
