"""Who is calling a partner-facing endpoint outside ``/wallet/*`` (the partner reports).

The same checks, in the same order, with the same shared state as the Wallet API
(``qwallet.api.wallet``): HTTP Basic through the one ``PartnerAuthenticator`` of the process
(its cache, single-flight verification and constant-time failures), the one
``FailedAuthLimiter`` (a guessing address spends one budget whichever endpoint it tries), the
trusted-proxy rule for the client address and the partner's allow-list. Order: failed-auth
budget (429, only for a header not verified before) → credentials (401) → client address (403)
→ the caller's own request limit (429).
"""

from __future__ import annotations

from qwallet.api.auth import (
    ClientAddressResolver,
    FailedAuthLimiter,
    PartnerAuthenticator,
    address_allowed,
)
from qwallet.api.ratelimit import TokenBuckets, retry_after_s
from qwallet.api.wallet import HttpError, rate_limited
from qwallet.domain.errors import ErrorCode
from qwallet.store.port import Partner


class PartnerAccess:
    def __init__(
        self,
        authenticator: PartnerAuthenticator,
        auth_failures: FailedAuthLimiter,
        addresses: ClientAddressResolver,
        requests_per_partner: TokenBuckets,
    ) -> None:
        self._auth = authenticator
        self._auth_failures = auth_failures
        self._addresses = addresses
        self._requests = requests_per_partner

    async def partner(
        self, authorization: bytes | None, peer: str | None, forwarded_for: bytes | None
    ) -> Partner:
        """The authenticated partner, or ``HttpError`` (401, 403 or 429) saying why not."""
        address = None
        partner = self._auth.cached(authorization)
        if partner is None and self._auth.verified_before(authorization):
            # A store re-check or a verification in flight: no scrypt of its own, no charge.
            partner = await self._auth.authenticate(authorization)
        elif partner is None:
            address = self._addresses.resolve(peer, forwarded_for)
            if wait := self._auth_failures.retry_after_s(self._auth_failures.acquire(address)):
                raise HttpError(
                    429,
                    ErrorCode.RATE_LIMITED,
                    f"Too many failed authentications from this address; retry after {wait} s.",
                    wait,
                )
            partner = await self._auth.authenticate(authorization)
            if partner is not None:
                self._auth_failures.refund(address)
        if partner is None:
            raise HttpError(401, ErrorCode.NOT_AUTHORIZED, "Missing or invalid credentials.")
        if partner.ip_allow:
            if address is None:
                address = self._addresses.resolve(peer, forwarded_for)
            if not address_allowed(address, partner.ip_allow):
                raise HttpError(
                    403,
                    ErrorCode.NOT_AUTHORIZED,
                    "Request refused: the client address is not on the partner's allow-list.",
                )
        if wait_s := retry_after_s(self._requests.take(partner.id)):
            raise rate_limited(wait_s, "partner reports")
        return partner


__all__ = ["PartnerAccess"]
