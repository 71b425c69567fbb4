"""The operator's interfaces: the CLI (as a real subprocess, with --json) and POST /api/sessions."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwallet.service import api_keys
from tests.conftest import LiveServer, Platform, free_port, fresh_database_url

QWALLET = str(Path(sys.executable).parent / "qwallet")


def qwallet(database_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QWALLET_DATABASE_URL": database_url}
    result = subprocess.run(
        [QWALLET, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"qwallet {' '.join(args)} failed: {result.stderr}")
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # exactly one JSON object
    payload = json.loads(lines[0])
    assert isinstance(payload, dict)
    return payload


def test_operator_cli_end_to_end(database_url: str, server: LiveServer) -> None:
    name = f"cli-studio-{time.monotonic_ns() % 10**8}"
    created = as_json(
        qwallet(
            database_url,
            "partners",
            "create",
            name,
            "--ip-allow",
            "127.0.0.0/8",
            "--payment-currency",
            "XAG",
            "--json",
        )
    )
    assert created["username"] == name and len(created["password"]) >= 24
    listed = as_json(qwallet(database_url, "partners", "list", "--json"))
    mine = next(p for p in listed["partners"] if p["name"] == name)
    assert mine["ipAllow"] == ["127.0.0.0/8"] and "password" not in json.dumps(mine)

    player = as_json(
        qwallet(
            database_url,
            "players",
            "create",
            "--currency",
            "XAG",
            "--balance",
            "250.50",
            "--nickname",
            "Ann",
            "--json",
        )
    )
    player_id = player["playerId"]
    shown = as_json(qwallet(database_url, "players", "show", player_id, "--json"))
    assert shown["available"] == "250.50" and shown["nickname"] == "Ann"

    session = as_json(
        qwallet(
            database_url, "sessions", "create", "--player", player_id, "--partner", name, "--json"
        )
    )
    assert set(session) == {"token", "launchUrl", "expiresAt"} and session["expiresAt"].endswith(
        "Z"
    )

    auth = (name, created["password"])
    with httpx.Client(base_url=server.url, auth=auth) as client:
        answer = client.post("/wallet/getBalance", json={"token": session["token"]}).json()
        assert answer == {"balance": {"amount": 250.50, "currencyCode": "XAG"}}
        rotated = as_json(qwallet(database_url, "partners", "rotate-credentials", name, "--json"))
        new_auth = (name, rotated["password"])
        ok = client.post("/wallet/getBalance", json={"token": session["token"]}, auth=new_auth)
        assert ok.status_code == 200
        revoked = as_json(
            qwallet(database_url, "partners", "revoke-old-credentials", name, "--json")
        )
        assert revoked["revoked"] == 1

    as_json(qwallet(database_url, "players", "block", player_id, "--json"))
    assert (
        as_json(qwallet(database_url, "players", "show", player_id, "--json"))["status"]
        == "blocked"
    )
    adjusted = as_json(
        qwallet(
            database_url,
            "players",
            "adjust",
            player_id,
            "--amount",
            "-0.50",
            "--reason",
            "goodwill correction",
            "--json",
        )
    )
    assert adjusted["playerId"] == player_id
    assert (
        as_json(qwallet(database_url, "players", "show", player_id, "--json"))["available"]
        == "250.00"
    )
    report = as_json(qwallet(database_url, "reconcile", "--json"))
    assert report["ok"] is True and report["players"] >= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["players", "create", "--currency", "ZZZ", "--json"], "unknown currency"),
        (["players", "create", "--currency", "XAG", "--balance", "1.001"], "invalid amount"),
        (["players", "show", "no-such-player"], "no player"),
        (["partners", "create", "Bad Name!"], "partner name"),
        (["partners", "create", "x", "--ip-allow", "not-a-cidr"], "invalid CIDR"),
        (["sessions", "create", "--player", "nobody", "--partner", "nobody"], "no player"),
        (["players", "adjust", "nobody", "--amount", "1.00", "--reason", " "], "needs a reason"),
        (["players", "adjust", "x", "--amount", "1.00", "--reason", "r" * 501], "at most 500"),
        (["partners", "set-query-credentials", "nobody"], "no partner"),
        (["partners", "rotate-callback-secret", "nobody"], "no partner"),
        (["api-keys", "create", "bad name!"], "API key name"),
        (
            ["resolver", "resolve", "x", "--decision", "maybe", "--reason", "r"],
            "confirm or rollback",
        ),
        (["operators", "reset-password", "nobody"], "no operator"),
    ],
)
def test_cli_refuses_bad_input_clearly(database_url: str, args: list[str], message: str) -> None:
    result = qwallet(database_url, *args, check=False)
    assert result.returncode != 0
    assert message in (result.stderr + result.stdout)
    assert result.stdout.strip() == "" or not result.stdout.strip().startswith("{")


def test_reconcile_detects_a_tampered_balance(backend: str, tmp_path: Path) -> None:
    for url in fresh_database_url(backend, tmp_path):
        player = as_json(
            qwallet(url, "players", "create", "--currency", "XAG", "--balance", "10.00", "--json")
        )
        assert qwallet(url, "reconcile").returncode == 0
        tamper = "UPDATE players SET available_minor = available_minor + 1 WHERE id = '{}'"
        _execute(url, tamper.format(player["playerId"]))
        # The wallet has not moved since the checkpoint the first run wrote: only the full
        # proof reads it again (docs/operations.md, "Reconciliation").
        result = qwallet(url, "reconcile", "--full", "--json", check=False)
        assert result.returncode == 1
        report = as_json(result)
        assert report["ok"] is False
        assert report["balanceMismatches"][0]["id"] == player["playerId"]


def _execute(url: str, sql: str) -> None:
    import asyncio

    from qwallet.settings import Settings
    from qwallet.store.factory import open_store

    async def run() -> None:
        store = await open_store(Settings(database_url=url))
        try:
            async with store.transaction() as tx:
                await tx.execute(sql)
        finally:
            await store.close()

    asyncio.run(run())


def test_operator_api_creates_sessions(server: LiveServer, platform: Platform) -> None:
    key = platform.run(api_keys.create_api_key(platform.store, "crm", platform.clock.now_ms()))
    username, _ = platform.create_partner()
    player_id = platform.create_player("5.00")
    with httpx.Client(base_url=server.url) as client:
        bearer = {"Authorization": f"Bearer {key}"}
        created = client.post(
            "/api/sessions", json={"playerId": player_id, "partner": username}, headers=bearer
        )
        assert created.status_code == 201, created.text
        assert set(created.json()) == {"token", "launchUrl", "expiresAt"}
        assert created.headers["x-request-id"]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {key}"}):
            refused = client.post(
                "/api/sessions", json={"playerId": player_id, "partner": username}, headers=headers
            )
            assert refused.status_code == 401 and refused.json()["errorCode"] == 103
        for body in (
            {"playerId": player_id},
            {"playerId": player_id, "partner": username, "admin": True},
            {"playerId": "nobody", "partner": username},
            {"playerId": player_id, "partner": "nobody"},
        ):
            bad = client.post("/api/sessions", json=body, headers=bearer)
            assert bad.status_code == 400 and bad.json()["errorCode"] == 101, bad.text


def test_serve_prints_credentials_and_answers_the_documented_withdraw(tmp_path: Path) -> None:
    """The README's first command, on a fresh embedded database, as a real process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWALLET_")}
    process = subprocess.Popen(
        [QWALLET, "serve", "--port", str(port), "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        assert info["url"] == url and info["token"] == "0fabcdc4-fe07-44f2-b968-93da3b324898"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        body = (
            b'{"token": "0fabcdc4-fe07-44f2-b968-93da3b324898", "mmTransactionId": "1234abcd",'
            b' "amount": {"amount": 230.00, "currencyCode": "XAG"}, "txDescription": "Test Shopping."}'
        )
        response = httpx.post(
            f"{url}/wallet/withdraw",
            content=body,
            auth=(info["username"], info["password"]),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200
        assert response.json()["balance"] == {"amount": 99770.00, "currencyCode": "XAG"}
        assert (tmp_path / "qwallet-data" / "qwallet.db").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)  # also closes the pipes


# -- the audit log: one entry per change, written with the change ------------------------------


def cli_actor() -> str:
    """The audit log's actor for this user's commands (the subprocesses run as this user)."""
    import getpass

    return f"cli:{getpass.getuser()}"


def audit_of(platform: Platform, operator: str) -> list[dict[str, Any]]:
    from qwallet.service import audit

    rows = platform.run(audit.entries(platform.store, operator=operator, limit=1000))
    return [dict(row) for row in rows]


@contextmanager
def refusing_audit_entries(platform: Platform, target: str) -> Iterator[None]:
    """A trigger that makes the database refuse every audit entry about ``target``: the change
    the entry describes must then be refused with it (one transaction)."""
    tag = secrets.token_hex(4)
    quoted = target.replace("'", "''")
    if platform.store.dialect == "postgresql":
        create = [
            f"CREATE FUNCTION refuse_audit_{tag}() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit entry refused'; END $$",
            f"CREATE TRIGGER refuse_audit_{tag} BEFORE INSERT ON audit_log FOR EACH ROW"
            f" WHEN (NEW.target = '{quoted}') EXECUTE FUNCTION refuse_audit_{tag}()",
        ]
        drop = [
            f"DROP TRIGGER refuse_audit_{tag} ON audit_log",
            f"DROP FUNCTION refuse_audit_{tag}()",
        ]
    else:
        create = [
            f"CREATE TRIGGER refuse_audit_{tag} BEFORE INSERT ON audit_log"
            f" WHEN NEW.target = '{quoted}'"
            " BEGIN SELECT RAISE(ABORT, 'audit entry refused'); END"
        ]
        drop = [f"DROP TRIGGER refuse_audit_{tag}"]

    async def run(statements: list[str]) -> None:
        async with platform.store.transaction() as tx:
            for statement in statements:
                await tx.execute(statement)

    platform.run(run(create))
    try:
        yield
    finally:
        platform.run(run(drop))


def rows_of(platform: Platform, sql: str, *args: Any) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        async with platform.store.transaction() as tx:
            return [dict(row) for row in await tx.fetch(sql, *args)]

    return platform.run(fetch())


def test_every_cli_change_leaves_one_audit_entry(
    database_url: str, platform: Platform, new_wallet: Any
) -> None:
    """Each changing command writes exactly one entry, by ``cli:<OS user>``, never a secret."""
    actor = cli_actor()
    name = f"audited-{secrets.token_hex(3)}"
    shown: list[str] = []

    def run(action: str, target: str | None, *args: str, stdin: str | None = None) -> Any:
        """Run ``qwallet *args --json``; ``target`` "?" is checked by the caller."""
        before = audit_of(platform, actor)
        env = {**os.environ, "QWALLET_DATABASE_URL": database_url}
        result = subprocess.run(
            [QWALLET, *args, "--json"], env=env, input=stdin, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        after = audit_of(platform, actor)
        assert len(after) == len(before) + 1, (args, after[: len(after) - len(before)])
        assert after[0]["action"] == action, args
        assert target == "?" or after[0]["target"] == target, args
        return as_json(result)

    created = run(
        "partner.create", name, "partners", "create", name, "--payment-currency", "XAG",
        "--callback-url", "https://studio.example/pay", "--query-username", "qw-at-studio",
    )  # fmt: skip
    shown += [created["password"], created["callbackSecret"], created["queryPassword"]]
    run("partner.update", name, "partners", "update", name, "--query-url", "https://s.example/q")
    shown.append(run("partner.rotate_wallet_password", name, "partners", "rotate-credentials",
                     name)["password"])  # fmt: skip
    run("partner.revoke_old_credentials", name, "partners", "revoke-old-credentials", name)
    shown.append(run("partner.rotate_callback_secret", name, "partners",
                     "rotate-callback-secret", name)["callbackSecret"])  # fmt: skip
    shown.append(run("partner.rotate_query_secret", name, "partners", "set-query-credentials",
                     name)["queryPassword"])  # fmt: skip
    run("partner.set_query_credentials", name, "partners", "set-query-credentials", name,
        "--username", "qw2", "--password-stdin", stdin="chosen-by-the-studio\n")  # fmt: skip
    shown.append("chosen-by-the-studio")
    run("partner.set_allow_list", name, "partners", "set-allow-list", name, "10.0.0.0/8")
    player_id = run(
        "player.create", "?", "players", "create", "--currency", "XAG", "--balance", "5.00"
    )["playerId"]
    assert audit_of(platform, actor)[0]["target"] == player_id
    run("player.block", player_id, "players", "block", player_id, "--reason", "fraud check")
    run("player.unblock", player_id, "players", "unblock", player_id)
    run("player.adjust", player_id, "players", "adjust", player_id, "--amount", "1.00",
        "--reason", "goodwill")  # fmt: skip
    shown.append(run("player.set_password", player_id, "players", "set-password", player_id,
                     "--username", f"u-{name}")["password"])  # fmt: skip
    shown.append(run("session.create", player_id, "sessions", "create", "--player", player_id,
                     "--partner", name)["token"])  # fmt: skip
    key_name = f"k-{name}"
    shown.append(run("api_key.create", key_name, "api-keys", "create", key_name)["apiKey"])
    run("api_key.revoke", key_name, "api-keys", "revoke", key_name)
    operator = f"op-{name}"
    shown.append(run("operator.create", operator, "operators", "create", operator)["password"])
    shown.append(run("operator.reset_password", operator, "operators", "reset-password",
                     operator)["password"])  # fmt: skip
    run("reconcile.run", None, "reconcile")
    run("resolver.run", None, "resolver", "run-once")
    wallet = new_wallet(balance="20.00")
    status, body = wallet.call(
        "withdraw",
        {"token": wallet.token, "mmTransactionId": f"held-{name}",
         "amount": {"amount": 2.00, "currencyCode": "XAG"}, "txDescription": "held"},
    )  # fmt: skip
    assert status == 200 and "qwTransactionId" in body, body
    qw_id = body["qwTransactionId"]
    resolved = run("transaction.resolve", qw_id, "resolver", "resolve", qw_id,
                   "--decision", "rollback", "--reason", "studio confirmed it failed")  # fmt: skip
    assert resolved["action"] == "rolled_back"
    assert platform.player(wallet.player_id)["available"] == "20.00"

    # No entry holds a secret.
    logged = json.dumps(audit_of(platform, actor))
    for secret in shown:
        assert secret not in logged


def test_a_refused_cli_command_leaves_no_audit_entry(database_url: str, platform: Platform) -> None:
    before = audit_of(platform, cli_actor())
    for args in (
        ["partners", "rotate-callback-secret", "nobody"],
        ["partners", "set-query-credentials", "nobody"],
        ["orders", "redeliver", "no-such-order"],
        ["resolver", "resolve", "no-such-tx", "--decision", "confirm", "--reason", "x"],
        ["operators", "reset-password", "nobody"],
        ["players", "block", "nobody"],
    ):
        result = qwallet(database_url, *args, check=False)
        assert result.returncode == 2 and result.stdout == "", (args, result.stderr)
    assert audit_of(platform, cli_actor()) == before


def test_cli_created_partner_has_its_secrets_from_the_start(
    database_url: str, platform: Platform
) -> None:
    """The bug: ``partners create`` left the callback secret and Query credentials unset, so
    every callback to the partner was refused and no command could set them."""
    name = f"fresh-{secrets.token_hex(3)}"
    human = qwallet(database_url, "partners", "create", name, "--payment-currency", "XAG").stdout
    (row,) = rows_of(platform, "SELECT * FROM partners WHERE name = $1", name)
    assert row["callback_secret"] and row["query_password"] and row["query_username"] == "qwallet"
    assert row["callback_secret"] in human and row["query_password"] in human
    assert "shown once" in human
    rotated = as_json(qwallet(database_url, "partners", "rotate-callback-secret", name, "--json"))
    (row,) = rows_of(platform, "SELECT * FROM partners WHERE name = $1", name)
    assert row["callback_secret"] == rotated["callbackSecret"] != human
    bad = qwallet(database_url, "partners", "set-query-credentials", name, "--password-stdin",
                  check=False)  # fmt: skip
    assert bad.returncode == 2 and "stdin" in bad.stderr


def test_a_change_whose_audit_entry_fails_is_not_made(
    database_url: str, platform: Platform
) -> None:
    """The adjustment and its audit entry are one transaction: the database refusing the entry
    (a trigger) refuses the money movement too, from the CLI and from the service."""
    from qwallet.service import players

    player_id = platform.create_player("10.00")
    with refusing_audit_entries(platform, player_id):
        result = qwallet(
            database_url, "players", "adjust", player_id, "--amount", "-4.00", "--reason",
            "chargeback", check=False,
        )  # fmt: skip
        assert result.returncode != 0 and "audit entry refused" in result.stderr
        with pytest.raises(Exception, match="audit entry refused"):
            platform.run(
                players.adjust_balance(
                    platform.store, player_id, platform.xag, 400, "bonus", "test", 0
                )
            )
    assert platform.player(player_id)["available"] == "10.00"
    assert not rows_of(
        platform, "SELECT id FROM adjustments WHERE player_id = $1 AND reason <> $2",
        player_id, "initial balance",
    )  # fmt: skip
    assert platform.reconcile().ok
    # Without the trigger the same command goes through, with its entry.
    qwallet(database_url, "players", "adjust", player_id, "--amount", "-4.00", "--reason", "ok")
    assert platform.player(player_id)["available"] == "6.00"


def test_a_partner_whose_audit_entry_fails_is_not_created(
    database_url: str, platform: Platform
) -> None:
    name = f"refused-{secrets.token_hex(3)}"
    with refusing_audit_entries(platform, name):
        result = qwallet(database_url, "partners", "create", name, "--payment-currency", "XAG",
                         check=False)  # fmt: skip
        assert result.returncode != 0 and result.stdout == ""
    assert not rows_of(platform, "SELECT id FROM partners WHERE name = $1", name)


def test_operator_api_sessions_are_audited_as_their_key(
    server: LiveServer, platform: Platform
) -> None:
    key_name = f"crm-{secrets.token_hex(3)}"
    key = platform.run(api_keys.create_api_key(platform.store, key_name, platform.clock.now_ms()))
    partner, _ = platform.create_partner()
    player_id = platform.create_player("5.00")
    actor = f"api-key:{key_name}"
    bearer = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url) as client:
        created = client.post(
            "/api/sessions", json={"playerId": player_id, "partner": partner}, headers=bearer
        )
        assert created.status_code == 201, created.text
        (entry,) = audit_of(platform, actor)
        assert (entry["action"], entry["target"]) == ("session.create", player_id)
        assert json.loads(entry["details"])["partner"] == partner
        assert created.json()["token"] not in json.dumps(entry)
        refused = client.post(
            "/api/sessions", json={"playerId": "nobody", "partner": partner}, headers=bearer
        )
        assert refused.status_code == 400
        assert len(audit_of(platform, actor)) == 1
        # The session and its entry are one transaction: no entry, no session.
        with refusing_audit_entries(platform, player_id):
            failed = client.post(
                "/api/sessions", json={"playerId": player_id, "partner": partner}, headers=bearer
            )
            assert failed.status_code == 500
    sessions = rows_of(platform, "SELECT token FROM sessions WHERE player_id = $1", player_id)
    assert [s["token"] for s in sessions] == [created.json()["token"]]
    assert len(audit_of(platform, actor)) == 1
