"""The database ceiling: ``pgbench`` running the exact SQL functions the server calls.

One pgbench transaction is one *flow* of a scenario (withdraw → confirm is two function calls),
so its TPS compares directly with the HTTP flows per second at the same client count. Tokens are
computed the way the seed computes them (``md5('t' || i)::uuid``); mm ids are unique per client.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_TOKEN = "md5('t' || :i)::uuid::text"  # noqa: S105 - SQL, not a secret
_REPLAY_TOKEN = "md5('t' || :d)::uuid::text"  # noqa: S105 - SQL, not a secret
_MM = "'pg' || :client_id || '.' || :r"
_PICK = "\\set i random(1, :players)\n\\set r random(1, 1000000000000000)\n"
# The call's clock, as a server passes its own: each transaction gets its own creation time (a
# fixed time for the whole run would give every row of the run the same ``created_at_ms``,
# which no real traffic does, and which makes the lookups by creation time degenerate).
_NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS bigint)"
_BEGIN = (
    "SELECT code FROM wallet_v1_begin(:partner, 'withdrawal', {token}, {mm}, 1, 'XAG', NULL,"
    " 100000000000, " + _NOW + ");\n"
)
_CONFIRM = (
    "SELECT code FROM wallet_v1_confirm(:partner, 'withdrawal', {token}, {mm}, 1, 'XAG', "
    + _NOW
    + ");\n"
)
_ROLLBACK = (
    "SELECT code FROM wallet_v1_rollback(:partner, 'withdrawal', {token}, {mm}, 'bench', "
    + _NOW
    + ");\n"
)
_SESSION = "SELECT code FROM wallet_v1_session(:partner, {token}, " + _NOW + ");\n"


def _fill(template: str, token: str = _TOKEN, mm: str = _MM) -> str:
    return template.format(token=token, mm=mm)


SCRIPTS: dict[str, str] = {
    "balance": "\\set i random(1, :players)\n" + _fill(_SESSION),
    "withdraw": _PICK + _fill(_BEGIN),
    "withdraw_confirm": _PICK + _fill(_BEGIN) + _fill(_CONFIRM),
    "withdraw_rollback": _PICK + _fill(_BEGIN) + _fill(_ROLLBACK),
    # The first call of each of 2,000 ids creates it; every later one is a replay.
    "replay": "\\set i random(1, 2000)\n" + _fill(_BEGIN, mm="'pgreplay.' || :i"),
    "hot_wallet": "\\set i 1\n\\set r random(1, 1000000000000000)\n" + _fill(_BEGIN),
    # Roughly the HTTP mix: 40 % balance, 35 % withdraw+confirm, 10 % withdraw+rollback,
    # 5 % withdraw left pending, 10 % replays; players Zipf-distributed (s = 1.1).
    "zipf_mix": "\\set i random_zipfian(1, :players, 1.1)\n"
    "\\set r random(1, 1000000000000000)\n"
    "\\set d random(1, 100)\n"
    "\\if :d <= 40\n"
    + _fill(_SESSION)
    + "\\elif :d <= 75\n"
    + _fill(_BEGIN)
    + _fill(_CONFIRM)
    + "\\elif :d <= 85\n"
    + _fill(_BEGIN)
    + _fill(_ROLLBACK)
    + "\\elif :d <= 90\n"
    + _fill(_BEGIN)
    + "\\else\n"
    + _fill(_BEGIN, token=_REPLAY_TOKEN, mm="'pgzreplay.' || :d")
    + "\\endif\n",
}


@dataclass
class PgbenchResult:
    scenario: str
    clients: int
    tps: float
    failed: int
    latency_ms: float
    ok: bool
    detail: str = ""
    rate: float | None = None
    """Offered transactions/s of an open-loop (``-R``) run; None for a closed-loop one."""
    percentiles_ms: dict[str, float] = field(default_factory=dict)
    """Open loop: p50 … max of the per-transaction latencies, from the scheduled start."""


def available() -> str | None:
    return shutil.which("pgbench") or (
        "/usr/bin/pgbench" if Path("/usr/bin/pgbench").exists() else None
    )


def run(
    scenario: str,
    *,
    host: str,
    port: int,
    user: str,
    database: str,
    clients: int,
    duration_s: int,
    players: int,
    partner_id: int,
    rate: float | None = None,
) -> PgbenchResult:
    """Closed loop by default; with ``rate``, open loop (``-R``): transactions are scheduled at
    that rate and each one's latency is logged from its scheduled start (pgbench's own
    definition under ``-R``), the way the HTTP generator measures."""
    binary = available()
    if binary is None:
        return PgbenchResult(scenario, clients, 0.0, 0, 0.0, False, "pgbench not found")
    with tempfile.TemporaryDirectory(prefix="qwallet-pgbench-") as directory:
        script = Path(directory) / f"{scenario}.sql"
        script.write_text(SCRIPTS[scenario], encoding="utf-8")
        argv = [
            binary,
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(max(1, duration_s)),
            "-D",
            f"players={players}",
            "-D",
            f"partner={partner_id}",
            *(
                ["-R", f"{rate:.0f}", "-l", "--log-prefix", str(Path(directory) / "tx")]
                if rate
                else []
            ),
            "-f",
            str(script),
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            user,
            database,
        ]
        completed = subprocess.run(  # noqa: S603
            argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
        percentiles = _logged_percentiles(Path(directory)) if rate else {}
    out = completed.stdout + completed.stderr
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    return PgbenchResult(
        scenario,
        clients,
        float(tps.group(1)) if tps else 0.0,
        int(failed.group(1)) if failed else 0,
        float(latency.group(1)) if latency else 0.0,
        completed.returncode == 0 and tps is not None,
        "" if completed.returncode == 0 else out[-500:],
        rate=rate,
        percentiles_ms=percentiles,
    )


def _logged_percentiles(directory: Path) -> dict[str, float]:
    """Percentiles of the ``time`` column (µs) of pgbench's per-transaction logs."""
    latencies_us: list[int] = []
    for log in directory.glob("tx.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies_us.append(int(fields[2]))
    if not latencies_us:
        return {}
    latencies_us.sort()
    last = len(latencies_us) - 1
    found = {
        name: latencies_us[min(last, int(len(latencies_us) * share))] / 1000.0
        for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))
    }
    found["max"] = latencies_us[-1] / 1000.0
    return found


__all__ = ["SCRIPTS", "PgbenchResult", "available", "run"]
