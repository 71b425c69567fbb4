from __future__ import annotations

from pathlib import Path

import pytest

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
