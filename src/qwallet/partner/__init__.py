"""The partner kit: what a game studio runs on its side of the Quantum Web integration.

- ``WalletClient``: typed async client for the platform's Wallet API.
- ``InMemoryWallet``: the platform emulated in memory, for the studio's own tests.

The kit imports nothing from the rest of ``qwallet``, so a studio can vendor this package alone.
See ``docs/partner-kit.md``.
"""

from qwallet.partner._client import WalletClient
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
from qwallet.partner._memory import Call, InMemoryWallet, WalletTransaction
from qwallet.partner._models import Money, Session, TransactionResult

__all__ = [
    "Call",
    "CurrencyMismatchError",
    "ErrorCode",
    "FlowError",
    "InMemoryWallet",
    "InsufficientFundsError",
    "InvalidAmountError",
    "LimitExceededError",
    "MalformedRequestError",
    "Money",
    "NotAllowedError",
    "OtherError",
    "OutcomeUnknownError",
    "PartnerKitError",
    "PlayerBlockedError",
    "Session",
    "SessionError",
    "SessionExpiredError",
    "TransactionConfirmedError",
    "TransactionDataMismatchError",
    "TransactionError",
    "TransactionInProgressError",
    "TransactionNotFoundError",
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
]
