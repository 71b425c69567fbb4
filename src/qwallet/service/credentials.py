"""Secrets: partner passwords (scrypt), operator API keys (SHA-256), random generation.

Partner passwords are hashed with scrypt, which is deliberately slow; the HTTP layer caches a
verified credential so that the hot path pays for hashing once per credential, not per request.
Operator API keys are 256-bit random values, so a fast SHA-256 is enough to store them safely.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def new_password() -> str:
    return secrets.token_urlsafe(24)


def new_api_key() -> str:
    return "qwk_" + secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt_b64}${digest_b64}"


def verify_password(password: bytes, stored: str) -> bool:
    """Constant-time check of ``password`` against a ``hash_password`` result."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(digest_b64)
    actual = hashlib.scrypt(
        password,
        salt=base64.b64decode(salt_b64),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(expected),
    )
    return hmac.compare_digest(actual, expected)


# Verified against when the username is unknown, so that an unknown user costs the same time
# as a wrong password and timing does not reveal which part was wrong.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
