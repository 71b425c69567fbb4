"""The first step of a graceful stop, on real sockets: once new handshakes are refused, a client
already in the accept queue is still taken, and a new one is refused instead of being reset
after it has sent its request (``qwallet.cli.draining``)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import pytest

from qwallet.cli.draining import accept_queue_length, drain_accept_queues, refuse_new_connections

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux socket filter")


def _listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener


def test_a_queued_connection_is_kept_and_a_new_one_is_refused() -> None:
    listener = _listener()
    port = listener.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port), timeout=2)
    queued.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # sent, not yet accepted by anyone
    assert accept_queue_length(listener) == 1
    assert refuse_new_connections(listener)

    late = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    late.settimeout(0.3)
    with pytest.raises(TimeoutError):  # its SYN is dropped: no handshake, nothing sent
        late.connect(("127.0.0.1", port))
    late.close()

    taken, _ = listener.accept()  # the connection from before the filter is intact
    assert taken.recv(100).startswith(b"GET / ")
    assert accept_queue_length(listener) == 0
    listener.close()
    # With the listener gone, a client is refused outright: safe to retry on another server.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    taken.close()
    queued.close()


def test_the_stop_waits_until_the_loop_has_taken_the_queue() -> None:
    async def scenario() -> tuple[int, int | None, float]:
        accepted: list[asyncio.StreamWriter] = []

        async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, backlog=16)
        port = server.sockets[0].getsockname()[1]
        # Handshakes complete in the kernel while the loop is kept busy (time.sleep blocks it).
        clients = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(5)]
        time.sleep(0.05)  # noqa: ASYNC251 -- blocking on purpose: the loop must not accept yet
        queued_before = accept_queue_length(server.sockets[0])
        started = time.monotonic()
        await drain_accept_queues([server], timeout_s=2.0)
        waited_s = time.monotonic() - started
        await asyncio.sleep(0)  # let the connection callbacks record themselves
        server.close()
        for writer in accepted:
            writer.close()
        for client in clients:
            client.close()
        return len(accepted), queued_before, waited_s

    taken, queued_before, waited_s = asyncio.run(scenario())
    assert queued_before == 5
    assert taken == 5
    assert waited_s < 1.0
