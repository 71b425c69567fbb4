"""An emulated hardware watchdog for the Patroni test cluster.

docs/high-availability.md prescribes ``watchdog: mode: required`` for production: Patroni opens
``/dev/watchdog`` (the kernel's softdog or a hardware timer) when its node becomes the leader,
sets its timeout to ``ttl - safety_margin`` and writes a keepalive every time it renews the
leader key. If Patroni dies or hangs, the keepalives stop and the timer resets the machine
``safety_margin`` seconds *before* the leader key expires, so an orphaned primary is fenced
before another node is promoted. A clean demotion closes the device with the magic ``V``,
which disarms it.

A test cannot reset the machine it runs on, so this module emulates the device. Patroni runs
with its own test driver (``watchdog: driver: testing``, the one Patroni's acceptance tests
use): instead of ioctls it writes to a named pipe — ``Ctimeout=N`` when it sets the timeout
(on activation), ``1`` for each keepalive, ``V`` on a clean close. ``EmulatedWatchdog`` reads
that pipe and does what the timer does: when an armed device has had no keepalive for its
timeout, it "resets the machine" — SIGKILLs the node's Patroni and PostgreSQL, as a power cut
would — and, like the machine booting again, starts Patroni once more (only after the leader
key can have expired; sooner it would find its own key and lead on). Patroni's side is the
real code: with ``mode: required`` it refuses to promote a node whose watchdog cannot be
activated, and only its own keepalives keep the node alive.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["EmulatedWatchdog"]


class EmulatedWatchdog:
    """The watchdog device of one node: a FIFO at ``path`` and a thread acting as its timer.

    ``reset`` kills the node (Patroni and PostgreSQL) and says whether anything was running;
    ``boot`` starts its Patroni again if it is not running, ``boot_after_s`` after a reset.
    ``resets`` holds the monotonic time of each reset that stopped something (a machine that
    was already down, its Patroni killed with it, is not reset again).
    """

    def __init__(
        self,
        path: Path,
        *,
        reset: Callable[[], bool],
        boot: Callable[[], None],
        boot_after_s: float,
        uid: int,
        gid: int,
    ) -> None:
        self.path = path
        self._reset = reset
        self._boot = boot
        self._boot_after_s = boot_after_s
        self.resets: list[float] = []
        self.timeout_s: float | None = None
        self.last_keepalive: float | None = None
        self._pending = b""
        self._stop = threading.Event()
        os.mkfifo(path, 0o600)
        os.chown(path, uid, gid)
        # Read-write: the open never blocks, and Patroni's write-only open finds a reader.
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watchdog {path}")
        self._thread.start()

    @property
    def armed(self) -> bool:
        return self.timeout_s is not None

    def _feed(self, data: bytes) -> None:
        """Apply what Patroni wrote: ``Ctimeout=N\\n``, ``1`` (keepalive), ``V`` (close)."""
        now = time.monotonic()
        self._pending += data
        while self._pending:
            if self._pending.startswith(b"C"):
                line, newline, rest = self._pending.partition(b"\n")
                if not newline:
                    return  # the rest of the command is still in the pipe
                self._pending = rest
                # Set on activation: the device is open and counting from now.
                self.timeout_s = float(line.removeprefix(b"Ctimeout="))
                self.last_keepalive = now
                continue
            byte, self._pending = self._pending[:1], self._pending[1:]
            if byte == b"V":
                self.timeout_s = self.last_keepalive = None  # magic close: disarmed
            elif self.armed:
                self.last_keepalive = now  # any other write is a keepalive, as for the kernel

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    self._feed(os.read(self._fd, 4096))
            timeout_s, last = self.timeout_s, self.last_keepalive
            if timeout_s is not None and last is not None and time.monotonic() - last > timeout_s:
                self.timeout_s = self.last_keepalive = None
                if self._stop.is_set():
                    return
                now = time.monotonic()
                if self._reset():
                    self.resets.append(now)
                threading.Timer(self._boot_after_s, self._boot_unless_stopped).start()

    def _boot_unless_stopped(self) -> None:
        if not self._stop.is_set():
            self._boot()

    def stop(self) -> None:
        """Stop the timer (no more resets or boots); ``close`` releases the pipe."""
        self._stop.set()
        self._thread.join(5)

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            os.close(self._fd)
