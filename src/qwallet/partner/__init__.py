"""The partner kit: what a game studio runs on its side of the Quantum Web integration.

- ``WalletClient``: typed async client for the platform's Wallet API.
- ``PartnerKit``: withdrawal and deposit flows that cannot break the two-phase rules, backed by
  a durable ``Outbox`` in a ``KitStore`` (``SQLiteStore`` by default, or ``PostgresStore``).
- ``QueryWithdrawalApp``: the ASGI endpoint the platform asks for a withdrawal's final state.
- ``PaymentCallbackApp``: the ASGI receiver of the platform's payment callbacks; it delivers
  only orders the studio's ``issued_order`` lookup knows (``IssuedOrder``).
- ``InMemoryWallet``: the platform emulated in memory, for the studio's own tests.

The kit imports nothing from the rest of ``qwallet``, so a studio can vendor this package alone.
See ``docs/partner-kit.md``.
"""

from qwallet.partner._callback import (
    DeliveryHook,
    IssuedOrderLookup,
    PaymentCallbackApp,
    payment_sign,
    signature_header,
)
from qwallet.partner._client import WalletClient
from qwallet.partner._clock import Clock, FakeClock, SystemClock
from qwallet.partner._exceptions import (
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
from qwallet.partner._flows import Deposit, PartnerKit, Withdrawal
from qwallet.partner._memory import Call, InMemoryWallet, WalletTransaction
from qwallet.partner._models import Money, Session, TransactionResult
from qwallet.partner._outbox import Outbox, RetrySchedule
from qwallet.partner._postgres import PostgresStore
from qwallet.partner._query import QueryWithdrawalApp, WithdrawalStatus
from qwallet.partner._sqlite import SQLiteStore
from qwallet.partner._store import (
    Attempt,
    IssuedOrder,
    KitStore,
    OutboxEntry,
    PaymentOrder,
    TransactionRecord,
)
from qwallet.partner._throttle import FailureBudget

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
    "payment_sign",
    "signature_header",
]
