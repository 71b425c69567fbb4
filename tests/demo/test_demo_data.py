"""The demo data are an operator use case like the others: ``qwallet demo`` pointing the demo
partner at the game writes the partner's settings and their audit entry in one transaction, on
both databases."""

from __future__ import annotations

import json

import pytest

from qwallet.demo.launch import DemoPartnerConfig, configure_demo_partner
from qwallet.service import demo
from tests.conftest import Platform
from tests.integration.test_cli_and_operator_api import audit_of, refusing_audit_entries, rows_of

PARTNER_COLUMNS = (
    "SELECT client_url, callback_url, query_url, callback_secret, query_username,"
    " query_password, sandbox, payment_methods, allow_http_callback, payment_currency"
    " FROM partners WHERE name = $1"
)


def test_pointing_the_demo_partner_at_the_game_is_audited_in_its_transaction(
    platform: Platform,
) -> None:
    name, _password = platform.create_partner()
    config = DemoPartnerConfig.fresh("127.0.0.1", 8001)
    before = audit_of(platform, demo.DEMO_OPERATOR)

    platform.run(configure_demo_partner(platform.store, config, partner=name))

    [partner] = rows_of(platform, PARTNER_COLUMNS, name)
    assert (partner["client_url"], partner["callback_url"], partner["query_url"]) == (
        config.client_url,
        config.callback_url,
        config.query_url,
    )
    assert partner["callback_secret"] == config.callback_secret
    assert (partner["query_username"], partner["query_password"]) == (
        config.query_username,
        config.query_password,
    )
    assert partner["sandbox"] and partner["allow_http_callback"]
    assert partner["payment_methods"] == "wallet,sandbox_card"
    after = audit_of(platform, demo.DEMO_OPERATOR)
    assert len(after) == len(before) + 1
    entry = after[0]
    assert (entry["action"], entry["target"]) == ("partner.point_at_demo_game", name)
    details = json.loads(entry["details"])
    assert details == {
        "callbackUrl": config.callback_url,
        "clientUrl": config.client_url,
        "queryUrl": config.query_url,
        "queryUsername": config.query_username,
    }
    assert config.callback_secret not in entry["details"]
    assert config.query_password not in entry["details"]

    # An entry the database refuses takes the change with it.
    moved = DemoPartnerConfig.fresh("127.0.0.1", 8002)
    with refusing_audit_entries(platform, name), pytest.raises(Exception, match="refused"):
        platform.run(configure_demo_partner(platform.store, moved, partner=name))
    assert rows_of(platform, PARTNER_COLUMNS, name) == [partner]
    assert len(audit_of(platform, demo.DEMO_OPERATOR)) == len(after)
