from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from qwallet.partner import (
    FakeClock,
    InMemoryWallet,
    PartnerKit,
    RetrySchedule,
    SQLiteStore,
    WalletClient,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "kit.db"


def make_kit(
    wallet: InMemoryWallet,
    db_path: Path,
    clock: FakeClock,
    schedule: RetrySchedule | None = None,
) -> PartnerKit:
    client = WalletClient("http://platform.test", "partner", "secret", transport=wallet.transport)
    return PartnerKit(client, SQLiteStore(db_path), clock=clock, schedule=schedule)


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
