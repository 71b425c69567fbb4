"""Player payments (spec §2.2-2.3): orders, providers, the callback to the partner, the worker.

- ``create_order`` / ``get_order``: an order per partner and ``cpOrderId``, owned by a player.
- ``PaymentProvider``: ``WalletProvider`` (pay from balance, one database transaction) and
  ``SandboxCardProvider`` (approve / decline, confirmed asynchronously).
- ``PaymentWorker``: settles provider events and delivers paid orders to the partner with
  bounded retries; ``redeliver`` is the operator's second chance.

See ``docs/payments.md``.
"""

from qwallet.payments.callback import build_callback, is_acknowledged, md5_sign, signature_header
from qwallet.payments.delivery import DeliveryPolicy, redeliver
from qwallet.payments.errors import PaymentError
from qwallet.payments.messages import Purchase, PurchaseMessage, validate_purchase
from qwallet.payments.orders import Order, create_order, find_order, get_order
from qwallet.payments.providers import (
    PaymentProvider,
    ProviderEvent,
    SandboxCardProvider,
    WalletProvider,
    default_providers,
    settle,
)
from qwallet.payments.wallet import pay_with_wallet
from qwallet.payments.worker import PaymentWorker

__all__ = [
    "DeliveryPolicy",
    "Order",
    "PaymentError",
    "PaymentProvider",
    "PaymentWorker",
    "ProviderEvent",
    "Purchase",
    "PurchaseMessage",
    "SandboxCardProvider",
    "WalletProvider",
    "build_callback",
    "create_order",
    "default_providers",
    "find_order",
    "get_order",
    "is_acknowledged",
    "md5_sign",
    "pay_with_wallet",
    "redeliver",
    "settle",
    "signature_header",
    "validate_purchase",
]
