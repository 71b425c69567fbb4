"""The Wallet API over a real server: documented examples, the state machine, the error table."""

from __future__ import annotations

from typing import Any

import httpx

from qwallet.service.demo import DEMO_TOKEN, seed_demo
from tests.conftest import LiveServer, Platform, Wallet

MM = 0


def next_id(prefix: str = "tx") -> str:
    global MM
    MM += 1
    return f"{prefix}-{MM}"


def is_error(body: dict[str, Any], code: int) -> bool:
    return body.get("errorCode") == code and isinstance(body.get("errorDescription"), str)


# -- the documentation's examples, verbatim ---------------------------------------------------

DOC_WITHDRAW = b"""{
    "token": "0fabcdc4-fe07-44f2-b968-93da3b324898",
    "mmTransactionId": "1234abcd",
    "amount": {
        "amount": 230.00,
        "currencyCode": "XAG"
    },
    "txDescription": "Test Shopping."
}"""
DOC_CONFIRM = b"""{
    "token": "0fabcdc4-fe07-44f2-b968-93da3b324898",
    "mmTransactionId": "1234abcd",
    "amount": {
        "amount": 230.00,
        "currencyCode": "XAG"
    }
}"""
DOC_ROLLBACK = b"""{
    "token": "0fabcdc4-fe07-44f2-b968-93da3b324898",
    "mmTransactionId": "1234abcd",
    "rollbackReason": "Withdraw request failed."
}"""


def test_documented_examples_verbatim(server: LiveServer, platform: Platform) -> None:
    demo = platform.run(
        seed_demo(
            platform.store,
            platform.xag,
            platform.clock.now_ms(),
            idle_timeout_s=1800,
            lifetime_s=86400,
        )
    )
    auth = (demo.credential.username, demo.credential.password)
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, auth=auth, headers=headers) as client:
        first = client.post("/wallet/withdraw", content=DOC_WITHDRAW)
        assert first.status_code == 200
        body = first.json()
        assert set(body) == {"mmTransactionId", "qwTransactionId", "balance"}
        assert body["mmTransactionId"] == "1234abcd"
        assert body["balance"] == {"amount": 99770.00, "currencyCode": "XAG"}
        assert b'"amount":99770.00' in first.content  # exactly the currency's decimals
        # A repeat is a replay: the same answer, no second hold.
        assert client.post("/wallet/withdraw", content=DOC_WITHDRAW).json() == body
        confirmed = client.post("/wallet/confirmWithdrawal", content=DOC_CONFIRM)
        assert confirmed.status_code == 200
        assert confirmed.json()["qwTransactionId"] == body["qwTransactionId"]
        # Rollback after confirm: 133, the documented body shape accepted verbatim.
        rolled = client.post("/wallet/rollbackWithdrawal", content=DOC_ROLLBACK)
        assert rolled.status_code == 200 and is_error(rolled.json(), 133)
        balance = client.post("/wallet/getBalance", json={"token": DEMO_TOKEN}).json()
        assert balance == {"balance": {"amount": 99770.00, "currencyCode": "XAG"}}
    assert platform.reconcile().ok


def test_verify_session_answers_player_data(new_wallet: Any) -> None:
    wallet: Wallet = new_wallet("12.34")
    status, body = wallet.call("verifySession", {"token": wallet.token})
    assert status == 200
    assert body["playerId"] == wallet.player_id
    assert body["currencyCode"] == "XAG" and body["language"] == "en"
    assert body["balance"] == {"amount": 12.34, "currencyCode": "XAG"}
    assert isinstance(body["nickname"], str) and body["nickname"]


# -- the state machine table, for both kinds ---------------------------------------------------

KINDS = {
    "withdrawal": ("withdraw", "confirmWithdrawal", "rollbackWithdrawal"),
    "deposit": ("deposit", "confirmDeposit", "rollbackDeposit"),
}


def test_withdraw_holds_confirm_moves_rollback_returns(new_wallet: Any, platform: Platform) -> None:
    wallet: Wallet = new_wallet("100.00")
    status, held = wallet.money("withdraw", "w1", "30.00")
    assert status == 200 and held["balance"]["amount"] == 70.00
    assert platform.player(wallet.player_id)["held"] == "30.00"
    status, confirmed = wallet.money("confirmWithdrawal", "w1", "30.00")
    assert confirmed["qwTransactionId"] == held["qwTransactionId"]
    assert confirmed["balance"]["amount"] == 70.00
    assert platform.player(wallet.player_id)["held"] == "0.00"
    wallet.money("withdraw", "w2", "20.00")
    status, rolled = wallet.money("rollbackWithdrawal", "w2", rollbackReason="game failed")
    assert status == 200 and rolled["balance"]["amount"] == 70.00
    assert wallet.balance() == "70.0"
    assert platform.reconcile().ok


def test_deposit_is_not_available_until_confirmed(new_wallet: Any, platform: Platform) -> None:
    wallet: Wallet = new_wallet("10.00")
    status, pending = wallet.money("deposit", "d1", "5.00", txDescription="bonus")
    assert status == 200 and pending["balance"]["amount"] == 10.00
    assert platform.player(wallet.player_id)["pendingIn"] == "5.00"
    status, confirmed = wallet.money("confirmDeposit", "d1", "5.00")
    assert confirmed["balance"]["amount"] == 15.00
    wallet.money("deposit", "d2", "7.00")
    status, rolled = wallet.money("rollbackDeposit", "d2")
    assert rolled["balance"]["amount"] == 15.00
    assert platform.player(wallet.player_id)["pendingIn"] == "0.00"
    assert platform.reconcile().ok


def test_state_machine_table(new_wallet: Any, platform: Platform) -> None:
    for begin, confirm, rollback in KINDS.values():
        wallet: Wallet = new_wallet("100.00")
        # none: confirm → 130; rollback → rolled back (blocker); begin after it → 132
        assert is_error(wallet.money(confirm, "n1", "1.00")[1], 130)
        status, blocker = wallet.money(rollback, "n2")
        assert status == 200 and set(blocker) == {"mmTransactionId", "qwTransactionId", "balance"}
        assert is_error(wallet.money(begin, "n2", "1.00")[1], 132)
        assert wallet.money(rollback, "n2")[1] == blocker  # replay
        assert is_error(wallet.money(confirm, "n2", "1.00")[1], 132)
        # pending: begin replays; confirm → confirmed; then begin replays, confirm replays,
        # rollback → 133
        first = wallet.money(begin, "p1", "2.00")[1]
        assert wallet.money(begin, "p1", "2.00")[1] == first
        done = wallet.money(confirm, "p1", "2.00")[1]
        assert wallet.money(confirm, "p1", "2.00")[1] == done
        assert wallet.money(begin, "p1", "2.00")[1] == first
        assert is_error(wallet.money(rollback, "p1")[1], 133)
        # pending → rolled back; then rollback replays, confirm → 132, begin → 132
        wallet.money(begin, "r1", "3.00")
        rolled = wallet.money(rollback, "r1")[1]
        assert wallet.money(rollback, "r1")[1] == rolled
        assert is_error(wallet.money(confirm, "r1", "3.00")[1], 132)
        assert is_error(wallet.money(begin, "r1", "3.00")[1], 132)
    assert platform.reconcile().ok


def test_replay_returns_the_first_answer_even_after_balance_changed(new_wallet: Any) -> None:
    wallet: Wallet = new_wallet("100.00")
    first = wallet.money("withdraw", "a", "10.00")[1]
    wallet.money("withdraw", "b", "5.00")
    assert wallet.money("withdraw", "a", "10.00")[1] == first
    assert first["balance"]["amount"] == 90.00


def test_changed_data_is_131_and_changes_nothing(new_wallet: Any, platform: Platform) -> None:
    wallet: Wallet = new_wallet("100.00")
    wallet.money("withdraw", "c1", "10.00")
    body = wallet.money("withdraw", "c1", "11.00")[1]
    assert is_error(body, 131) and body["mmTransactionId"] == "c1" and "qwTransactionId" in body
    assert is_error(wallet.money("confirmWithdrawal", "c1", "10.01")[1], 131)
    assert wallet.balance() == "90.0"
    # The same id is independent per kind: a deposit "c1" is a different transaction.
    assert wallet.money("deposit", "c1", "11.00")[0] == 200
    assert platform.reconcile().ok


def test_ids_are_per_partner(new_wallet: Any) -> None:
    one: Wallet = new_wallet("50.00")
    two: Wallet = new_wallet("50.00")
    a = one.money("withdraw", "shared-id", "1.00")[1]
    b = two.money("withdraw", "shared-id", "1.00")[1]
    assert a["qwTransactionId"] != b["qwTransactionId"]


def test_another_players_or_partners_transaction_is_not_found(
    new_wallet: Any, platform: Platform
) -> None:
    owner: Wallet = new_wallet("50.00")
    owner.money("withdraw", "mine", "5.00")
    # Same partner, another player: the id exists but is not theirs → 130, never revealed.
    other_player = platform.create_player("50.00")
    other_token = platform.create_session(other_player, owner.username)
    assert is_error(owner.money("confirmWithdrawal", "mine", "5.00", token=other_token)[1], 130)
    assert is_error(owner.money("rollbackWithdrawal", "mine", token=other_token)[1], 130)
    # Another partner using the owner's token: the token is unknown to them → 110.
    stranger: Wallet = new_wallet("50.00")
    assert is_error(stranger.money("confirmWithdrawal", "mine", "5.00", token=owner.token)[1], 110)
    assert owner.money("confirmWithdrawal", "mine", "5.00")[0] == 200


def test_error_table_business_rows(new_wallet: Any, platform: Platform) -> None:
    wallet: Wallet = new_wallet("10.00", daily_limit="15.00")
    # 102 invalid amounts
    for amount in ("0", "0.00", "-1.00", "1.001", "1e2", "1000000.01"):
        status, body = wallet.money("withdraw", next_id(), amount)
        assert status == 200 and is_error(body, 102), (amount, body)
    # 110 unknown token
    assert is_error(wallet.call("getBalance", {"token": "no-such-token"})[1], 110)
    # 120 currency mismatch (known currency, other wallet) and unknown currency
    assert is_error(wallet.money("withdraw", next_id(), "1.00", currency="EUR")[1], 120)
    assert is_error(wallet.money("withdraw", next_id(), "1.00", currency="ZZZ")[1], 120)
    # 121 insufficient funds, with the balance
    body = wallet.money("withdraw", next_id(), "10.01")[1]
    assert is_error(body, 121) and body["balance"] == {"amount": 10.00, "currencyCode": "XAG"}
    # 122 daily limit: 10 + 6 > 15
    wallet.money("deposit", "top-up", "20.00")
    wallet.money("confirmDeposit", "top-up", "20.00")
    assert wallet.money("withdraw", next_id(), "10.00")[0] == 200
    assert is_error(wallet.money("withdraw", next_id(), "6.00")[1], 122)
    # 112 blocked player. Blocking revokes the player's tokens (docs/security.md), so the old
    # token is 110; a session issued while blocked (operator path) answers 112.
    platform.block(wallet.player_id)
    assert is_error(wallet.call("verifySession", {"token": wallet.token})[1], 110)
    blocked_token = platform.create_session(wallet.player_id, wallet.username)
    assert is_error(wallet.call("verifySession", {"token": blocked_token})[1], 112)
    assert is_error(wallet.money("withdraw", next_id(), "1.00", token=blocked_token)[1], 112)
    platform.block(wallet.player_id, False)
    assert wallet.call("verifySession", {"token": blocked_token})[0] == 200
    assert is_error(wallet.call("verifySession", {"token": wallet.token})[1], 110)
    assert platform.reconcile().ok


def test_blocked_player_can_still_be_confirmed_and_rolled_back(
    new_wallet: Any, platform: Platform
) -> None:
    wallet: Wallet = new_wallet("10.00")
    wallet.money("withdraw", "b1", "1.00")
    wallet.money("withdraw", "b2", "1.00")
    platform.block(wallet.player_id)
    assert wallet.money("confirmWithdrawal", "b1", "1.00")[0] == 200
    status, body = wallet.money("rollbackWithdrawal", "b2")
    assert status == 200 and body["balance"]["amount"] == 9.00


def test_expired_session(new_wallet: Any, platform: Platform) -> None:
    wallet: Wallet = new_wallet("10.00")
    wallet.money("withdraw", "e1", "1.00")
    wallet.money("withdraw", "e2", "1.00")
    platform.clock.advance(31 * 60 * 1000)  # past the 30-minute idle timeout
    assert is_error(wallet.call("getBalance", {"token": wallet.token})[1], 111)
    assert is_error(wallet.call("verifySession", {"token": wallet.token})[1], 111)
    assert is_error(wallet.money("withdraw", "e3", "1.00")[1], 111)
    assert is_error(wallet.money("deposit", "e4", "1.00")[1], 111)
    # confirm and rollback are accepted with an expired token (48-hour retries)
    assert wallet.money("confirmWithdrawal", "e1", "1.00")[0] == 200
    platform.clock.advance(48 * 3600 * 1000)
    status, body = wallet.money("rollbackWithdrawal", "e2")
    assert status == 200 and body["balance"]["amount"] == 9.00
    assert platform.reconcile().ok


def test_deposit_above_maximum_balance_is_102(new_wallet: Any) -> None:
    wallet: Wallet = new_wallet("999999999.00")
    body = wallet.money("deposit", "big", "1.01")[1]
    assert is_error(body, 102)


def test_demo_seed_restarts_after_a_rotation_left_two_credentials(platform: Platform) -> None:
    """Rotation keeps at most two credentials active; the demo seed must still start then."""
    from qwallet.service import partners

    def seed() -> Any:
        return platform.run(
            seed_demo(
                platform.store,
                platform.xag,
                platform.clock.now_ms(),
                idle_timeout_s=1800,
                lifetime_s=86400,
            )
        )

    seed()
    platform.run(partners.rotate_credentials(platform.store, "demo", platform.clock.now_ms()))
    again = seed()
    listed = {p["name"]: p for p in platform.run(partners.list_partners(platform.store))}
    assert listed["demo"]["activeCredentials"] == 1
    assert again.credential.username == "demo" and again.credential.password
