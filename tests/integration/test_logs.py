"""``qwallet serve --log-format auto|json|text`` as a real process: what a person at a terminal
and what a log collector read on its stderr."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from qwallet.demo.launch import qwallet_command
from tests.conftest import free_port

TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARNING|ERROR|CRITICAL) \S+ .+")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTUP_TIMEOUT_S = 30.0


def serve_stderr(
    tmp_path: Path, *options: str, env: dict[str, str] | None = None, terminal: bool = False
) -> list[str]:
    """Start ``qwallet serve`` on a fresh SQLite file, wait until it answers, stop it with
    SIGTERM and return the lines it wrote on stderr (a pseudo-terminal when ``terminal``)."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "QWALLET_LOG_FORMAT")}
    environment = {
        **inherited,
        "QWALLET_DATABASE_URL": f"sqlite:///{tmp_path / 'qwallet.db'}",
        "QWALLET_HOLD_RESOLVER_INTERVAL_S": "0",
        **(env or {}),
    }
    log = tmp_path / "stderr.log"
    leader, follower = pty.openpty() if terminal else (-1, -1)
    with log.open("w") as file:
        process = subprocess.Popen(
            [*qwallet_command(), "serve", "--port", str(port), "--no-demo", *options],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=follower if terminal else file,
        )
    output = b""
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert process.poll() is None, f"serve exited with {process.returncode}"
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        if terminal:
            os.close(follower)
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's other side is closed and drained
                    break
                if not chunk:
                    break
                output += chunk
            os.close(leader)
    text = output.decode() if terminal else log.read_text()
    lines = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
    assert any("Application startup complete" in line for line in lines), lines
    assert any("Shutting down" in line for line in lines), lines
    return lines


def assert_json_lines(lines: list[str]) -> None:
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= entry.keys(), entry


def assert_text_lines(lines: list[str], *, coloured: bool) -> None:
    for line in lines:
        assert bool(ANSI.search(line)) is coloured, repr(line)
        assert TEXT_LINE.match(ANSI.sub("", line)), repr(line)
        assert not line.lstrip().startswith("{"), line


def test_json_format_writes_one_object_per_line(tmp_path: Path) -> None:
    assert_json_lines(serve_stderr(tmp_path, "--log-format", "json"))


def test_text_format_writes_plain_lines_to_a_file(tmp_path: Path) -> None:
    lines = serve_stderr(tmp_path, "--log-format", "text")
    assert_text_lines(lines, coloured=False)
    assert any(" INFO  uvicorn.error Application startup complete." in line for line in lines)


def test_auto_is_json_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    assert_json_lines(serve_stderr(tmp_path))


def test_auto_is_coloured_text_on_a_terminal(tmp_path: Path) -> None:
    assert_text_lines(serve_stderr(tmp_path, terminal=True), coloured=True)


def test_no_color_on_a_terminal_gives_plain_text(tmp_path: Path) -> None:
    lines = serve_stderr(tmp_path, "--log-format", "text", env={"NO_COLOR": "1"}, terminal=True)
    assert_text_lines(lines, coloured=False)


def test_the_environment_variable_chooses_the_format(tmp_path: Path) -> None:
    assert_text_lines(serve_stderr(tmp_path, env={"QWALLET_LOG_FORMAT": "text"}), coloured=False)


def test_an_unknown_format_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [*qwallet_command(), "serve", "--no-demo", "--log-format", "xml"],
        env={**os.environ, "QWALLET_DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--log-format" in done.stderr and "xml" in done.stderr
    assert not (tmp_path / "q.db").exists()


@pytest.mark.parametrize("workers", [2])
def test_workers_log_in_the_chosen_format(tmp_path: Path, workers: int) -> None:
    lines = serve_stderr(tmp_path, "--log-format", "text", "--workers", str(workers))
    assert_text_lines(lines, coloured=False)
    assert sum("Application startup complete" in line for line in lines) >= workers
