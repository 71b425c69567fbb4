"""Partner authentication (HTTP Basic), the client address, and the per-partner IP allow-list.

Basic credentials are checked with scrypt once; a verified ``Authorization`` header is then
remembered (keyed by its SHA-256, never by the password) for ``credential_cache_ttl_s`` and
re-checked before that runs out with a store lookup (no scrypt), so the hot path does no password
hashing and never waits for one at an expiry.

A header that fails runs exactly ``MAX_ACTIVE_CREDENTIALS`` scrypt checks whatever the username:
the partner's active credentials, padded with a dummy hash (an unknown user gets only dummies).
So timing reveals neither whether the username or the password was wrong, nor whether a partner
is in a rotation overlap (two active credentials); rotation refuses to create more than that
(``qwallet.service.partners.rotate_credentials``). Right credentials stop at the hash that
matched: their caller learns nothing from the time it took.

Failures are not cached, so every request with a wrong password costs one scrypt. To keep that
from becoming a CPU denial of service, :class:`FailedAuthLimiter` keeps a token bucket of failed
authentications per client address: a request whose header is not already verified takes a token
*before* scrypt runs and gives it back when the credentials turn out right; an address with an
empty bucket is answered 429 / 104 with ``Retry-After`` and no hashing at all. A header answered
from the cache never touches the bucket, so a partner with valid credentials keeps working even
while its address is being used for guessing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from qwallet.domain.token_buckets import TokenBuckets, retry_after_s
from qwallet.service.credentials import DUMMY_HASH, verify_password
from qwallet.service.partners import MAX_ACTIVE_CREDENTIALS
from qwallet.store.port import Partner, PartnerCredential, WalletStore

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_CACHED_CREDENTIALS = 10_000
MAX_AUTHORIZATION_BYTES = 1024
MAX_FAILURE_BUCKETS = 100_000

logger = logging.getLogger("qwallet.auth")


def parse_basic(header: bytes) -> tuple[str, bytes] | None:
    """``Basic base64(user:password)`` → (user, password bytes); None when malformed.

    The username must be printable ASCII (ours always are); the password is compared as raw
    bytes.
    """
    if len(header) > MAX_AUTHORIZATION_BYTES:
        return None
    scheme, _, encoded = header.strip().partition(b" ")
    if scheme.lower() != b"basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    username, colon, password = decoded.partition(b":")
    if not colon or not username:
        return None
    try:
        text = username.decode("ascii")
    except UnicodeDecodeError:
        return None
    # Control characters cannot be in a partner name, and PostgreSQL refuses U+0000 in a query
    # parameter outright (found by the long fuzzing run: a 500 instead of a 401).
    return (text, password) if text.isprintable() else None


def match_password(password: bytes, hashes: list[str]) -> int | None:
    """The index of the hash ``password`` matches, else None after exactly
    ``max(MAX_ACTIVE_CREDENTIALS, len(hashes))`` checks (the missing ones against a dummy hash),
    so that a failure costs the same whoever the partner is."""
    for index, stored in enumerate(hashes):
        if verify_password(password, stored):
            return index
    for _ in range(MAX_ACTIVE_CREDENTIALS - len(hashes)):
        verify_password(password, DUMMY_HASH)
    return None


@dataclass(slots=True)
class _Verified:
    """A header whose password matched ``password_hash``; trusted until ``expires_at``."""

    partner: Partner
    username: str
    password_hash: str
    refresh_at: float
    expires_at: float


class PartnerAuthenticator:
    """Verifies Basic headers once, then answers them from memory.

    A verified header is trusted for ``ttl_s``. Only revocation can make it wrong later (a
    credential's hash never changes: rotation adds a new credential), so re-checking it needs a
    store lookup, never scrypt. After half the TTL the first request starts that lookup in the
    background and is answered from memory, so steady traffic never waits at an expiry; a header
    idle for the whole TTL waits for the lookup (a fraction of a millisecond). A revoked
    credential is therefore refused at most ``ttl_s`` after its revocation.
    """

    def __init__(
        self, store: WalletStore, ttl_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[Partner | None]] = {}
        self._refreshing: dict[bytes, asyncio.Task[None]] = {}

    def cached(self, header: bytes | None) -> Partner | None:
        """The partner of an already verified, unexpired header; never hashes a password."""
        if not header:
            return None
        key = hashlib.sha256(header).digest()
        entry = self._cache.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.expires_at:
            return None
        if now >= entry.refresh_at and key not in self._refreshing:
            task = asyncio.ensure_future(self._refresh(key, entry))
            self._refreshing[key] = task
            task.add_done_callback(lambda _done: self._refreshing.pop(key, None))
        return entry.partner

    def verified_before(self, header: bytes | None) -> bool:
        """Whether this header is being verified right now or was verified before: either way
        :meth:`authenticate` runs no scrypt for it (it joins the verification in flight or
        re-checks the credential with a store lookup)."""
        if not header:
            return False
        key = hashlib.sha256(header).digest()
        return key in self._pending or key in self._cache

    async def authenticate(self, header: bytes | None) -> Partner | None:
        if not header:
            return None
        key = hashlib.sha256(header).digest()
        entry = self._cache.get(key)
        if entry is not None and self._clock() < entry.expires_at:
            return entry.partner
        # Single flight: when an entry expires under load, every request holding that header
        # would otherwise verify it on its own at once; they share one verification.
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._verify(header, key, entry))
            self._pending[key] = pending
            pending.add_done_callback(lambda _done: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _refresh(self, key: bytes, entry: _Verified) -> None:
        try:
            await self._recheck(key, entry)
        except Exception:  # the store is unreachable: keep the entry until it expires
            logger.warning("credential re-check for %s failed; retried later", entry.username)

    async def _recheck(self, key: bytes, entry: _Verified) -> Partner | None:
        """Re-read the credential ``entry`` was verified against; drop the entry if revoked."""
        for credential in await self._store.find_credential(entry.username):
            if hmac.compare_digest(credential.password_hash, entry.password_hash):
                self._remember(key, credential)
                return credential.partner
        self._cache.pop(key, None)
        return None

    async def _verify(self, header: bytes, key: bytes, known: _Verified | None) -> Partner | None:
        if known is not None:
            # This header matched ``known.password_hash`` before; if that credential is gone
            # (revoked), the header is refused: its random password matches no other credential.
            return await self._recheck(key, known)
        parsed = parse_basic(header)
        if parsed is None:
            return None
        username, password = parsed
        credentials = await self._store.find_credential(username)
        if len(credentials) > MAX_ACTIVE_CREDENTIALS:
            # Created before rotation was capped: every one is still checked (none may stop
            # working), but failures for this partner take longer than for the others.
            logger.warning(
                "partner %s has %d active credentials (at most %d): revoke the old ones",
                username,
                len(credentials),
                MAX_ACTIVE_CREDENTIALS,
            )
        # scrypt takes tens of milliseconds: keep it off the event loop (one thread hop).
        hashes = [credential.password_hash for credential in credentials]
        matched = await asyncio.to_thread(match_password, password, hashes)
        if matched is None:
            return None
        self._remember(key, credentials[matched])
        return credentials[matched].partner

    def _remember(self, key: bytes, credential: PartnerCredential) -> None:
        now = self._clock()
        self._cache[key] = _Verified(
            credential.partner,
            credential.username,
            credential.password_hash,
            refresh_at=now + self._ttl_s / 2,
            expires_at=now + self._ttl_s,
        )
        self._cache.move_to_end(key)
        if len(self._cache) > MAX_CACHED_CREDENTIALS:
            self._cache.popitem(last=False)


class FailedAuthLimiter(TokenBuckets):
    """Token buckets of failed authentications per client address (process memory, bounded).

    ``acquire`` takes a token before a verification that may run scrypt (0.0 when allowed, else
    the seconds until a token is back); ``refund`` gives it back when the credentials were right.
    Taking before hashing bounds the scrypt work of one address even when its requests arrive all
    at once. The least recently used buckets are dropped beyond ``max_buckets``.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_buckets: int = MAX_FAILURE_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rate_per_s, burst, max_buckets=max_buckets, clock=clock)

    def acquire(self, key: Hashable) -> float:
        return self.take(key)

    def retry_after_s(self, wait_s: float) -> int:
        return retry_after_s(wait_s)


@lru_cache(maxsize=1024)
def networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def address_allowed(address: IPAddress | None, cidrs: tuple[str, ...]) -> bool:
    if not cidrs:
        return True
    if address is None:
        return False
    return any(address in network for network in networks(cidrs))


class ClientAddressResolver:
    """The caller's address: the TCP peer, or ``X-Forwarded-For`` when the peer is a trusted proxy.

    With a chain of proxies the right-most address that is not itself a trusted proxy is the
    client: everything to its left was written by parties we do not trust.
    """

    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self._trusted = networks(trusted_proxies)

    def _is_trusted(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self._trusted)

    def resolve(self, peer: str | None, forwarded_for: bytes | None) -> IPAddress | None:
        address = parse_address(peer) if peer else None
        if not self._is_trusted(address) or not forwarded_for:
            return address
        hops = forwarded_for.decode("latin-1").split(",")
        for hop in reversed(hops):
            hop_address = parse_address(hop)
            if hop_address is None:
                return None
            if not self._is_trusted(hop_address):
                return hop_address
        return address


def forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """Every ``X-Forwarded-For`` line of raw ASGI headers as one list (RFC 9110 §5.3), the
    last line's addresses right-most; None without any."""
    lines = [value for name, value in headers if name == b"x-forwarded-for"]
    return b",".join(lines) if lines else None
