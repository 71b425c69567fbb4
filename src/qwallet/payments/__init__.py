"""Player payments (spec §2.2-2.3): orders, providers, the callback to the partner, the worker.

- ``create_order`` / ``get_order``: an order per partner and ``cpOrderId``, owned by a player.
- ``PaymentProvider``: ``WalletProvider`` (pay from balance, one database transaction) and
  ``SandboxCardProvider`` (approve / decline, confirmed asynchronously; sandbox partners only).
  Which providers an order may use is the partner's configuration
  (``qwallet.domain.payment_methods``), checked inside each payment's transaction
  (``qwallet.payments.authorize``).
- ``PaymentWorker``: settles provider events and delivers paid orders to the partner with
  bounded retries; ``qwallet.service.orders_admin.redeliver`` is the operator's second chance.

See ``docs/payments.md``.
"""

from qwallet.domain.payment_methods import (
    KNOWN_METHODS,
    SANDBOX_METHODS,
    MethodsError,
    PartnerMethods,
    check_methods,
    split_methods,
)
from qwallet.payments.callback import build_callback, is_acknowledged, md5_sign, signature_header
from qwallet.payments.delivery import DeliveryPolicy
from qwallet.payments.errors import PaymentError
from qwallet.payments.messages import Purchase, PurchaseMessage, validate_purchase
from qwallet.payments.orders import Order, create_order, find_order, get_order
from qwallet.payments.providers import (
    PaymentProvider,
    ProviderEvent,
    SandboxCardProvider,
    WalletProvider,
    offered,
    provider_registry,
    settle,
)
from qwallet.payments.wallet import pay_with_wallet
from qwallet.payments.worker import PaymentWorker

__all__ = [
    "KNOWN_METHODS",
    "SANDBOX_METHODS",
    "DeliveryPolicy",
    "MethodsError",
    "Order",
    "PartnerMethods",
    "PaymentError",
    "PaymentProvider",
    "PaymentWorker",
    "ProviderEvent",
    "Purchase",
    "PurchaseMessage",
    "SandboxCardProvider",
    "WalletProvider",
    "build_callback",
    "check_methods",
    "create_order",
    "find_order",
    "get_order",
    "is_acknowledged",
    "md5_sign",
    "offered",
    "pay_with_wallet",
    "provider_registry",
    "settle",
    "signature_header",
    "split_methods",
    "validate_purchase",
]
