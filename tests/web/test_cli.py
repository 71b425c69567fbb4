"""``qwallet players set-password``, a partner set up from the CLI receiving signed payment
callbacks, ``qwallet demo``'s guard and its output (the sign-in box, no log lines), as real
processes."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from qwallet.demo import launch as demo_launch
from qwallet.partner import IssuedOrder, PaymentCallbackApp, PaymentOrder, SQLiteStore
from qwallet.service.player_logins import authenticate
from tests.conftest import Platform, free_port
from tests.e2e.test_demo_journey import STARTUP_TIMEOUT_S, newcomer_environment, stop_demo
from tests.integration.test_cli_and_operator_api import as_json, qwallet
from tests.integration.test_logs import TEXT_LINE
from tests.partner.conftest import serve

from .conftest import World, wait_for


def test_set_password_prints_a_working_password(database_url: str, platform: Platform) -> None:
    player_id = platform.create_player()
    result = as_json(
        qwallet(database_url, "players", "set-password", player_id, "--username", "cli-alice",
                "--json")
    )  # fmt: skip
    assert result["playerId"] == player_id and result["username"] == "cli-alice"
    assert platform.run(authenticate(platform.store, "cli-alice", result["password"])) == player_id
    assert platform.run(authenticate(platform.store, "cli-alice", "wrong-password")) is None
    other = platform.create_player()
    taken = qwallet(database_url, "players", "set-password", other, "--username", "cli-alice",
                    check=False)  # fmt: skip
    assert taken.returncode == 2 and "taken" in taken.stderr


def test_demo_explains_a_missing_game_backend(database_url: str) -> None:
    if demo_launch.demo_partner_available():
        pytest.skip("the demo game backend is installed")
    result = qwallet(database_url, "demo", "--port", "1", check=False)
    assert result.returncode == 2 and "demo-partner" in result.stderr


def test_a_partner_created_with_the_cli_receives_signed_callbacks(
    database_url: str, world: World, tmp_path: Path
) -> None:
    """End to end: ``partners create`` issues the callback secret in the creating transaction
    and prints it; the kit's real receiver, configured with it, accepts the platform's signed
    callback for a wallet payment, and after ``rotate-callback-secret`` only the new one."""
    name = f"cli-game-{secrets.token_hex(3)}"
    created = as_json(
        qwallet(database_url, "partners", "create", name, "--payment-currency", "XAG",
                "--client-url", "http://127.0.0.1:9/game", "--display-name", "CLI Game",
                "--allow-http-callback", "--json")
    )  # fmt: skip
    delivered: list[PaymentOrder] = []
    issued: dict[str, IssuedOrder] = {}
    receiver = PaymentCallbackApp(
        SQLiteStore(tmp_path / "kit.db"),
        created["callbackSecret"],
        delivered.append,
        issued_order=issued.get,
    )
    player = world.player("50.00")
    browser = world.browser(player)
    with serve(receiver) as url:
        qwallet(database_url, "partners", "update", name, "--callback-url", f"{url}/pay/quantum")
        token = browser.play(name)["token"]
        order = browser.order(token).json()["order"]
        issued[order["cpOrderId"]] = IssuedOrder(player.id)
        assert browser.pay(order["orderId"], "wallet").status_code == 200
        wait_for(lambda: world.order_row(order["orderId"])["state"] == "delivered", what="delivery")
        assert [o.cp_order_id for o in delivered] == [order["cpOrderId"]]
        assert [a["http_status"] for a in world.attempts(order["orderId"])] == [200]

        # A rotated secret: the receiver still holding the old one refuses the next callback.
        qwallet(database_url, "partners", "rotate-callback-secret", name)
        second = browser.order(token).json()["order"]
        issued[second["cpOrderId"]] = IssuedOrder(player.id)
        assert browser.pay(second["orderId"], "wallet").status_code == 200
        wait_for(lambda: world.attempts(second["orderId"]), what="an attempt with the new secret")
        assert world.attempts(second["orderId"])[0]["http_status"] == 403  # bad_signature
        assert len(delivered) == 1


def run_demo(cwd: Path, *options: str) -> tuple[str, str]:
    """``qwallet demo`` as a newcomer starts it (no terminal here), stopped with SIGTERM once it
    has printed its sign-ins; returns its stdout and stderr."""
    arguments = ["demo", "--port", str(free_port()), "--partner-port", str(free_port()), *options]
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(  # our own command, fixed arguments
            [*demo_launch.qwallet_command(), *arguments],
            cwd=cwd,
            env=newcomer_environment(),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        done = "{" if "--json" in options else "Press Ctrl-C"
        while done not in (out.read_text() + err.read_text()):
            assert process.poll() is None, f"demo exited with {process.returncode}"
            assert time.monotonic() < deadline, "demo printed no sign-ins"
            time.sleep(0.2)
        time.sleep(1.0)  # anything the children would print after the box
    finally:
        assert stop_demo(process), "SIGTERM left part of the qwallet demo process tree running"
    return out.read_text(), err.read_text()


def json_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("{")]


@pytest.mark.skipif(not demo_launch.demo_partner_available(), reason="no demo game backend")
def test_demo_json_prints_one_object_and_no_log_lines(tmp_path: Path) -> None:
    stdout, stderr = run_demo(tmp_path, "--json")
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    summary = json.loads(lines[0])
    assert summary["playerUsername"] and summary["adminPassword"]
    assert json_lines(stderr) == [], stderr
    # The children logged, as text, into the files the summary names.
    for key in ("platformLog", "gameLog"):
        log = (tmp_path / summary[key]).read_text()
        assert "Application startup complete" in log and json_lines(log) == [], log


@pytest.mark.skipif(not demo_launch.demo_partner_available(), reason="no demo game backend")
def test_demo_box_has_no_log_lines_around_it(tmp_path: Path) -> None:
    stdout, stderr = run_demo(tmp_path)
    output = stdout + stderr
    assert json_lines(output) == [], output
    assert "uvicorn" not in output and "Application startup" not in output, output
    box = [line.strip() for line in output.splitlines() if line.strip()]
    assert box[0].startswith("Demo running. Lobby: http://127.0.0.1:"), box
    assert box[1].startswith("Player sign-in: demo / "), box
    assert box[-1] == "Press Ctrl-C to stop.", box
    assert any(line.startswith("Logs: qwallet-data/logs/platform.log") for line in box), box
    platform_log = (tmp_path / "qwallet-data" / "logs" / "platform.log").read_text()
    assert TEXT_LINE.match(platform_log.splitlines()[0]), platform_log
