"""``qwallet api-keys``: bearer keys for the operator API (audited as ``api_key.*``)."""

from __future__ import annotations

import typer

from qwallet.cli._common import JsonOption, actor, emit, now_ms, with_store
from qwallet.service import api_keys
from qwallet.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Operator API keys.")


@app.command("create")
def api_keys_create(name: str, as_json: JsonOption = False) -> None:
    """Create an operator API key (for POST /api/sessions); shown once."""
    key = with_store(
        Settings.from_env(),
        lambda store: api_keys.create_api_key(store, name, now_ms(), operator=actor()),
    )
    emit(as_json, {"name": name, "apiKey": key}, key)


@app.command("revoke")
def api_keys_revoke(name: str, as_json: JsonOption = False) -> None:
    """Revoke every active key with this name; they are refused (401) at once."""
    count = with_store(
        Settings.from_env(),
        lambda store: api_keys.revoke_api_keys(store, name, now_ms(), operator=actor()),
    )
    emit(as_json, {"name": name, "revoked": count}, f"revoked {count} key(s) named {name}")
