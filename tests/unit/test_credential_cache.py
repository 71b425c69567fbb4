"""The verified-credential cache: scrypt once, store lookups after that, revocation within the TTL.

A fake store stands in for the database (the live-server half of these rules is in
tests/integration/test_auth_and_input.py); the clock is a plain variable.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest

from qwallet.api import auth
from qwallet.api.auth import PartnerAuthenticator
from qwallet.service.credentials import hash_password
from qwallet.store.port import Partner, PartnerCredential

PARTNER = Partner(7, "studio", (), None)
TTL_S = 30.0


def header(username: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{username}:{password}".encode())


class FakeStore:
    def __init__(self) -> None:
        self.credentials: dict[str, list[PartnerCredential]] = {}
        self.lookups = 0
        self.down = False

    def add(self, username: str, password: str) -> PartnerCredential:
        credential = PartnerCredential(PARTNER, username, hash_password(password))
        self.credentials.setdefault(username, []).append(credential)
        return credential

    async def find_credential(self, username: str) -> list[PartnerCredential]:
        self.lookups += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return list(self.credentials.get(username, []))


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    calls: list[str] = []
    real = auth.verify_password

    def counting(password: bytes, password_hash: str) -> bool:
        calls.append(password_hash)
        return real(password, password_hash)

    monkeypatch.setattr(auth, "verify_password", counting)
    yield calls


def make() -> tuple[FakeStore, Clock, PartnerAuthenticator]:
    store, clock = FakeStore(), Clock()
    return store, clock, PartnerAuthenticator(store, TTL_S, clock=clock)  # type: ignore[arg-type]


async def settle() -> None:
    """Let a background re-check started by ``cached`` run to its end."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_scrypt_runs_once_then_store_lookups_only(scrypt_calls: list[str]) -> None:
    async def scenario() -> None:
        store, clock, authenticator = make()
        store.add("studio", "right")
        good = header("studio", "right")
        assert authenticator.cached(good) is None
        assert not authenticator.verified_before(good)
        assert await authenticator.authenticate(good) == PARTNER
        assert len(scrypt_calls) == 1 and store.lookups == 1
        # Fresh: answered from memory, no lookup.
        clock.now_s += TTL_S / 2 - 1
        assert authenticator.cached(good) == PARTNER
        await settle()
        assert store.lookups == 1
        # Past half the TTL: still answered at once, the re-check runs behind it.
        clock.now_s += 2
        assert authenticator.cached(good) == PARTNER
        await settle()
        assert store.lookups == 2 and len(scrypt_calls) == 1
        # The re-check renewed the entry: another full TTL from the re-check.
        clock.now_s += TTL_S - 1
        assert authenticator.cached(good) == PARTNER
        # Idle past the whole TTL: the caller waits for a lookup, still no scrypt.
        clock.now_s += 2 * TTL_S
        assert authenticator.cached(good) is None
        assert authenticator.verified_before(good)
        assert await authenticator.authenticate(good) == PARTNER
        assert len(scrypt_calls) == 1

    asyncio.run(scenario())


def test_revoked_credential_is_refused_within_the_ttl(scrypt_calls: list[str]) -> None:
    async def scenario() -> None:
        store, clock, authenticator = make()
        old = store.add("studio", "old")
        store.add("studio", "new")
        old_header, new_header = header("studio", "old"), header("studio", "new")
        assert await authenticator.authenticate(old_header) == PARTNER
        assert await authenticator.authenticate(new_header) == PARTNER
        store.credentials["studio"].remove(old)  # revoked
        clock.now_s += TTL_S / 2 + 1
        # The request that starts the re-check is still served; the re-check drops the entry.
        assert authenticator.cached(old_header) == PARTNER
        assert authenticator.cached(new_header) == PARTNER
        await settle()
        assert authenticator.cached(old_header) is None
        assert not authenticator.verified_before(old_header)
        assert authenticator.cached(new_header) == PARTNER
        scrypts = len(scrypt_calls)
        assert await authenticator.authenticate(old_header) is None
        assert len(scrypt_calls) > scrypts  # a full verification again, which fails

    asyncio.run(scenario())


def test_revocation_seen_by_a_waiting_caller_answers_without_scrypt(
    scrypt_calls: list[str],
) -> None:
    async def scenario() -> None:
        store, clock, authenticator = make()
        credential = store.add("studio", "right")
        good = header("studio", "right")
        assert await authenticator.authenticate(good) == PARTNER
        store.credentials["studio"].remove(credential)
        clock.now_s += TTL_S + 1
        assert authenticator.verified_before(good)
        assert await authenticator.authenticate(good) is None
        assert len(scrypt_calls) == 1

    asyncio.run(scenario())


def test_store_outage_keeps_the_entry_until_it_expires(scrypt_calls: list[str]) -> None:
    async def scenario() -> None:
        store, clock, authenticator = make()
        store.add("studio", "right")
        good = header("studio", "right")
        assert await authenticator.authenticate(good) == PARTNER
        store.down = True
        clock.now_s += TTL_S / 2 + 1
        assert authenticator.cached(good) == PARTNER
        await settle()
        assert authenticator.cached(good) == PARTNER  # the failed re-check is retried
        clock.now_s += TTL_S
        assert authenticator.cached(good) is None
        with pytest.raises(ConnectionError):
            await authenticator.authenticate(good)
        store.down = False
        assert await authenticator.authenticate(good) == PARTNER
        assert len(scrypt_calls) == 1

    asyncio.run(scenario())


def test_concurrent_callers_of_an_expired_header_share_one_lookup(
    scrypt_calls: list[str],
) -> None:
    async def scenario() -> None:
        store, clock, authenticator = make()
        store.add("studio", "right")
        good = header("studio", "right")
        assert await authenticator.authenticate(good) == PARTNER
        clock.now_s += TTL_S + 1
        lookups = store.lookups
        answers = await asyncio.gather(*(authenticator.authenticate(good) for _ in range(20)))
        assert answers == [PARTNER] * 20
        assert store.lookups == lookups + 1 and len(scrypt_calls) == 1

    asyncio.run(scenario())
