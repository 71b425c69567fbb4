"""The load generator: a small HTTP/1.1 keep-alive client on raw asyncio protocols.

Cheap per request on purpose — the generator shares the machine with the server and PostgreSQL,
and every microsecond it spends is one the server does not get. Requests are prebuilt bytes (a
fixed header prefix plus a ``%``-formatted body), responses are parsed only as far as the status
line, ``Content-Length`` and, for money calls, the ``qwTransactionId``.

Two modes:

- **closed loop** (``rate is None``): ``connections`` workers each send the next flow as soon as
  the previous one is answered — the saturation throughput;
- **open loop** (``rate`` flows/s): flow *k* is due at ``t0 + k / rate`` whatever happened before,
  and its latency is measured from that intended time (no coordinated omission: a stalled server
  shows up as queueing delay in the percentiles, as in wrk2).

``run_load`` is the entry point of a generator process (``multiprocessing``, spawn): it builds
everything from a picklable ``LoadSpec`` and answers a picklable ``LoadResult``.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import hashlib
import itertools
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped,import-not-found,unused-ignore]

SCENARIOS = (
    "balance",
    "withdraw",
    "withdraw_confirm",
    "withdraw_rollback",
    "replay",
    "hot_wallet",
    "zipf_mix",
)
"""Every scenario, in the order the benchmark runs them."""

HIST_MAX_US = 60_000_000
AMOUNT = b"0.01"
REPLAY_POOL = 2_000
ZIPF_S = 1.1

Request = tuple[int, bytes]
"""(endpoint, request bytes); the endpoint constants below say how to check the answer."""

BALANCE, WITHDRAW, CONFIRM, ROLLBACK, REPLAY = range(5)
_PATHS = {
    BALANCE: b"/wallet/getBalance",
    WITHDRAW: b"/wallet/withdraw",
    CONFIRM: b"/wallet/confirmWithdrawal",
    ROLLBACK: b"/wallet/rollbackWithdrawal",
    REPLAY: b"/wallet/withdraw",
}
_QW_MARKER = b'"qwTransactionId":"'


def token_for(index: int) -> str:
    """The session token of bench player ``index`` (1-based); the seed SQL computes the same."""
    return str(uuid.UUID(hashlib.md5(f"t{index}".encode(), usedforsecurity=False).hexdigest()))


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    username: str
    password: str
    scenario: str
    players: int
    connections: int
    duration_s: float
    max_requests: int
    warmup_s: float = 0.5
    rate: float | None = None
    tag: str = "x"
    seed: int = 1
    hot_player: int = 1
    replay_pool: int = REPLAY_POOL
    """Withdrawals made (unmeasured) before a replay run, to be replayed."""


@dataclass
class LoadResult:
    scenario: str
    rate: float | None
    flows: int = 0
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    histogram: bytes = b""
    cpu_s: float = 0.0
    acked: list[tuple[str, str, str]] = field(default_factory=list)
    """(mmTransactionId, qwTransactionId, expected state) of every acknowledged withdrawal."""

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def flows_per_s(self) -> float:
        return self.flows / self.elapsed_s if self.elapsed_s else 0.0


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        with contextlib.suppress(OSError, AttributeError):
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        answer = self._parse()
        if answer is not None:
            self._waiter = None
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed by the server"))

    def _parse(self) -> tuple[int, bytes] | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[:end]).lower()
        at = head.find(b"content-length:")
        if at < 0:
            raise ConnectionError("answer without Content-Length")
        line_end = head.find(b"\r\n", at)
        length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        if len(buffer) < total:
            return None
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        return int(head[9:12]), body

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self._transport is not None
        if self.closed:
            raise ConnectionError("connection closed")
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._transport.write(data)
        return waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _Workload:
    """Builds the flows of one scenario; one instance per connection (no shared state)."""

    def __init__(self, spec: LoadSpec, connection_index: int, tokens: list[str]) -> None:
        self._spec = spec
        self._tokens = tokens
        self._rng = random.Random(spec.seed * 1_000_003 + connection_index)
        self._ids = itertools.count(1)
        self._prefix = f"{spec.tag}{connection_index:x}-"
        authorization = base64.b64encode(f"{spec.username}:{spec.password}".encode())
        self._heads = {
            endpoint: b"POST "
            + path
            + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic "
            + authorization
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            for endpoint, path in _PATHS.items()
        }
        self.replayable: list[tuple[bytes, str]] = []
        """(request bytes, qwTransactionId) of withdrawals this connection may replay."""
        self._cumulative: list[float] = []
        if spec.scenario == "zipf_mix":
            total = 0.0
            for rank in range(1, len(tokens) + 1):
                total += 1.0 / rank**ZIPF_S
                self._cumulative.append(total)
        self.flow: Callable[[], list[Request]] = getattr(self, f"_flow_{spec.scenario}")

    def _build(self, endpoint: int, body: bytes) -> Request:
        return endpoint, self._heads[endpoint] + str(len(body)).encode() + b"\r\n\r\n" + body

    def draw(self) -> float:
        return self._rng.random()

    def _token(self) -> str:
        return self._tokens[self._rng.randrange(len(self._tokens))]

    def _zipf_token(self) -> str:
        # Player 1 is the most popular, then 2, …: a few hot wallets and a long tail.
        point = self._rng.random() * self._cumulative[-1]
        return self._tokens[bisect.bisect_left(self._cumulative, point)]

    def _mm_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    def _money(self, token: str, mm_id: str) -> bytes:
        return (
            f'{{"token":"{token}","mmTransactionId":"{mm_id}",'
            f'"amount":{{"amount":{AMOUNT.decode()},"currencyCode":"XAG"}}}}'
        ).encode()

    def _withdraw(self, token: str) -> tuple[Request, str, str]:
        mm_id = self._mm_id()
        return self._build(WITHDRAW, self._money(token, mm_id)), mm_id, token

    def _balance(self, token: str) -> Request:
        return self._build(BALANCE, f'{{"token":"{token}"}}'.encode())

    def confirm_for(self, token: str, mm_id: str) -> Request:
        return self._build(CONFIRM, self._money(token, mm_id))

    def rollback_for(self, token: str, mm_id: str) -> Request:
        body = f'{{"token":"{token}","mmTransactionId":"{mm_id}","rollbackReason":"bench"}}'
        return self._build(ROLLBACK, body.encode())

    # Each flow is a list of requests; a follow-up (confirm, rollback) is built by the caller
    # from the withdrawal's mm id once the withdrawal has been acknowledged.
    def _flow_balance(self) -> list[Request]:
        return [self._balance(self._token())]

    def _flow_withdraw(self) -> list[Request]:
        return [self._withdraw(self._token())[0]]

    _flow_withdraw_confirm = _flow_withdraw
    _flow_withdraw_rollback = _flow_withdraw

    def _flow_hot_wallet(self) -> list[Request]:
        return [self._withdraw(self._tokens[self._spec.hot_player - 1])[0]]

    def _flow_replay(self) -> list[Request]:
        data, _ = self.replayable[self._rng.randrange(len(self.replayable))]
        return [(REPLAY, data)]

    def _flow_zipf_mix(self) -> list[Request]:
        draw = self._rng.random()
        token = self._zipf_token()
        if draw < 0.40:
            return [self._balance(token)]
        if draw < 0.90 or not self.replayable:
            # Followed by confirm (70 %), rollback (20 %) or nothing (10 %, left pending).
            return [self._withdraw(token)[0]]
        data, _ = self.replayable[self._rng.randrange(len(self.replayable))]
        return [(REPLAY, data)]


def _mm_id_of(request: bytes) -> str:
    at = request.index(b'"mmTransactionId":"') + 19
    return request[at : request.index(b'"', at)].decode()


def _token_of(request: bytes) -> str:
    at = request.index(b'"token":"') + 9
    return request[at : request.index(b'"', at)].decode()


class _Runner:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.tokens = [token_for(i) for i in range(1, spec.players + 1)]
        self.histogram = HdrHistogram(1, HIST_MAX_US, 3)
        self.result = LoadResult(spec.scenario, spec.rate)
        self._sent = 0
        self._next_slot = 0
        self._measure_from = 0.0
        self._deadline = 0.0
        self._t0 = 0.0

    def _error(self, what: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < 10:
            self.result.error_samples.append(what[:300])

    async def _send(
        self, connection: _Connection, request: Request, started: float, measured: bool
    ) -> str | None:
        """Send one request; record it; the qwTransactionId of a good money answer, else None."""
        endpoint, data = request
        status, body = await connection.request(data)
        finished = time.perf_counter()
        if measured:
            self.result.requests += 1
            self.histogram.record_value(max(1, int((finished - started) * 1_000_000)))
        ok = status == 200 and b'"errorCode"' not in body
        qw_id = None
        if ok and endpoint != BALANCE:
            at = body.find(_QW_MARKER)
            ok = at >= 0
            if ok:
                qw_id = body[at + 19 : body.index(b'"', at + 19)].decode()
        elif ok:
            ok = b'"balance"' in body
        if not ok:
            if measured:
                self._error(f"{status} {body!r}")
            return None
        return qw_id

    async def _flow(self, workload: _Workload, connection: _Connection, started: float) -> None:
        now = time.perf_counter()
        measured = now >= self._measure_from
        scenario = self.spec.scenario
        for request in workload.flow():
            qw_id = await self._send(connection, request, started, measured)
            if qw_id is None:
                continue
            endpoint, data = request
            if endpoint == REPLAY:
                if not any(qw == qw_id for d, qw in workload.replayable if d is data):
                    self._error(f"replay answered another qwTransactionId {qw_id}")
                continue
            if endpoint != WITHDRAW:
                continue
            mm_id = _mm_id_of(data)
            state = "pending"
            follow: Request | None = None
            token = _token_of(data)
            draw = workload.draw() if scenario == "zipf_mix" else 0.0
            if scenario == "withdraw_confirm" or (scenario == "zipf_mix" and draw < 0.7):
                follow, state = workload.confirm_for(token, mm_id), "confirmed"
            elif scenario == "withdraw_rollback" or (scenario == "zipf_mix" and draw < 0.9):
                follow, state = workload.rollback_for(token, mm_id), "rolled_back"
            if follow is not None:
                again = await self._send(connection, follow, time.perf_counter(), measured)
                if again != qw_id:
                    state = "pending"  # not acknowledged: leave it out of the check below
                    if again is not None:
                        self._error(f"follow-up answered {again}, expected {qw_id}")
                    continue
            self.result.acked.append((mm_id, qw_id, state))
            if scenario == "zipf_mix" and len(workload.replayable) < 64 and state != "rolled_back":
                workload.replayable.append((data, qw_id))
        if measured:
            self.result.flows += 1

    async def _prepare_replays(self, workload: _Workload, connection: _Connection) -> None:
        share = max(1, self.spec.replay_pool // self.spec.connections)
        for _ in range(share):
            request, mm_id, _token = workload._withdraw(workload._token())
            qw_id = await self._send(connection, request, time.perf_counter(), False)
            if qw_id is None:
                raise RuntimeError("replay preparation: a withdrawal failed")
            self.result.acked.append((mm_id, qw_id, "pending"))
            workload.replayable.append((request[1], qw_id))

    async def _closed_worker(self, workload: _Workload, connection: _Connection) -> None:
        while True:
            now = time.perf_counter()
            if now >= self._deadline or self._sent >= self.spec.max_requests:
                return
            self._sent += 1
            await self._flow(workload, connection, now)

    async def _open_worker(self, workload: _Workload, connection: _Connection) -> None:
        assert self.spec.rate is not None
        interval = 1.0 / self.spec.rate
        while True:
            slot = self._next_slot
            self._next_slot += 1
            due = self._t0 + slot * interval
            if due >= self._deadline or slot >= self.spec.max_requests:
                return
            delay = due - time.perf_counter()
            # Timers have millisecond granularity: wake up to 1 ms early and send then. Latency
            # is measured from the earlier of the intended and the actual send time, so an
            # early send is never flattered and a late one is charged from its intended time.
            if delay > 0.001:
                await asyncio.sleep(delay - 0.001)
            await self._flow(workload, connection, min(due, time.perf_counter()))

    async def run(self) -> LoadResult:
        spec = self.spec
        loop = asyncio.get_running_loop()
        connections: list[_Connection] = []
        for _ in range(spec.connections):
            _, protocol = await loop.create_connection(_Connection, spec.host, spec.port)
            connections.append(protocol)
        workloads = [_Workload(spec, i, self.tokens) for i in range(spec.connections)]
        if spec.scenario == "replay":
            await asyncio.gather(*map(self._prepare_replays, workloads, connections))
        cpu_started = time.process_time()
        self._t0 = time.perf_counter()
        self._measure_from = self._t0 + spec.warmup_s
        self._deadline = self._measure_from + spec.duration_s
        worker = self._closed_worker if spec.rate is None else self._open_worker
        tasks = [
            asyncio.ensure_future(worker(w, c)) for w, c in zip(workloads, connections, strict=True)
        ]
        failures = await asyncio.gather(*tasks, return_exceptions=True)
        ended = time.perf_counter()
        for failure in failures:
            if isinstance(failure, BaseException):
                self._error(f"worker failed: {failure!r}")
        for connection in connections:
            connection.close()
        self.result.elapsed_s = max(1e-9, min(ended, self._deadline) - self._measure_from)
        self.result.cpu_s = time.process_time() - cpu_started
        self.result.histogram = self.histogram.encode()
        return self.result


def run_load(spec: LoadSpec) -> LoadResult:
    """Entry point of a generator process."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        pass
    os.environ.setdefault("PYTHONHASHSEED", "0")
    return asyncio.run(_Runner(spec).run())


def decode_histogram(encoded: bytes) -> HdrHistogram:
    histogram = HdrHistogram(1, HIST_MAX_US, 3)
    if encoded:
        histogram.add(HdrHistogram.decode(encoded))
    return histogram


__all__ = [
    "REPLAY_POOL",
    "SCENARIOS",
    "LoadResult",
    "LoadSpec",
    "decode_histogram",
    "run_load",
    "token_for",
]
