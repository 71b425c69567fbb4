"""``qwallet players set-password`` and ``qwallet demo``'s guard, as real processes."""

from __future__ import annotations

import pytest

from qwallet.service.player_logins import authenticate
from qwallet.web import demo_launch
from tests.conftest import Platform
from tests.integration.test_cli_and_operator_api import as_json, qwallet


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
