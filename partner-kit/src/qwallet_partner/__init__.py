"""The partner kit: what a game studio runs on its side of the Quantum Web integration.

- ``WalletClient``: typed async client for the platform's Wallet API.
- ``PartnerKit``: withdrawal and deposit flows that cannot break the two-phase rules, backed by
  a durable ``Outbox`` in a ``KitStore`` (``SQLiteStore`` by default, or ``PostgresStore``).
- ``QueryWithdrawalApp``: the ASGI endpoint the platform asks for a withdrawal's final state.
- ``PaymentCallbackApp``: the ASGI receiver of the platform's payment callbacks; it delivers
  only orders the studio's ``issued_order`` lookup knows (``IssuedOrder``).
- ``payment_sign`` / ``signature_header``: the callback's two signatures.
- ``InMemoryWallet``: the platform emulated in memory, for the studio's own tests.

Distributed alone as ``qwallet-partner`` (``partner-kit/`` in the platform's repository); it
imports nothing from the platform. Its runtime dependencies are ``httpx`` and ``msgspec``; the
two ASGI endpoints need Starlette (extra ``server``) and ``PostgresStore`` needs asyncpg (extra
``postgres``). Both are imported only when first used, so the rest of the kit works without
them. Inside the platform the same package is also importable as ``qwallet.partner``.
See ``docs/partner-kit.md``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from qwallet_partner._client import WalletClient
from qwallet_partner._clock import Clock, FakeClock, SystemClock
from qwallet_partner._exceptions import (
    CurrencyMismatchError,
    ErrorCode,
    FlowError,
    InsufficientFundsError,
    InvalidAmountError,
    LimitExceededError,
    MalformedRequestError,
    NotAllowedError,
    OtherError,
    OutcomeUnknownError,
    PartnerKitError,
    PlayerBlockedError,
    RateLimitedError,
    SessionError,
    SessionExpiredError,
    TransactionConfirmedError,
    TransactionDataMismatchError,
    TransactionError,
    TransactionInProgressError,
    TransactionNotFoundError,
    TransactionRolledBackError,
    TransportError,
    UnexpectedResponseError,
    UnknownSessionError,
    WalletAPIError,
    WalletConnectionError,
    WalletTimeoutError,
)
from qwallet_partner._flows import Deposit, PartnerKit, Withdrawal
from qwallet_partner._memory import Call, InMemoryWallet, WalletTransaction
from qwallet_partner._models import Money, Session, TransactionResult
from qwallet_partner._outbox import Outbox, RetrySchedule
from qwallet_partner._postgres import PostgresStore
from qwallet_partner._signing import payment_sign, signature_header
from qwallet_partner._sqlite import SQLiteStore
from qwallet_partner._store import (
    Attempt,
    DeliveryHook,
    IssuedOrder,
    IssuedOrderLookup,
    KitStore,
    OutboxEntry,
    PaymentOrder,
    TransactionRecord,
    WithdrawalStatus,
)
from qwallet_partner._throttle import FailureBudget
from qwallet_partner._version import __version__

if TYPE_CHECKING:
    from qwallet_partner._callback import PaymentCallbackApp
    from qwallet_partner._query import QueryWithdrawalApp

__all__ = [
    "Attempt",
    "Call",
    "Clock",
    "CurrencyMismatchError",
    "DeliveryHook",
    "Deposit",
    "ErrorCode",
    "FailureBudget",
    "FakeClock",
    "FlowError",
    "InMemoryWallet",
    "InsufficientFundsError",
    "InvalidAmountError",
    "IssuedOrder",
    "IssuedOrderLookup",
    "KitStore",
    "LimitExceededError",
    "MalformedRequestError",
    "Money",
    "NotAllowedError",
    "OtherError",
    "Outbox",
    "OutboxEntry",
    "OutcomeUnknownError",
    "PartnerKit",
    "PartnerKitError",
    "PaymentCallbackApp",
    "PaymentOrder",
    "PlayerBlockedError",
    "PostgresStore",
    "QueryWithdrawalApp",
    "RateLimitedError",
    "RetrySchedule",
    "SQLiteStore",
    "Session",
    "SessionError",
    "SessionExpiredError",
    "SystemClock",
    "TransactionConfirmedError",
    "TransactionDataMismatchError",
    "TransactionError",
    "TransactionInProgressError",
    "TransactionNotFoundError",
    "TransactionRecord",
    "TransactionResult",
    "TransactionRolledBackError",
    "TransportError",
    "UnexpectedResponseError",
    "UnknownSessionError",
    "WalletAPIError",
    "WalletClient",
    "WalletConnectionError",
    "WalletTimeoutError",
    "WalletTransaction",
    "Withdrawal",
    "WithdrawalStatus",
    "__version__",
    "payment_sign",
    "signature_header",
]

# The two ASGI endpoints are the only part of the kit that needs Starlette (the ``server``
# extra): they are imported on first use, so a studio that only calls the Wallet API installs
# httpx and msgspec alone.
_LAZY = {
    "PaymentCallbackApp": "qwallet_partner._callback",
    "QueryWithdrawalApp": "qwallet_partner._query",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "starlette":
            raise
        raise ModuleNotFoundError(
            f"{name} needs Starlette: pip install 'qwallet-partner[server]'", name=exc.name
        ) from exc
    value = getattr(module, name)
    globals()[name] = value
    return value
