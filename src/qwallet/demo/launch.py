"""The launcher of ``qwallet demo``: the platform and the demo game backend together, on loopback.

Two child processes, both ours to stop:

1. ``qwallet serve --json`` on the embedded SQLite with demo data. Its one JSON line carries the
   fresh demo credentials (Wallet API password, player sign-in, operator key, and whatever admin
   sign-in the demo seed provides).
2. ``qwallet demo-partner``, the demo game backend (``qwallet.demo.game``), started after the demo
   partner has been pointed at it in the platform's database: ``client_url``, ``callback_url``,
   ``query_url``, a fresh ``callback_secret`` and Query Withdrawal credentials; it is a sandbox
   partner (wallet and sandbox card), priced in XAG, with its loopback plain-http callback
   allowed. The same values
   reach the demo-partner process through its environment (``QWALLET_DEMO_*``, see
   ``demo_partner_environment``).

Both children write their logs to files in ``qwallet-data/logs/`` (``LOG_FILES``), as text
unless ``--log-format json``: the terminal shows only ``qwallet demo``'s sign-in box, and a child
that stops shows the end of its log there (``log_tail``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from qwallet.service import demo
from qwallet.store.sql import SqlDatabase

DEMO_PARTNER = demo.DEMO_PARTNER
# The game's own paths (``qwallet.demo.game``), restated so that the launcher does not load the
# game: a test holds the two equal.
CALLBACK_PATH = "/pay/quantum"  # the documentation's example path
QUERY_PATH = "/query-withdrawal"
GAME_PACKAGE = "qwallet.demo.game"
LOG_DIR = Path("qwallet-data") / "logs"
LOG_FILES = {"platform": LOG_DIR / "platform.log", "game": LOG_DIR / "demo-game.log"}


class DemoUnavailable(RuntimeError):
    """The demo game backend is not part of this installation."""


@dataclass(frozen=True, slots=True)
class DemoPartnerConfig:
    base_url: str
    callback_secret: str
    query_username: str
    query_password: str

    @property
    def client_url(self) -> str:
        return f"{self.base_url}/"

    @property
    def callback_url(self) -> str:
        return f"{self.base_url}{CALLBACK_PATH}"

    @property
    def query_url(self) -> str:
        return f"{self.base_url}{QUERY_PATH}"

    @classmethod
    def fresh(cls, host: str, port: int) -> DemoPartnerConfig:
        return cls(
            f"http://{host}:{port}",
            secrets.token_urlsafe(24),
            "qwallet",
            secrets.token_urlsafe(24),
        )


def demo_partner_available() -> bool:
    return importlib.util.find_spec(GAME_PACKAGE) is not None


async def configure_demo_partner(
    db: SqlDatabase, config: DemoPartnerConfig, *, partner: str = DEMO_PARTNER
) -> None:
    await demo.point_demo_partner(
        db,
        client_url=config.client_url,
        callback_url=config.callback_url,
        query_url=config.query_url,
        callback_secret=config.callback_secret,
        query_username=config.query_username,
        query_password=config.query_password,
        now_ms=int(time.time() * 1000),
        partner=partner,
    )


def demo_partner_environment(
    config: DemoPartnerConfig, platform_url: str, serve_info: dict[str, Any]
) -> dict[str, str]:
    """What the demo-partner process needs to reach the platform and check its calls."""
    return {
        "QWALLET_DEMO_PLATFORM_URL": platform_url,
        "QWALLET_DEMO_USERNAME": str(serve_info["username"]),
        "QWALLET_DEMO_PASSWORD": str(serve_info["password"]),
        "QWALLET_DEMO_CALLBACK_SECRET": config.callback_secret,
        "QWALLET_DEMO_QUERY_USERNAME": config.query_username,
        "QWALLET_DEMO_QUERY_PASSWORD": config.query_password,
        "QWALLET_DEMO_PLATFORM_ORIGIN": platform_url,
        # Beside the platform's embedded database, so one folder holds the whole demo.
        "QWALLET_DEMO_DATA_DIR": str(Path("qwallet-data") / "demo-game"),
    }


def qwallet_command() -> list[str]:
    script = Path(sys.executable).parent / "qwallet"
    return [str(script)] if script.exists() else [sys.executable, "-m", "qwallet.cli"]


def start_platform(
    port: int, env: dict[str, str], log: IO[str]
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start ``qwallet serve --json`` logging to ``log``; return it and its demo credentials."""
    arguments = ["serve", "--host", "127.0.0.1", "--port", str(port), "--demo", "--json"]
    process = subprocess.Popen(  # noqa: S603 - our own executable, fixed arguments
        [*qwallet_command(), *arguments],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
    except BaseException:  # interrupted while it starts: it is not the caller's to stop yet
        stop(process)
        raise
    if not line:
        process.wait(10)
        raise RuntimeError(f"qwallet serve exited with {process.returncode}")
    return process, json.loads(line)


def start_demo_partner(port: int, env: dict[str, str], log: IO[str]) -> subprocess.Popen[str]:
    """Start ``qwallet demo-partner``; everything it prints goes to ``log``."""
    return subprocess.Popen(  # noqa: S603 - our own executable, fixed arguments
        [*qwallet_command(), "demo-partner", "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        text=True,
        env=env,
    )


def open_log(path: Path) -> IO[str]:
    """A fresh log file for one child (the previous run's is replaced), readable by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    return os.fdopen(descriptor, "w", encoding="utf-8", buffering=1)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until_up(url: str, timeout_s: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}
