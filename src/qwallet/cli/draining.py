"""A graceful stop that answers every connection the kernel has already accepted.

uvicorn's shutdown closes its listening sockets and at once closes every connection without a
request in progress. Two kinds of client lose their request that way although the server never
refused it:

- a connection the kernel has accepted (its handshake completed) that sits in the listening
  socket's accept queue, not yet taken by the event loop: closing the listener resets it;
- a connection the loop took a moment ago whose request has arrived but is not parsed yet.

Both clients see a reset after sending their request, which they cannot tell from a crash. The
stop here goes in three steps instead: (1) the kernel stops completing new handshakes (on Linux, a
socket filter that admits no packet: a new client's SYN is dropped and retried by its TCP stack,
and meets a closed port — "connection refused", safe to send elsewhere — once the socket closes);
(2) the loop takes what the accept queue still holds; (3) the listener closes and, after
``ACCEPT_GRACE_S``, uvicorn's own shutdown answers what was read (within the drain timeout).
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
import sys
import time
from typing import Any, Protocol

# After the listening sockets close on SIGTERM, this long for requests already on their way over
# accepted connections to be read (loopback or a LAN delivers them in well under a millisecond).
ACCEPT_GRACE_S = 0.25
# The longest the stop waits for the event loop to take the connections left in an accept queue
# (a loop busy with requests takes them within milliseconds).
ACCEPT_QUEUE_DRAIN_S = 1.0

# <linux/filter.h>: one classic BPF instruction, BPF_RET | BPF_K with k = 0, "keep 0 bytes":
# every packet is dropped before TCP sees it. <asm-generic/socket.h>: SO_ATTACH_FILTER = 26.
_SO_ATTACH_FILTER = 26
_DROP_EVERY_PACKET = struct.pack("HBBI", 0x06, 0, 0, 0)
# <linux/tcp.h> struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked.
# For a listening socket the kernel reports its accept-queue length in ``tcpi_unacked``.
_TCPI_UNACKED_OFFSET = 24
_TCP_INFO_SIZE = 104


class _Socket(Protocol):
    def setsockopt(self, level: int, optname: int, value: bytes, /) -> None: ...
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def refuse_new_connections(sock: _Socket) -> bool:
    """Make the kernel drop every new connection attempt to this listening socket, leaving the
    connections it has already accepted in its queue. False where the platform cannot (not
    Linux, or the filter was refused): the caller then closes the socket as before."""
    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(_DROP_EVERY_PACKET, len(_DROP_EVERY_PACKET))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; } (native alignment);
    # the kernel copies the program during the call, so the buffer need not outlive it.
    fprog = struct.pack("HP", 1, ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def accept_queue_length(sock: _Socket) -> int | None:
    """Connections accepted by the kernel and not yet taken by ``accept()`` (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    (queued,) = struct.unpack_from("I", info, _TCPI_UNACKED_OFFSET)
    return int(queued)


async def drain_accept_queues(listeners: list[Any], *, timeout_s: float) -> None:
    """Stop new handshakes on every listening socket of ``listeners`` (asyncio servers), then let
    the running loop take what their accept queues hold, for at most ``timeout_s``."""
    sockets = [sock for listener in listeners for sock in listener.sockets]
    watched = [sock for sock in sockets if refuse_new_connections(sock)]
    deadline = time.monotonic() + timeout_s
    while watched and time.monotonic() < deadline:
        if all(not accept_queue_length(sock) for sock in watched):
            return
        await asyncio.sleep(0.005)  # the loop's accept callback runs meanwhile


def draining_server(config: Any) -> Any:
    """uvicorn's server with the stop described in this module's docstring."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await drain_accept_queues(self.servers, timeout_s=ACCEPT_QUEUE_DRAIN_S)
            for listener in self.servers:
                listener.close()
            for sock in sockets or []:
                sock.close()
            await asyncio.sleep(ACCEPT_GRACE_S)
            await super().shutdown(sockets)

    return DrainingServer(config)
