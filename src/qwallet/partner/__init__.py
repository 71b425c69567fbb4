"""``qwallet.partner``: the partner kit under the platform's name (a re-export, nothing more).

The kit is its own distribution, ``qwallet-partner``, whose package is ``qwallet_partner``
(source in ``partner-kit/`` of this repository; the platform's wheel carries the same package).
This module keeps ``from qwallet.partner import ...`` working for the platform's own code and
for studios that wrote their integration against the platform's package: every public name is
the very object of ``qwallet_partner`` (same classes, so ``except`` and ``isinstance`` agree),
and the kit's private modules are aliased too (``qwallet.partner._http`` is
``qwallet_partner._http``). A studio that installs the kit alone imports ``qwallet_partner``.
See ``docs/partner-kit.md``.
"""

import importlib
import sys

from qwallet_partner import (
    Attempt as Attempt,
)
from qwallet_partner import (
    Call as Call,
)
from qwallet_partner import (
    Clock as Clock,
)
from qwallet_partner import (
    CurrencyMismatchError as CurrencyMismatchError,
)
from qwallet_partner import (
    DeliveryHook as DeliveryHook,
)
from qwallet_partner import (
    Deposit as Deposit,
)
from qwallet_partner import (
    ErrorCode as ErrorCode,
)
from qwallet_partner import (
    FailureBudget as FailureBudget,
)
from qwallet_partner import (
    FakeClock as FakeClock,
)
from qwallet_partner import (
    FlowError as FlowError,
)
from qwallet_partner import (
    InMemoryWallet as InMemoryWallet,
)
from qwallet_partner import (
    InsufficientFundsError as InsufficientFundsError,
)
from qwallet_partner import (
    InvalidAmountError as InvalidAmountError,
)
from qwallet_partner import (
    IssuedOrder as IssuedOrder,
)
from qwallet_partner import (
    IssuedOrderLookup as IssuedOrderLookup,
)
from qwallet_partner import (
    KitStore as KitStore,
)
from qwallet_partner import (
    LimitExceededError as LimitExceededError,
)
from qwallet_partner import (
    MalformedRequestError as MalformedRequestError,
)
from qwallet_partner import (
    Money as Money,
)
from qwallet_partner import (
    NotAllowedError as NotAllowedError,
)
from qwallet_partner import (
    OtherError as OtherError,
)
from qwallet_partner import (
    Outbox as Outbox,
)
from qwallet_partner import (
    OutboxEntry as OutboxEntry,
)
from qwallet_partner import (
    OutcomeUnknownError as OutcomeUnknownError,
)
from qwallet_partner import (
    PartnerKit as PartnerKit,
)
from qwallet_partner import (
    PartnerKitError as PartnerKitError,
)
from qwallet_partner import (
    PaymentCallbackApp as PaymentCallbackApp,
)
from qwallet_partner import (
    PaymentOrder as PaymentOrder,
)
from qwallet_partner import (
    PlayerBlockedError as PlayerBlockedError,
)
from qwallet_partner import (
    PostgresStore as PostgresStore,
)
from qwallet_partner import (
    QueryWithdrawalApp as QueryWithdrawalApp,
)
from qwallet_partner import (
    RateLimitedError as RateLimitedError,
)
from qwallet_partner import (
    RetrySchedule as RetrySchedule,
)
from qwallet_partner import (
    Session as Session,
)
from qwallet_partner import (
    SessionError as SessionError,
)
from qwallet_partner import (
    SessionExpiredError as SessionExpiredError,
)
from qwallet_partner import (
    SQLiteStore as SQLiteStore,
)
from qwallet_partner import (
    SystemClock as SystemClock,
)
from qwallet_partner import (
    TransactionConfirmedError as TransactionConfirmedError,
)
from qwallet_partner import (
    TransactionDataMismatchError as TransactionDataMismatchError,
)
from qwallet_partner import (
    TransactionError as TransactionError,
)
from qwallet_partner import (
    TransactionInProgressError as TransactionInProgressError,
)
from qwallet_partner import (
    TransactionNotFoundError as TransactionNotFoundError,
)
from qwallet_partner import (
    TransactionRecord as TransactionRecord,
)
from qwallet_partner import (
    TransactionResult as TransactionResult,
)
from qwallet_partner import (
    TransactionRolledBackError as TransactionRolledBackError,
)
from qwallet_partner import (
    TransportError as TransportError,
)
from qwallet_partner import (
    UnexpectedResponseError as UnexpectedResponseError,
)
from qwallet_partner import (
    UnknownSessionError as UnknownSessionError,
)
from qwallet_partner import (
    WalletAPIError as WalletAPIError,
)
from qwallet_partner import (
    WalletClient as WalletClient,
)
from qwallet_partner import (
    WalletConnectionError as WalletConnectionError,
)
from qwallet_partner import (
    WalletTimeoutError as WalletTimeoutError,
)
from qwallet_partner import (
    WalletTransaction as WalletTransaction,
)
from qwallet_partner import (
    Withdrawal as Withdrawal,
)
from qwallet_partner import (
    WithdrawalStatus as WithdrawalStatus,
)
from qwallet_partner import (
    payment_sign as payment_sign,
)
from qwallet_partner import (
    signature_header as signature_header,
)

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

# The platform always has Starlette, so the aliases load every module of the kit up front.
_MODULES = (
    "_callback",
    "_client",
    "_clock",
    "_exceptions",
    "_flows",
    "_http",
    "_memory",
    "_models",
    "_outbox",
    "_postgres",
    "_query",
    "_signing",
    "_sqlite",
    "_store",
    "_throttle",
    "_version",
)
for _module in _MODULES:
    # In sys.modules for ``import qwallet.partner._x``, as an attribute for ``qwallet.partner._x``.
    sys.modules[f"{__name__}.{_module}"] = globals()[_module] = importlib.import_module(
        f"qwallet_partner.{_module}"
    )
