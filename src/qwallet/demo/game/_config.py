"""``DemoConfig``: everything the demo studio backend needs to know about its platform.

Every field can come from the environment (``DemoConfig.from_env``), as ``QWALLET_DEMO_<FIELD>``:

=============================  ==============================================================
``PLATFORM_URL``               the platform's base URL (Wallet API at ``/wallet/*``)
``USERNAME`` / ``PASSWORD``    the studio's Basic credentials at the platform
``CALLBACK_SECRET``            the shared secret of the payment callback's ``sign``
``QUERY_USERNAME`` / ``_PASSWORD``  what the platform sends to our Query Withdrawal endpoint
``DATA_DIR``                   where ``kit.db`` and ``game.db`` live (default ``./demo-data``)
``PLATFORM_ORIGIN``            the parent page's origin (default: the platform URL's origin)
``KIT_DATABASE_URL``           optional ``postgresql://…``: keep the kit's records there
``BONUS_AMOUNT``               XAG paid per bonus claim (default ``10.00``)
``BONUS_COOLDOWN_S``           seconds between two bonus claims of a player (default ``60``)
``SERVER_ID``                  the ``serverId`` of purchase messages (default ``1``)
``PACK_CURRENCY``              the currency real-money packs are charged in: the partner's
                               ``payment_currency`` at the platform (default ``XAG``)
=============================  ==============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DemoConfig", "origin_of"]

ENV_PREFIX = "QWALLET_DEMO_"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what ``postMessage`` and CSP compare."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an absolute URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class DemoConfig:
    platform_url: str
    username: str
    password: str
    callback_secret: str
    query_username: str
    query_password: str
    data_dir: Path = field(default_factory=lambda: Path("demo-data"))
    platform_origin: str | None = None
    """The origin of the page that embeds the game; None: the origin of ``platform_url``."""
    kit_database_url: str | None = None
    """``postgresql://…`` to keep the kit's records in PostgreSQL; None: ``data_dir/kit.db``."""
    bonus_amount: Decimal = Decimal("10.00")
    bonus_cooldown_s: float = 60.0
    server_id: int = 1
    pack_currency: str = "XAG"
    """What the platform charges packs in (the partner's payment currency); a paid callback in
    another currency, or for another amount, is refused."""
    timeout_s: float = 10.0
    """Per Wallet API call. A withdraw that times out is rolled back, never re-sent."""

    def __post_init__(self) -> None:
        for name in ("platform_url", "username", "password", "callback_secret"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        if not self.query_username or not self.query_password:
            raise ValueError("query_username and query_password are required")
        origin_of(self.platform_url)
        if self.platform_origin is not None:
            origin_of(self.platform_origin)
        if not self.bonus_amount.is_finite() or self.bonus_amount <= 0:
            raise ValueError("bonus_amount must be a positive decimal")
        if self.server_id < 0:
            raise ValueError("server_id must be a non-negative integer")
        if not (3 <= len(self.pack_currency) <= 12 and self.pack_currency.isalnum()):
            raise ValueError("pack_currency must be a currency code (3-12 letters or digits)")
        if self.bonus_cooldown_s < 0 or self.timeout_s <= 0:
            raise ValueError("bonus_cooldown_s must be >= 0 and timeout_s > 0")

    @property
    def origin(self) -> str:
        """The platform page's origin: where purchase messages go, who may frame the game."""
        return origin_of(self.platform_origin or self.platform_url)

    @property
    def kit_db_path(self) -> Path:
        return self.data_dir / "kit.db"

    @property
    def game_db_path(self) -> Path:
        return self.data_dir / "game.db"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> DemoConfig:
        """Read ``QWALLET_DEMO_*``; ``overrides`` (not None) win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        text_fields = (
            "platform_url",
            "username",
            "password",
            "callback_secret",
            "query_username",
            "query_password",
            "platform_origin",
            "kit_database_url",
            "pack_currency",
        )
        for name in text_fields:
            if (value := env.get(ENV_PREFIX + name.upper())) is not None:
                values[name] = value
        if (value := env.get(ENV_PREFIX + "DATA_DIR")) is not None:
            values["data_dir"] = Path(value)
        if (value := env.get(ENV_PREFIX + "BONUS_AMOUNT")) is not None:
            try:
                values["bonus_amount"] = Decimal(value)
            except InvalidOperation:
                raise ValueError(f"{ENV_PREFIX}BONUS_AMOUNT is not a decimal: {value!r}") from None
        if (value := env.get(ENV_PREFIX + "BONUS_COOLDOWN_S")) is not None:
            values["bonus_cooldown_s"] = float(value)
        if (value := env.get(ENV_PREFIX + "SERVER_ID")) is not None:
            values["server_id"] = int(value)
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("platform_url", "http://127.0.0.1:8000")
        values.setdefault("username", "demo")
        missing = [
            name
            for name in ("password", "callback_secret", "query_username", "query_password")
            if not values.get(name)
        ]
        if missing:
            names = ", ".join(ENV_PREFIX + name.upper() for name in missing)
            raise ValueError(f"missing configuration: {names} (or the matching options)")
        return cls(**values)  # type: ignore[arg-type]
