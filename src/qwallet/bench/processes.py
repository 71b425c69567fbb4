"""Processes the benchmark starts (servers) and watches (servers, PostgreSQL): CPU and memory.

Only processes this module started are ever stopped, by their own id.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil  # type: ignore[import-untyped,import-not-found,unused-ignore]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Server:
    """A server subprocess on a loopback port (``qwallet serve`` or the reference app)."""

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], port: int, log_path: Path
    ) -> None:
        self.port = port
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603
            list(argv), env=dict(env), stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout_s: float = 60.0, workers: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.tail()}")
            if _healthy(self.port) and len(self.workers()) >= workers:
                return
            time.sleep(0.2)
        raise RuntimeError(f"server did not become ready in {timeout_s} s: {self.tail()}")

    def tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def processes(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.process.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The processes that serve requests: the children of a supervisor, else the process."""
        processes = self.processes()
        return processes[1:] or processes

    def stop(self) -> None:
        children = self.processes()[1:]
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for child in children:  # started by our process; normally gone with it
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self._log.close()


def cpu_seconds(processes: Sequence[psutil.Process]) -> dict[int, float]:
    times: dict[int, float] = {}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            cpu = process.cpu_times()
            times[process.pid] = cpu.user + cpu.system
    return times


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def postgres_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            found.append(process)
    return found


def peak_rss_mb(process: psutil.Process) -> float:
    """The process's peak resident set (``VmHWM``), else its current one."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    with contextlib.suppress(psutil.NoSuchProcess):
        return float(process.memory_info().rss) / (1024 * 1024)
    return 0.0


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "ram_gb": f"{psutil.virtual_memory().total / 2**30:.1f}",
        "load_average": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


__all__ = [
    "Server",
    "cpu_delta",
    "cpu_seconds",
    "free_port",
    "machine",
    "peak_rss_mb",
    "postgres_processes",
]
