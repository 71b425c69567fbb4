"""The reliability harness: real server processes, retrying callers, a history checker.

Every suite here drives ``qwallet serve`` (or the app in-process) over loopback with callers that
behave exactly as the contract allows a partner to: the same call with the same
``mmTransactionId`` is repeated after a transport error, HTTP 500 (code 100), 134 or 429, and a
withdrawal that did not succeed is rolled back. Every successful answer a caller received is
*acknowledged*: afterwards the database must hold it exactly once, in the state the caller's last
answer announced, with the balance that answer reported.

Sizes: a CI-sized default, and a long mode behind ``QWALLET_LONG=1``. Each test appends one
record per run to the JSON-lines file named by ``QWALLET_VERIFY_RESULTS`` (``qwallet verify``
turns them into ``docs/reliability.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from qwallet.clock import SystemClock
from qwallet.service import partners, players, sessions
from qwallet.settings import Settings
from qwallet.store.factory import open_store

LONG = os.environ.get("QWALLET_LONG") == "1"
QWALLET = str(Path(sys.executable).parent / "qwallet")
CENTS = 100  # XAG has two decimals

# Rate limits high enough that load tests measure the wallet, not the limiter (see test_security).
LOAD_ENV = {
    "QWALLET_RATE_LIMIT_PARTNER_RPS": "1000000",
    "QWALLET_RATE_LIMIT_PLAYER_RPS": "1000000",
}


def scale(ci: int, long: int) -> int:
    return long if LONG else ci


def record_result(
    suite: str,
    backend: str,
    *,
    runs: int = 1,
    operations: int,
    faults: int,
    failures: int,
    invariant_checks: int,
    echo: bool = True,
    **extra: Any,
) -> None:
    """Append one run's figures for ``qwallet verify``; a no-op outside it. ``echo`` also prints
    them (a test's captured output); off for records written outside any test's capture."""
    path = os.environ.get("QWALLET_VERIFY_RESULTS")
    entry = {
        "suite": suite,
        "backend": backend,
        "mode": "long" if LONG else "ci",
        "runs": runs,
        "operations": operations,
        "faults": faults,
        "failures": failures,
        "invariantChecks": invariant_checks,
        **extra,
    }
    if echo:
        print(f"[reliability] {json.dumps(entry)}")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the server as a real process ---------------------------------------------------------------


class ServerProcess:
    """``qwallet serve --no-demo`` on a loopback port; killed with SIGKILL, restarted on the same
    port. Only this process (and its own children, one process group) is ever signalled."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        log_level: str = "warning",
    ) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.workers = workers
        self.log_level = log_level
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("QWALLET_")},
            "QWALLET_DATABASE_URL": database_url,
            **LOAD_ENV,
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self, timeout_s: float = 60) -> None:
        assert self.process is None or self.process.poll() is not None
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    QWALLET,
                    "serve",
                    "--no-demo",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    "--log-level",
                    self.log_level,
                ],
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: a kill reaches its workers too
            )
        self.starts += 1
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout_s} s: {self.tail()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL, as a crashed machine or the OOM killer would."""
        assert self.process is not None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.kills += 1
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return ""


# -- test data -----------------------------------------------------------------------------------


@dataclass
class Player:
    player_id: str
    token: str
    initial_minor: int


@dataclass
class World:
    partner_id: int
    username: str
    password: str
    players: list[Player]


def provision(database_url: str, player_count: int, balance_minor: int) -> World:
    """One partner and ``player_count`` players with live sessions (system clock, 24 h)."""
    settings = Settings(database_url=database_url)
    xag = settings.currency_registry["XAG"]
    now = SystemClock().now_ms

    async def build() -> World:
        store = await open_store(settings)
        try:
            credential = await partners.create_partner(
                store, f"reliability-{random.getrandbits(32):08x}", now()
            )
            async with store.transaction() as tx:
                row = await tx.fetchrow(
                    "SELECT id FROM partners WHERE name = $1", credential.partner
                )
                assert row is not None
            made: list[Player] = []
            for _ in range(player_count):
                player_id = await players.create_player(
                    store, xag, now(), balance_minor=balance_minor
                )
                issued = await sessions.create_session(
                    store,
                    player_id=player_id,
                    partner=credential.partner,
                    now_ms=now(),
                    idle_timeout_s=settings.session_idle_timeout_s,
                    lifetime_s=settings.session_lifetime_s,
                )
                made.append(Player(player_id, issued.token, balance_minor))
            return World(int(row["id"]), credential.username, credential.password, made)
        finally:
            await store.close()

    return asyncio.run(build())


def amount_text(minor: int) -> str:
    return f"{minor // CENTS}.{minor % CENTS:02d}"


def amount_minor(value: Any) -> int:
    """A JSON amount as parsed by json (float) → minor units, exactly for two decimals."""
    return round(float(value) * CENTS)


# -- the retrying caller -------------------------------------------------------------------------


RETRYABLE_CODES = {100, 134, 104}


@dataclass
class Ack:
    """One successful answer a caller received."""

    endpoint: str
    mm_transaction_id: str
    qw_transaction_id: str
    balance_minor: int
    attempts: int


@dataclass
class Flow:
    """One partner-side transaction: begin, then confirm or rollback, with every answer."""

    player: Player
    kind: str  # "withdrawal" | "deposit"
    mm_transaction_id: str
    amount_minor: int
    acks: list[Ack] = field(default_factory=list)
    begin_error: int | None = None
    final: str | None = None  # "confirmed" | "rolled_back" once a final answer was acknowledged
    retries: int = 0
    transport_errors: int = 0


class CallFailed(Exception):
    pass


@dataclass
class CallerStats:
    calls: int = 0
    attempts: int = 0
    transport_errors: int = 0
    http_500: int = 0
    code_134: int = 0
    code_429: int = 0
    max_latency_s: float = 0.0
    codes: dict[int, int] = field(default_factory=lambda: defaultdict(int))


class Caller:
    """Sends Wallet API calls the way the contract allows a partner to retry them."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        stats: CallerStats,
        *,
        call_deadline_s: float = 90.0,
        on_transport_error: Any = None,
    ) -> None:
        self.client = client
        self.stats = stats
        self.call_deadline_s = call_deadline_s
        self.on_transport_error = on_transport_error

    async def once(self, endpoint: str, body: bytes) -> tuple[int | None, dict[str, Any] | None]:
        """One attempt: (status, body) or (None, None) on a transport error."""
        self.stats.attempts += 1
        started = time.monotonic()
        try:
            response = await self.client.post(
                f"/wallet/{endpoint}", content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError:
            self.stats.transport_errors += 1
            if self.on_transport_error is not None:
                self.on_transport_error()
            return None, None
        finally:
            self.stats.max_latency_s = max(self.stats.max_latency_s, time.monotonic() - started)
        try:
            payload = response.json()
        except ValueError:
            payload = {"errorCode": -1, "raw": response.text}
        code = int(payload.get("errorCode", 0)) if isinstance(payload, dict) else -1
        self.stats.codes[code] += 1
        if response.status_code == 500:
            self.stats.http_500 += 1
        if code == 134:
            self.stats.code_134 += 1
        if response.status_code == 429:
            self.stats.code_429 += 1
        return response.status_code, payload

    async def call(
        self, endpoint: str, body: bytes, *, max_attempts: int | None = None
    ) -> tuple[int, dict[str, Any], int]:
        """Repeat the same call until it gets a definite answer: (status, body, attempts).

        Definite: anything but a transport error, HTTP 500, 134 or 429. Raises ``CallFailed``
        after ``max_attempts`` indefinite answers or past the deadline.
        """
        self.stats.calls += 1
        deadline = time.monotonic() + self.call_deadline_s
        delay = 0.02
        attempt = 0
        while True:
            attempt += 1
            status, payload = await self.once(endpoint, body)
            if status is not None and payload is not None:
                code = int(payload.get("errorCode", 0))
                if status != 500 and code not in RETRYABLE_CODES:
                    return status, payload, attempt
            if max_attempts is not None and attempt >= max_attempts:
                raise CallFailed(f"{endpoint}: no definite answer after {attempt} attempts")
            if time.monotonic() > deadline:
                raise CallFailed(f"{endpoint}: no definite answer within {self.call_deadline_s} s")
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.5)


def money_body(token: str, mm_id: str, amount_minor: int | None, **extra: str) -> bytes:
    body: dict[str, Any] = {"token": token, "mmTransactionId": mm_id, **extra}
    text = json.dumps(body)
    if amount_minor is not None:
        text = (
            text[:-1]
            + f', "amount": {{"amount": {amount_text(amount_minor)}, "currencyCode": "XAG"}}}}'
        )
    return text.encode()


ENDPOINTS = {
    ("withdrawal", "begin"): "withdraw",
    ("withdrawal", "confirm"): "confirmWithdrawal",
    ("withdrawal", "rollback"): "rollbackWithdrawal",
    ("deposit", "begin"): "deposit",
    ("deposit", "confirm"): "confirmDeposit",
    ("deposit", "rollback"): "rollbackDeposit",
}


async def run_flow(
    caller: Caller,
    flow: Flow,
    rng: random.Random,
    *,
    confirm_share: float = 0.7,
    rollback_on_first_failure: float = 0.5,
    think_s: float = 0.0,
) -> None:
    """Begin once (retried on indefinite answers, or rolled back at the first failure as the
    documentation describes), then confirm or roll back, retried until acknowledged."""
    begin = money_body(flow.player.token, flow.mm_transaction_id, flow.amount_minor)
    begin_endpoint = ENDPOINTS[(flow.kind, "begin")]
    give_up_early = rng.random() < rollback_on_first_failure
    succeeded = False
    try:
        status, payload, attempts = await caller.call(
            begin_endpoint, begin, max_attempts=1 if give_up_early else None
        )
        flow.retries += attempts - 1
        if status == 200 and "errorCode" not in payload:
            succeeded = True
            flow.acks.append(_ack(begin_endpoint, payload, attempts))
        else:
            flow.begin_error = int(payload.get("errorCode", -1))
    except CallFailed:
        flow.begin_error = -1  # outcome unknown: the documentation says roll it back
    if think_s:
        await asyncio.sleep(rng.uniform(0, think_s))
    confirm = succeeded and rng.random() < confirm_share
    if confirm:
        endpoint = ENDPOINTS[(flow.kind, "confirm")]
        body = money_body(flow.player.token, flow.mm_transaction_id, flow.amount_minor)
    else:
        endpoint = ENDPOINTS[(flow.kind, "rollback")]
        body = money_body(
            flow.player.token, flow.mm_transaction_id, None, rollbackReason="reliability"
        )
    status, payload, attempts = await caller.call(endpoint, body)
    flow.retries += attempts - 1
    if status != 200 or "errorCode" in payload:
        raise AssertionError(f"{endpoint} {flow.mm_transaction_id} refused: {status} {payload}")
    flow.acks.append(_ack(endpoint, payload, attempts))
    flow.final = "confirmed" if confirm else "rolled_back"


def _ack(endpoint: str, payload: dict[str, Any], attempts: int) -> Ack:
    return Ack(
        endpoint,
        str(payload["mmTransactionId"]),
        str(payload["qwTransactionId"]),
        amount_minor(payload["balance"]["amount"]),
        attempts,
    )


# -- the history checker -------------------------------------------------------------------------


@dataclass
class History:
    transactions: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    players: dict[str, dict[str, Any]]


def load_history(database_url: str) -> History:
    async def load() -> History:
        store = await open_store(Settings(database_url=database_url))
        try:
            async with store.transaction() as tx:
                transactions = await tx.fetch("SELECT * FROM transactions")
                entries = await tx.fetch("SELECT * FROM ledger_entries ORDER BY id")
                rows = await tx.fetch("SELECT * FROM players")
            return History(transactions, entries, {str(r["id"]): r for r in rows})
        finally:
            await store.close()

    return asyncio.run(load())


def reconcile_cli(database_url: str) -> dict[str, Any]:
    result = subprocess.run(
        [QWALLET, "reconcile", "--json"],
        env={**os.environ, "QWALLET_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    report["exitCode"] = result.returncode
    return report


@dataclass
class Verdict:
    checks: int = 0
    problems: list[str] = field(default_factory=list)
    holds: int = 0  # transactions of this world that were opened (a hold or a pending deposit)
    holds_pending: int = 0  # of those, still pending in the final state

    def check(self, condition: bool, message: str) -> None:
        self.checks += 1
        if not condition and len(self.problems) < 50:
            self.problems.append(message)


def check_history(
    database_url: str, world: World, flows: list[Flow], *, all_final: bool = True
) -> Verdict:
    """Every invariant the suites share, from the database after the load.

    - every acknowledged answer is in the database exactly once, with its qwTransactionId, in the
      state the caller's last answer announced, with the balance that answer reported;
    - all answers for one mmTransactionId name the same qwTransactionId (replays are replays);
    - no transaction is left pending (``all_final``): every hold was finalized by its caller;
    - the database holds no transaction no caller sent;
    - each wallet's balances follow from its initial balance and the final states (nothing was
      applied twice), and no balance is negative;
    - replaying each wallet's ledger in order reproduces the balance of every acknowledged answer;
    - the ledger sums to zero over all wallets, partner and operator accounts (money conserved);
    - ``qwallet reconcile`` is clean.
    """
    verdict = Verdict()
    history = load_history(database_url)
    mine = [t for t in history.transactions if int(t["partner_id"]) == world.partner_id]
    verdict.holds = sum(1 for t in mine if t["begin_balance_minor"] is not None)
    verdict.holds_pending = sum(1 for t in mine if t["state"] == "pending")
    by_key = {
        (int(t["partner_id"]), str(t["kind"]), str(t["mm_transaction_id"])): t
        for t in history.transactions
    }
    qw_ids = [str(t["qw_transaction_id"]) for t in history.transactions]
    verdict.check(len(qw_ids) == len(set(qw_ids)), "duplicate qwTransactionId rows")
    verdict.check(len(by_key) == len(history.transactions), "duplicate (partner, kind, mm id) rows")
    known = {(world.partner_id, f.kind, f.mm_transaction_id) for f in flows}
    for key in by_key:
        if key[0] == world.partner_id:
            verdict.check(key in known, f"transaction no caller sent: {key}")
    expected_available = {p.player_id: p.initial_minor for p in world.players}
    for flow in flows:
        row = by_key.get((world.partner_id, flow.kind, flow.mm_transaction_id))
        if all_final:
            verdict.check(flow.final is not None, f"{flow.mm_transaction_id} never finalized")
        if flow.final is not None:
            verdict.check(row is not None, f"acknowledged {flow.mm_transaction_id} missing")
        if row is None:
            continue
        qw = {ack.qw_transaction_id for ack in flow.acks}
        verdict.check(len(qw) <= 1, f"{flow.mm_transaction_id}: several qw ids {qw}")
        if qw:
            verdict.check(
                str(row["qw_transaction_id"]) in qw,
                f"{flow.mm_transaction_id}: acknowledged {qw}, stored {row['qw_transaction_id']}",
            )
        if flow.final is not None:
            verdict.check(
                row["state"] == flow.final,
                f"{flow.mm_transaction_id}: caller was told {flow.final}, stored {row['state']}",
            )
        if all_final:
            verdict.check(row["state"] != "pending", f"{flow.mm_transaction_id} still pending")
        for ack in flow.acks:
            stored = (
                row["begin_balance_minor"]
                if ack.endpoint in ("withdraw", "deposit")
                else row["final_balance_minor"]
            )
            verdict.check(
                stored is not None and int(stored) == ack.balance_minor,
                f"{flow.mm_transaction_id} {ack.endpoint}: answered {ack.balance_minor}, "
                f"recorded {stored}",
            )
        if row["amount_minor"] is not None:
            verdict.check(
                int(row["amount_minor"]) == flow.amount_minor,
                f"{flow.mm_transaction_id}: amount {row['amount_minor']} != {flow.amount_minor}",
            )
        if row["state"] == "confirmed":
            sign = -1 if flow.kind == "withdrawal" else 1
            expected_available[flow.player.player_id] += sign * flow.amount_minor
        elif row["state"] == "pending" and flow.kind == "withdrawal":
            expected_available[flow.player.player_id] -= flow.amount_minor
    for player in world.players:
        stored = history.players[player.player_id]
        verdict.check(
            int(stored["available_minor"]) == expected_available[player.player_id],
            f"{player.player_id}: available {stored['available_minor']}, "
            f"expected {expected_available[player.player_id]}",
        )
        for column in ("available_minor", "held_minor", "pending_in_minor"):
            verdict.check(int(stored[column]) >= 0, f"{player.player_id}: negative {column}")
        if all_final:
            verdict.check(
                int(stored["held_minor"]) == 0 and int(stored["pending_in_minor"]) == 0,
                f"{player.player_id}: holds left",
            )
    _check_ledger_replay(history, flows, verdict)
    totals: dict[str, int] = defaultdict(int)
    for entry in history.entries:
        totals[str(entry["currency"])] += int(entry["amount_minor"])
    verdict.check(all(v == 0 for v in totals.values()), f"ledger does not sum to zero: {totals}")
    report = reconcile_cli(database_url)
    verdict.check(report["ok"] is True and report["exitCode"] == 0, f"reconcile: {report}")
    return verdict


def _check_ledger_replay(history: History, flows: list[Flow], verdict: Verdict) -> None:
    """Walk each wallet's entries in commit order; each step's running ``available`` must be the
    balance its acknowledged answer reported (the wallet row lock orders a wallet's entries)."""
    transaction_player = {
        str(t["qw_transaction_id"]): str(t["player_id"]) for t in history.transactions
    }
    running: dict[str, int] = defaultdict(int)
    after_step: dict[tuple[str, str], int] = {}
    for entry in history.entries:
        owner = entry["transaction_id"]
        player = transaction_player.get(str(owner)) if owner is not None else entry.get("player_id")
        if player is None:
            continue
        if entry["account"] == "available" and entry["player_id"] is not None:
            running[str(entry["player_id"])] += int(entry["amount_minor"])
        if owner is not None:
            after_step[(str(owner), str(entry["phase"]))] = running[player]
    phases = {
        "withdraw": "begin",
        "deposit": "begin",
        "confirmWithdrawal": "confirm",
        "confirmDeposit": "confirm",
        "rollbackWithdrawal": "rollback",
        "rollbackDeposit": "rollback",
    }
    for flow in flows:
        for ack in flow.acks:
            step = (ack.qw_transaction_id, phases[ack.endpoint])
            if step in after_step:
                verdict.check(
                    after_step[step] == ack.balance_minor,
                    f"{flow.mm_transaction_id} {ack.endpoint}: answered {ack.balance_minor}, "
                    f"ledger says {after_step[step]} at that step",
                )
