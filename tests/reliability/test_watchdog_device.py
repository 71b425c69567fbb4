"""The failover suite's emulated watchdog device (``watchdog_device.py``), driven the way
Patroni's ``testing`` driver drives it: ``Ctimeout=N`` on activation, ``1`` per keepalive,
``V`` on a clean close."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.reliability.watchdog_device import EmulatedWatchdog


def _device(tmp_path: Path, resets: list[float], boots: list[float]) -> EmulatedWatchdog:
    return EmulatedWatchdog(
        tmp_path / "watchdog",
        reset=lambda: resets.append(time.monotonic()) is None,
        boot=lambda: boots.append(time.monotonic()),
        boot_after_s=0.2,
        uid=os.getuid(),
        gid=os.getgid(),
    )


def test_keepalives_hold_it_off_and_silence_resets_after_the_timeout(tmp_path: Path) -> None:
    resets: list[float] = []
    boots: list[float] = []
    device = _device(tmp_path, resets, boots)
    try:
        writer = os.open(device.path, os.O_WRONLY)
        os.write(writer, b"Ctimeout=1\n")
        for _ in range(6):  # 1.5 s of keepalives, each well within the timeout
            time.sleep(0.25)
            os.write(writer, b"1")
        assert resets == []
        os.close(writer)  # the writer dies without the magic close, as a SIGKILLed Patroni
        silent_from = time.monotonic()
        while not boots and time.monotonic() - silent_from < 5:
            time.sleep(0.05)
        assert len(resets) == 1, resets
        # Not before the timeout from the last keepalive; soon after it (a loaded machine).
        assert 0.9 < resets[0] - silent_from < 2.0
        assert len(boots) == 1 and boots[0] - resets[0] >= 0.2
        assert len(device.resets) == 1 and not device.armed
    finally:
        device.close()


def test_a_clean_close_disarms_it(tmp_path: Path) -> None:
    resets: list[float] = []
    device = _device(tmp_path, resets, [])
    try:
        writer = os.open(device.path, os.O_WRONLY)
        os.write(writer, b"Ctimeout=1\n1V")
        os.close(writer)
        time.sleep(1.5)
        assert resets == [] and not device.armed
    finally:
        device.close()
