"""The ``KitStore`` contract, run on every adapter: ``SQLiteStore`` and ``PostgresStore``.

The PostgreSQL half uses the server at ``QWALLET_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), creates its own database for the module and
drops it afterwards; it is skipped, with the reason, only when no server answers.

Besides each method's rules, the flows, the outbox, the Query endpoint and the callback receiver
run end to end on each store, so an adapter cannot pass the unit checks and still break the kit.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from urllib.parse import urlencode

import httpx
import pytest

from kit_support import StoreFactory
from qwallet_partner import (
    FakeClock,
    FlowError,
    InMemoryWallet,
    IssuedOrder,
    KitStore,
    Money,
    PartnerKit,
    PaymentCallbackApp,
    PaymentOrder,
    QueryWithdrawalApp,
    WalletClient,
    payment_sign,
    signature_header,
)

XAG = "XAG"
T0 = 1_700_000_000.0


async def _started(store: KitStore, mm_id: str, amount: str = "230.00") -> None:
    await store.start_transaction("withdrawal", mm_id, "tok", Decimal(amount), XAG, "Sword", T0)


# -- transactions ------------------------------------------------------------------------------


def test_transaction_lifecycle(new_store: StoreFactory) -> None:
    async def main() -> None:
        store = new_store()
        await _started(store, "w-1")
        with pytest.raises(FlowError):
            await _started(store, "w-1")
        # The same id as a deposit is another transaction.
        await store.start_transaction("deposit", "w-1", "tok", Decimal("1.5"), XAG, None, T0)
        record = await store.get_transaction("withdrawal", "w-1")
        assert record is not None
        assert (record.state, record.qw_transaction_id, record.description) == (
            "started",
            None,
            "Sword",
        )
        assert str(record.amount) == "230.00"  # exact, scale kept
        await store.mark_pending("withdrawal", "w-1", "qw-1", T0 + 1)
        record = await store.get_transaction("withdrawal", "w-1")
        assert record is not None
        assert (record.state, record.qw_transaction_id, record.updated_at) == (
            "pending",
            "qw-1",
            T0 + 1,
        )
        assert await store.get_transaction("withdrawal", "nope") is None
        deposit = await store.get_transaction("deposit", "w-1")
        assert deposit is not None and str(deposit.amount) == "1.5"
        await store.close()

    asyncio.run(main())


def test_decision_is_final_and_creates_one_entry(new_store: StoreFactory) -> None:
    async def main() -> None:
        store = new_store()
        await _started(store, "w-1")
        entry = await store.decide("withdrawal", "w-1", "confirm", None, T0 + 2)
        assert (entry.operation, entry.state, entry.attempts) == ("confirm", "due", 0)
        assert entry.next_attempt_at == T0 + 2 and entry.first_attempt_at is None
        assert (entry.token, str(entry.amount), entry.currency_code) == ("tok", "230.00", XAG)
        again = await store.decide("withdrawal", "w-1", "confirm", None, T0 + 3)
        assert again == entry
        with pytest.raises(FlowError):
            await store.decide("withdrawal", "w-1", "rollback", "late", T0 + 4)
        with pytest.raises(FlowError):
            await store.decide("withdrawal", "missing", "rollback", None, T0)
        record = await store.get_transaction("withdrawal", "w-1")
        assert record is not None and record.state == "confirmed"
        assert await store.get_entry("withdrawal", "w-1") == entry
        assert await store.get_entry("deposit", "w-1") is None
        await store.close()

    asyncio.run(main())


def test_decision_due_no_sooner_than_asked(new_store: StoreFactory) -> None:
    """``not_before`` (a Retry-After) makes the entry due later; never earlier than ``now``."""

    async def main() -> None:
        store = new_store()
        await _started(store, "w-late")
        await _started(store, "w-past")
        late = await store.decide("withdrawal", "w-late", "rollback", "429", T0, T0 + 30)
        assert late.next_attempt_at == T0 + 30
        past = await store.decide("withdrawal", "w-past", "rollback", "429", T0, T0 - 30)
        assert past.next_attempt_at == T0
        claimed = await store.claim_due(T0 + 29, 60, 10)
        assert [entry.mm_transaction_id for entry in claimed] == ["w-past"]
        claimed = await store.claim_due(T0 + 30, 60, 10)
        assert [entry.mm_transaction_id for entry in claimed] == ["w-late"]
        await store.close()

    asyncio.run(main())


def test_undecided_before(new_store: StoreFactory) -> None:
    async def main() -> None:
        store = new_store()
        await _started(store, "old")
        await store.start_transaction("deposit", "new", "tok", Decimal("1"), XAG, None, T0 + 100)
        await _started(store, "done")
        await store.decide("withdrawal", "done", "rollback", "x", T0 + 1)
        found = await store.undecided_before(T0 + 50)
        assert [(r.kind, r.mm_transaction_id) for r in found] == [("withdrawal", "old")]
        assert len(await store.undecided_before(T0 + 200)) == 2
        await store.close()

    asyncio.run(main())


# -- the outbox --------------------------------------------------------------------------------


def test_claims_lease_and_attempt_log(new_store: StoreFactory) -> None:
    async def main() -> None:
        store = new_store()
        for name in ("a", "b", "c"):
            await _started(store, name)
            await store.decide("withdrawal", name, "confirm", None, T0)
        assert await store.next_due_at() == T0
        claimed = await store.claim_due(T0 + 1, 60.0, 2)
        assert [e.mm_transaction_id for e in claimed] == ["a", "b"]
        assert all(e.attempts == 1 and e.first_attempt_at == T0 + 1 for e in claimed)
        assert all(e.next_attempt_at == T0 + 61 for e in claimed)
        # Leased entries are not handed out again; the third one is.
        rest = await store.claim_due(T0 + 2, 60.0, 10)
        assert [e.mm_transaction_id for e in rest] == ["c"]
        assert await store.claim_due(T0 + 3, 60.0, 10) == []
        assert await store.claim_entry(claimed[0].id, T0 + 3, 60.0) is None
        # Record outcomes.
        a, b = claimed
        await store.finish_attempt(a.id, T0 + 1.5, "ok", "delivered", None)
        await store.finish_attempt(b.id, T0 + 1.5, "WalletTimeoutError: x", "due", T0 + 6)
        await store.finish_attempt(rest[0].id, T0 + 2.5, "131", "failed", None)
        assert await store.next_due_at() == T0 + 6
        b_again = await store.claim_entry(b.id, T0 + 6, 60.0)
        assert b_again is not None and b_again.attempts == 2 and b_again.first_attempt_at == T0 + 1
        await store.finish_attempt(b.id, T0 + 6.2, "ok", "delivered", None)
        assert await store.next_due_at() is None
        delivered = await store.get_entry("withdrawal", "a")
        assert delivered is not None
        assert (delivered.state, delivered.last_error, delivered.finished_at) == (
            "delivered",
            None,
            T0 + 1.5,
        )
        failed = await store.get_entry("withdrawal", "c")
        assert failed is not None and (failed.state, failed.last_error) == ("failed", "131")
        log = await store.attempts(b.id)
        assert [(x.at, x.outcome) for x in log] == [
            (T0 + 1.5, "WalletTimeoutError: x"),
            (T0 + 6.2, "ok"),
        ]
        await store.close()

    asyncio.run(main())


def test_concurrent_workers_never_share_an_entry(new_store: StoreFactory) -> None:
    """Four 'processes' claim at once: every entry goes to exactly one of them."""

    async def main() -> None:
        setup = new_store()
        for index in range(40):
            await _started(setup, f"w-{index}")
            await setup.decide("withdrawal", f"w-{index}", "confirm", None, T0)
        await setup.close()
        workers = [new_store() for _ in range(4)]

        async def claim_all(store: KitStore) -> list[str]:
            got: list[str] = []
            while batch := await store.claim_due(T0 + 1, 300.0, 3):
                got += [e.mm_transaction_id for e in batch]
                await asyncio.sleep(0)
            return got

        results = await asyncio.gather(*(claim_all(store) for store in workers))
        every = [mm_id for got in results for mm_id in got]
        assert sorted(every) == sorted(f"w-{index}" for index in range(40))
        for store in workers:
            await store.close()

    asyncio.run(main())


# -- payments ----------------------------------------------------------------------------------


def _order(cp_order_id: str = "o-1", price: str = "4.99") -> PaymentOrder:
    return PaymentOrder(cp_order_id, "player-1", "1", "gems.100", price, "{}", 1)


def test_payment_claims(new_store: StoreFactory) -> None:
    async def main() -> None:
        store = new_store()
        order = _order()
        assert await store.claim_payment(order, T0, 60.0) == "claimed"
        assert await store.claim_payment(order, T0 + 1, 60.0) == "busy"
        assert await store.claim_payment(_order(price="0.01"), T0 + 1, 60.0) == "conflict"
        # The claimant died: after the lease another takes over.
        assert await store.claim_payment(order, T0 + 61, 60.0) == "claimed"
        assert not await store.is_delivered("o-1")
        await store.complete_payment("o-1", T0 + 62)
        assert await store.is_delivered("o-1")
        assert await store.claim_payment(order, T0 + 63, 60.0) == "delivered"
        await store.release_payment("o-1")  # a delivered order is never forgotten
        assert await store.is_delivered("o-1")
        # A failed delivery is released: the platform's retry claims it again.
        assert await store.claim_payment(_order("o-2"), T0, 60.0) == "claimed"
        await store.release_payment("o-2")
        assert await store.claim_payment(_order("o-2"), T0 + 1, 60.0) == "claimed"
        await store.close()

    asyncio.run(main())


def test_concurrent_payment_claims_deliver_once(new_store: StoreFactory) -> None:
    async def main() -> None:
        stores = [new_store() for _ in range(4)]
        results = await asyncio.gather(
            *(store.claim_payment(_order("race"), T0, 60.0) for store in stores)
        )
        assert sorted(results) == ["busy", "busy", "busy", "claimed"]
        for store in stores:
            await store.close()

    asyncio.run(main())


# -- the kit end to end on each store ----------------------------------------------------------


def _kit(wallet: InMemoryWallet, store: KitStore, clock: FakeClock) -> PartnerKit:
    client = WalletClient("http://platform.test", "partner", "secret", transport=wallet.transport)
    return PartnerKit(client, store, clock=clock)


class Boom(Exception):
    pass


def test_flows_outbox_and_recovery(new_store: StoreFactory) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("100.00", player_id="p")
    clock = FakeClock()
    one = Money(Decimal("1.00"), XAG)

    async def main() -> None:
        kit = _kit(wallet, new_store(), clock)
        async with kit.withdrawal(token, one, "Sword") as w:
            pass
        assert w.outcome == "confirmed" and w.acknowledged
        with pytest.raises(Boom):
            async with kit.withdrawal(token, one):
                raise Boom
        wallet.fail_next("confirmDeposit", "timeout", times=2)
        async with kit.deposit(token, Money(Decimal("5.00"), XAG)) as d:
            pass
        assert not d.acknowledged
        while (due := await kit.store.next_due_at()) is not None:
            clock.set(max(due, clock.now()))
            await kit.outbox.run_due()
        entry = await kit.store.get_entry("deposit", d.mm_transaction_id)
        assert entry is not None and entry.state == "delivered" and entry.attempts == 3
        # A flow left mid-way (its process died) is rolled back by the next one.
        left = kit.withdrawal(token, Money(Decimal("2.00"), XAG))
        await left.__aenter__()
        await kit.client.aclose()
        await kit.store.close()

        restarted = _kit(wallet, new_store(), clock)
        clock.advance(restarted.outbox.abandon_after_s + 1)
        assert await restarted.outbox.recover() == 1
        await restarted.outbox.run_due()
        await restarted.aclose()

    asyncio.run(main())
    assert wallet.available("p") == Decimal("104.00")
    assert wallet.held("p") == 0 and wallet.pending_in("p") == 0


def test_query_and_callback_apps(new_store: StoreFactory) -> None:
    wallet = InMemoryWallet()
    token = wallet.add_player("10.00")
    delivered: list[str] = []

    async def main() -> None:
        store = new_store()
        kit = _kit(wallet, store, FakeClock())
        async with kit.withdrawal(token, Money(Decimal("1.00"), XAG)) as w:
            pass
        assert w.result is not None
        query = QueryWithdrawalApp(store, [("qw", "pw")])
        issued = {"o-9": IssuedOrder("p", "gems", Decimal("4.99"), Decimal("4.99"), XAG)}
        receiver = PaymentCallbackApp(
            store,
            "s3cret",
            lambda order: delivered.append(order.cp_order_id),
            issued_order=issued.get,
            clock=FakeClock(T0),
        )
        ts = str(int(T0 * 1000))
        form = {
            "uid": "p",
            "serverId": "1",
            "cpOrderId": "o-9",
            "productId": "gems",
            "productPrice": "4.99",
            "extParams": "",
            "ts": ts,
            "sign": payment_sign("o-9", "1", "p", "4.99", "gems", ts, "s3cret"),
            "amount": "4.99",
            "currencyCode": XAG,
            "provider": "wallet",
        }
        body = urlencode(form).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-QW-Signature": signature_header(body, "s3cret", int(T0 * 1000)),
        }
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(query), base_url="http://q") as q,
            httpx.AsyncClient(transport=httpx.ASGITransport(receiver), base_url="http://c") as c,
        ):
            answer = await q.post(
                "/",
                json={"mmTransactionId": w.mm_transaction_id, "qwTransactionId": "other"},
                auth=("qw", "pw"),
            )
            assert answer.json()["status"] == "UNKNOWN"
            answer = await q.post(
                "/",
                json={
                    "mmTransactionId": w.mm_transaction_id,
                    "qwTransactionId": w.result.qw_transaction_id,
                },
                auth=("qw", "pw"),
            )
            assert answer.json()["status"] == "CONFIRMED"
            for _ in range(2):
                response = await c.post("/", content=body, headers=headers)
                assert response.text == "success"
        await kit.aclose()

    asyncio.run(main())
    assert delivered == ["o-9"]
