"""The operator's interfaces: the CLI (as a real subprocess, with --json) and POST /api/sessions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
        result = qwallet(url, "reconcile", "--json", check=False)
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
