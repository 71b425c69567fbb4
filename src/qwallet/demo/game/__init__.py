"""The demo game: a small studio backend and its HTML5 client, built only on the partner kit.

It is what a game studio would run on its side of the integration: it imports nothing from the
platform (``qwallet.api``, ``qwallet.service``, ``qwallet.store``, ``qwallet.web``), only
``qwallet.partner``, and talks to the platform over HTTP like any partner.

- ``create_demo_game(DemoConfig(...))``: the Starlette app (serve it with uvicorn);
- ``DemoConfig.from_env()``: the configuration from ``QWALLET_DEMO_*`` variables;
- ``qwallet demo-partner``: the command that runs it.

See ``docs/demo-game.md``.
"""

from qwallet.demo.game._app import CALLBACK_PATH, QUERY_PATH, DemoGame, create_demo_game
from qwallet.demo.game._catalog import ITEMS, PACKS, Item, Pack
from qwallet.demo.game._config import DemoConfig, origin_of
from qwallet.demo.game._inventory import InventoryStore

__all__ = [
    "CALLBACK_PATH",
    "ITEMS",
    "PACKS",
    "QUERY_PATH",
    "DemoConfig",
    "DemoGame",
    "InventoryStore",
    "Item",
    "Pack",
    "create_demo_game",
    "origin_of",
]
