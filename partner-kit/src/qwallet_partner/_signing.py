"""The two signatures of a payment callback (spec §2.3), with no dependency beyond the stdlib.

- ``sign`` (documented): uppercase hex MD5 of cpOrderId + serverId + uid + productPrice +
  productId + ts + secret, concatenated with no separators, as UTF-8.
- ``X-QW-Signature`` (our extension): ``t=<unix time in ms>,v1=<hex HMAC-SHA256>``, keyed with
  the shared secret (UTF-8), over ``"<t>."`` followed by the exact raw request body.

Kept apart from the callback receiver so that a studio can compute or check both without the
Starlette extra. ``docs/partner-kit/signing-vectors.csv`` is generated from these functions
(``partner-kit/scripts/write_signing_vectors.py``) and checked against them by a test.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "hmac_hex", "payment_sign", "signature_header"]

SIGNATURE_HEADER = "X-QW-Signature"


def payment_sign(
    cp_order_id: str,
    server_id: str,
    uid: str,
    product_price: str,
    product_id: str,
    ts: str,
    secret: str,
) -> str:
    """The documented ``sign``: uppercase hex MD5 of the values concatenated, then the secret.

    MD5 is what the contract prescribes; it is an integrity check here, not a password hash.
    """
    text = cp_order_id + server_id + uid + product_price + product_id + ts + secret
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest().upper()


def signature_header(body: bytes, secret: str, t_ms: int) -> str:
    """The ``X-QW-Signature`` value for ``body`` sent at ``t_ms`` (see the module docstring)."""
    return f"t={t_ms},v1={hmac_hex(secret, t_ms, body)}"


def hmac_hex(secret: str, t_ms: int, body: bytes) -> str:
    """The ``v1`` item: lowercase hex HMAC-SHA256 of ``"<t_ms>." + body`` keyed with ``secret``."""
    return hmac.new(secret.encode(), f"{t_ms}.".encode() + body, hashlib.sha256).hexdigest()
