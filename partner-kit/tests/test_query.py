"""The Query Withdrawal endpoint, served by uvicorn on loopback, called with real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from kit_support import make_kit, serve
from qwallet_partner import (
    FakeClock,
    InMemoryWallet,
    Money,
    PartnerKit,
    QueryWithdrawalApp,
    SQLiteStore,
)

AUTH = ("platform", "p1atform-pass")


class Boom(Exception):
    pass


@pytest.fixture
def records(db_path: Path) -> dict[str, tuple[str, str]]:
    """One withdrawal in each state; name → (mmTransactionId, qwTransactionId)."""
    wallet = InMemoryWallet()
    token = wallet.add_player("100.00")
    wallet.fail_next("confirmWithdrawal", "timeout", times=5)
    found: dict[str, tuple[str, str]] = {}

    async def main() -> None:
        kit = make_kit(wallet, db_path, FakeClock())
        found.update(await one_of_each(kit, token))
        await kit.client.aclose()
        await kit.store.close()

    asyncio.run(main())
    return found


async def one_of_each(kit: PartnerKit, token: str) -> dict[str, tuple[str, str]]:
    """A confirmed, a rolled-back and an undecided withdrawal (the platform's confirm failing);
    kit state → (mmTransactionId, qwTransactionId)."""
    one = Money(Decimal("1.00"), "XAG")
    found: dict[str, tuple[str, str]] = {}
    async with kit.withdrawal(token, one) as w:
        pass
    assert not w.acknowledged  # decided, not yet delivered: still CONFIRMED
    found["confirmed"] = (w.mm_transaction_id, _qw(w.result))
    with pytest.raises(Boom):
        async with kit.withdrawal(token, one) as w:
            raise Boom
    found["rolled_back"] = (w.mm_transaction_id, _qw(w.result))
    pending = kit.withdrawal(token, one)
    await pending.__aenter__()  # follow-up still running
    found["pending"] = (pending.mm_transaction_id, _qw(pending.result))
    return found


def _qw(result: object) -> str:
    qw = getattr(result, "qw_transaction_id", None)
    assert isinstance(qw, str)
    return qw


@pytest.fixture
def url(db_path: Path, records: dict[str, tuple[str, str]]) -> Iterator[str]:
    store = SQLiteStore(db_path)
    with serve(QueryWithdrawalApp(store, [AUTH, ("old", "rotated-out-soon")])) as base:
        yield base + "/query"
    asyncio.run(store.close())


@pytest.mark.parametrize(
    ("name", "status"),
    [("confirmed", "CONFIRMED"), ("rolled_back", "ROLLED_BACK"), ("pending", "PENDING")],
)
def test_each_status(url: str, records: dict[str, tuple[str, str]], name: str, status: str) -> None:
    mm_id, qw_id = records[name]
    response = httpx.post(url, json={"mmTransactionId": mm_id, "qwTransactionId": qw_id}, auth=AUTH)
    assert response.status_code == 200
    assert response.json() == {"mmTransactionId": mm_id, "status": status}


def test_unknown_transaction_and_mismatched_qw_id(
    url: str, records: dict[str, tuple[str, str]]
) -> None:
    body = {"mmTransactionId": "never-seen", "qwTransactionId": "x"}
    assert httpx.post(url, json=body, auth=AUTH).json()["status"] == "UNKNOWN"
    mm_id, _ = records["confirmed"]
    body = {"mmTransactionId": mm_id, "qwTransactionId": "another-platform-transaction"}
    assert httpx.post(url, json=body, auth=AUTH).json()["status"] == "UNKNOWN"


def test_second_credential_pair_works(url: str, records: dict[str, tuple[str, str]]) -> None:
    mm_id, qw_id = records["confirmed"]
    response = httpx.post(
        url,
        json={"mmTransactionId": mm_id, "qwTransactionId": qw_id},
        auth=("old", "rotated-out-soon"),
    )
    assert response.json()["status"] == "CONFIRMED"


@pytest.mark.parametrize(
    "auth", [None, ("platform", "wrong"), ("someone", "p1atform-pass"), ("old", "p1atform-pass")]
)
def test_wrong_credentials(
    url: str, records: dict[str, tuple[str, str]], auth: tuple[str, str] | None
) -> None:
    mm_id, qw_id = records["confirmed"]
    response = httpx.post(url, json={"mmTransactionId": mm_id, "qwTransactionId": qw_id}, auth=auth)
    assert response.status_code == 401
    assert response.json()["errorCode"] == 103
    assert "mmTransactionId" not in response.text
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_garbled_authorization_header(url: str) -> None:
    for header in ("Basic !!!", "Bearer abc", "Basic", "Basic cGxhdGZvcm0="):
        response = httpx.post(url, content=b"{}", headers={"Authorization": header})
        assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "JSON"),
        (b"[1, 2]", "Invalid request"),
        (b'{"mmTransactionId": "a"}', "qwTransactionId"),
        (b'{"qwTransactionId": "a"}', "mmTransactionId"),
        (b'{"mmTransactionId": "a", "qwTransactionId": "b", "extra": 1}', "extra"),
        (b'{"mmTransactionId": 5, "qwTransactionId": "b"}', "mmTransactionId"),
        (b'{"mmTransactionId": "", "qwTransactionId": "b"}', "mmTransactionId"),
        (b'{"mmTransactionId": "' + b"a" * 65 + b'", "qwTransactionId": "b"}', "mmTransactionId"),
    ],
)
def test_bad_input_is_400(url: str, body: bytes, needle: str) -> None:
    response = httpx.post(
        url, content=body, auth=AUTH, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errorCode"] == 101
    assert needle in response.json()["errorDescription"]


def test_method_and_size_limits(url: str) -> None:
    assert httpx.get(url, auth=AUTH).status_code == 405
    response = httpx.post(url, content=b"{" + b" " * 10_000 + b"}", auth=AUTH)
    assert response.status_code == 413


def test_queries_change_nothing(
    url: str, db_path: Path, records: dict[str, tuple[str, str]]
) -> None:
    for mm_id, qw_id in records.values():
        httpx.post(url, json={"mmTransactionId": mm_id, "qwTransactionId": qw_id}, auth=AUTH)
        httpx.post(url, content=b"garbage", auth=AUTH)

    async def check() -> None:
        store = SQLiteStore(db_path)
        record = await store.get_transaction("withdrawal", records["pending"][0])
        assert record is not None and record.state == "pending"
        entry = await store.get_entry("withdrawal", records["confirmed"][0])
        assert entry is not None and entry.state == "due"
        await store.close()

    asyncio.run(check())


def test_abandoned_withdrawal_answers_rolled_back_after_recovery(
    url: str, db_path: Path, records: dict[str, tuple[str, str]]
) -> None:
    mm_id, qw_id = records["pending"]
    clock = FakeClock()
    clock.advance(3600)

    async def recover() -> None:
        wallet = InMemoryWallet()
        kit = make_kit(wallet, db_path, clock)
        assert await kit.outbox.recover() == 1
        await kit.aclose()

    asyncio.run(recover())
    response = httpx.post(url, json={"mmTransactionId": mm_id, "qwTransactionId": qw_id}, auth=AUTH)
    assert response.json()["status"] == "ROLLED_BACK"


def test_expired_entries_answer_their_decision(db_path: Path) -> None:
    """A confirm and a rollback that the platform never acknowledged in 48 hours: their outbox
    entries expire, and the Query endpoint answers the decision (spec §3 asks for the final state;
    ``PENDING`` would make the platform's resolver ask again for ever and keep the player's funds
    held). A withdrawal with no decision yet is the only one that answers ``PENDING``."""
    clock = FakeClock()
    wallet = InMemoryWallet(clock=clock.now)
    token = wallet.add_player("100.00")
    wallet.fail_next("confirmWithdrawal", "timeout", times=10_000)
    wallet.fail_next("rollbackWithdrawal", "timeout", times=10_000)
    asked: dict[str, tuple[str, str]] = {}

    async def expire_both() -> None:
        kit = make_kit(wallet, db_path, clock)
        made = await one_of_each(kit, token)
        asked["CONFIRMED"], asked["ROLLED_BACK"] = made["confirmed"], made["rolled_back"]
        asked["PENDING"] = made["pending"]
        while (due := await kit.store.next_due_at()) is not None:
            clock.set(max(due, clock.now()))
            await kit.outbox.run_due()
        for status in ("CONFIRMED", "ROLLED_BACK"):
            entry = await kit.store.get_entry("withdrawal", asked[status][0])
            assert entry is not None and entry.state == "expired", entry
        await kit.client.aclose()
        await kit.store.close()

    asyncio.run(expire_both())
    store = SQLiteStore(db_path)
    with serve(QueryWithdrawalApp(store, [AUTH])) as base:
        for status, (mm_id, qw_id) in asked.items():
            response = httpx.post(
                base + "/query",
                json={"mmTransactionId": mm_id, "qwTransactionId": qw_id},
                auth=AUTH,
            )
            assert response.status_code == 200
            assert response.json() == {"mmTransactionId": mm_id, "status": status}
    asyncio.run(store.close())
