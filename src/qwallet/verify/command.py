"""Run the reliability and security suites (``tests/reliability``, ``tests/security``) and
write their figures.

Each test appends one JSON record per run to the file named by ``QWALLET_VERIFY_RESULTS``
(suite, backend, runs, operations, faults, failures, invariantChecks and extras). This command
points that variable at a fresh file, runs pytest from a source checkout, and turns the records
into the table of ``docs/reliability.md``. ``--long`` sets ``QWALLET_LONG=1`` (the long sizes).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

COLUMNS = ("runs", "operations", "faults", "failures", "invariantChecks")
HOLD_COLUMNS = (
    "holdsOpened",
    "holdsFinalizedByCallers",
    "holdsFinalizedByResolver",
    "holdsLeftPending",
)

FAILOVER_COLUMNS = ("failovers", "acknowledgedLost", "doubleApplied")
WATCHDOG_COLUMNS = ("watchdogResets", "watchdogResetsUnplanned")
WORKER_COLUMNS = (
    "holdsAbandoned",
    "holdsResolvedByResolver",
    "ordersPaid",
    "ordersDelivered",
    "callbacksSent",
    "callbacksResent",
    "callbackOverlaps",
)

SUITES = """## What the suites assert

| module | suite | asserts |
|---|---|---|
| `test_crash.py` | kill -9 mid-load | `qwallet serve` on a fresh database (both backends) \
is SIGKILLed at random moments \
(CI ≥ 5, long ≥ 50) under concurrent withdraw → confirm / rollback flows whose callers retry the \
same call on transport errors, 500 and 134 (or roll back at the first failure, as the partner \
documentation says). Afterwards: every acknowledged qwTransactionId is in the database exactly \
once, in the announced state, with the answered balance; nothing applied twice; every hold \
finalized; `qwallet reconcile` clean. |
| `test_crash.py` | crash after commit, before the answer | with the test-only \
`QWALLET_TEST_CRASH_POINT=after_commit` the process exits between the store's commit and the \
answer; the caller's retry gets the replayed answer (same qwTransactionId, first balance), never \
a refusal or a second application. |
| `test_database_faults.py` | PostgreSQL connections cut / refused / black-holed | a loopback \
TCP proxy between server and PostgreSQL aborts every connection and refuses new ones; the \
service answers 500 / 100 and `/readyz` 503 meanwhile, recovers by itself within 10 s, answers \
within 25 s even on a black-holed route, and the history checker finds every acknowledged answer. |
| `test_database_faults.py` | PostgreSQL crash and restart | a private cluster (its own \
`initdb`, port and directory) is stopped with `-m immediate` under load and restarted; same \
assertions. |
| `test_dead_peer.py` | a database machine gone silent | a private cluster in a private \
network namespace (its own loopback and firewall) has every packet of its port dropped, as a \
machine that vanished without a reset: a statement of the store fails in about 5 s \
(`TCP_USER_TIMEOUT`), before the 10 s statement bound, and an idle connection is closed by its \
keepalive probes without being used; a plain connection without the options still waits. |
| `test_failover.py` | PostgreSQL failover (Patroni) | etcd and three Patroni-managed \
PostgreSQL 15 nodes on loopback (`synchronous_mode_strict`, `use_pg_rewind`, ttl 5 s, loop_wait \
1 s, retry_timeout 2 s, no replication slots, `watchdog: mode: required` on an emulated device \
that resets a node whose Patroni stopped renewing the leader key, 3 s after the last renewal); \
two `qwallet serve` processes on the multi-host URL, never restarted, \
under retrying withdraw → confirm / rollback flows, their hold resolver and payment worker on \
short intervals. Faults in random order at random moments (CI: each once, ≥ 3 failovers; long: \
≥ 30 failovers): the primary's PostgreSQL SIGKILLed, its Patroni SIGKILLed (PostgreSQL \
orphaned until the watchdog resets its node, Patroni back once another node leads), \
`patronictl switchover` and `failover`, the \
synchronous standby's machine lost, the primary's machine lost and rejoining through \
`pg_rewind`, and the cancel hazard: standbys frozen, every backend waiting on `SyncRep` \
cancelled with `pg_cancel_backend`, then the primary lost — no success may be answered while \
the standbys are frozen. Beside the load a partner abandons withdrawals (the resolver asks the \
kit's real Query Withdrawal endpoint) and a shop's paid orders go to the kit's real callback \
receiver. Afterwards the full history check and `qwallet reconcile` on the new primary; every \
abandoned hold as its partner decided with one resolution that moved money; every order \
delivered, the studio's hook run once, never two callbacks for one order in flight at once; \
recovery time from the fault to the first successful withdraw, split into the cluster's part \
(a commit confirmed by a synchronous standby again, written directly on a node) and the rest. |
| `test_fuzz.py` | schemathesis | every operation of the served `/openapi.json`, positive and \
negative data, all schemathesis checks plus: no HTTP 500, no code 100, and data the document \
calls invalid is refused (4xx, or an error body on 200 — e.g. 102 for amounts ≤ 0). |
| `test_bank_workload.py` | bank workload | 24 concurrent clients, random withdraw / deposit / \
confirm / rollback over 10 wallets (100 in the long run); every acknowledged answer matches \
the final state and the ledger replayed in order; nothing applied twice; wallets + partner + \
operator sum to zero and the partner holds exactly the confirmed flows; no negative balance \
anywhere. |
| `test_races.py` | races at scale, 2 processes | two `qwallet serve` processes on one \
database, requests spread over both, on SQLite and on PostgreSQL at READ COMMITTED and at \
SERIALIZABLE (`default_transaction_isolation` of the test database; 134 retried with backoff): \
over-subscription rounds (100 concurrent withdrawals of 1.00 on exactly K.00: exactly K holds, \
distinct ids and balances K-1 … 0, the rest 121), duplicate storms (20 identical begins, then \
20 identical confirms: one hold, byte-identical replays) and confirm-vs-rollback rounds (exactly \
one winner, replays repeat the race's answers); wallet and `reconcile` exact after every round. \
CI 5 / 25 / 50 rounds per backend, long 100 / 500 / 1,000. |
| `test_liveness.py` | liveness: kill -9 + partner never finalizes, hold resolver | \
`qwallet serve` (both backends) SIGKILLed under retrying withdraw → confirm / rollback flows \
while a partner opens withdrawals and never finalizes them; each abandoned hold gets a fate in \
the partner kit (confirmed, rolled back, no record, pending then confirmed later). The hold \
resolver, with a manual clock past the hold window, asks the kit's real Query Withdrawal \
endpoint: afterwards nothing is pending, each hold is in the state its fate says, the full \
history check passes. The abandoned holds count as faults. |
| `test_model.py` | model-based (Hypothesis state machine) | the state machine of \
`tests/integration/test_model_based.py` against a live server (the configured examples and \
steps per backend, every Wallet API call, session expiry and blocking against a reference \
model); invariant checks are the model's balance comparisons (available, held, pendingIn, \
status per wallet per step). |
| `test_security.py` | rate limits, timing, logs, bandit | 429 / 104 with `Retry-After` per \
session token and per partner, and a refused call changes nothing; failed authentications per \
client address: 50 wrong passwords at once run scrypt only for the burst (counted), the rest get \
429 / 104 without hashing, verified credentials keep working; unknown user and wrong \
password answer in the same median time (within 1.5x); no password, token, API key or \
Authorization value in debug logs, database tracebacks included; `bandit -r src` has no \
high-severity finding. |
| `tests/security/` | security matrix | one regression test per attack of docs/security.md \
(sandbox payments in production, blocked players paying, payment currency, callback field \
shifts, sign-in throttling, sign-out, body caps, NUL bytes, credential timing and the hardening \
list), each against a real server on loopback, on both backends where storage is involved: the \
attack is refused and changes nothing. |
""".splitlines()


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sum the records per (suite, backend), in the order suites first appear.

    Failover records measured with different cluster settings are not summed: their recovery
    times answer different questions, and one page showing both under the last one's settings
    would be wrong. That is a ``ValueError`` (remove the older records from ``--results``)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (str(record["suite"]), str(record["backend"]))
        row = rows.setdefault(
            key, {"suite": key[0], "backend": key[1], **dict.fromkeys(COLUMNS, 0)}
        )
        for column in COLUMNS:
            row[column] += int(record.get(column, 0))
        row["seconds"] = float(row.get("seconds", 0)) + float(record.get("seconds", 0))
        for extra in HOLD_COLUMNS:
            if extra in record:
                row[extra] = int(row.get(extra, 0)) + int(record[extra])
        if "failovers" in record:
            for extra in FAILOVER_COLUMNS:
                row[extra] = int(row.get(extra, 0)) + int(record.get(extra, 0))
            row["recoveriesS"] = [*row.get("recoveriesS", []), *record.get("recoveriesS", [])]
            row["faultList"] = [*row.get("faultList", []), *record.get("faultList", [])]
            settings = str(record.get("settings", ""))
            if row.get("settings") not in (None, "", settings):
                raise ValueError(
                    f"{key[0]} ({key[1]}): records measured with different settings"
                    f" ({row['settings']!r} and {settings!r}); remove the older ones"
                    " from the results file"
                )
            row["settings"] = settings or row.get("settings", "")
            for extra in WATCHDOG_COLUMNS:
                if extra in record:
                    row[extra] = int(row.get(extra, 0)) + int(record[extra])
            for extra in WORKER_COLUMNS:
                if extra in record:
                    row[extra] = int(row.get(extra, 0)) + int(record[extra])
        for extra in ("examples", "steps", "calls"):
            if extra in record:
                row[extra] = (
                    int(record[extra])
                    if extra == "steps"
                    else int(row.get(extra, 0)) + int(record[extra])
                )
    return list(rows.values())


def render(
    rows: list[dict[str, Any]],
    *,
    mode: str,
    exit_code: int | None,
    seconds: float | None,
    command: str,
    records: list[dict[str, Any]] | None = None,
) -> str:
    total_failures = sum(int(row["failures"]) for row in rows)
    lines = [
        "# Reliability",
        "",
        "Generated by `qwallet verify` — do not edit by hand; run it again. It runs the suites in",
        "`tests/reliability` and `tests/security` (CI sizes by default, `--long` for"
        " `QWALLET_LONG=1`) and tabulates",
        "what each one recorded. What each suite asserts is listed below the table and, in full,",
        "in the docstring of its module.",
        "",
        f"- mode: **{mode}** (`{command}`)",
        f"- machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}",
        f"- generated: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (f", {seconds:.0f} s; pytest exit code {exit_code}" if exit_code is not None else "")
        + (f"; suite time {suite_s:.0f} s" if (suite_s := _suite_seconds(rows)) else ""),
        f"- failures in all suites: **{total_failures}**",
        "",
        "| suite | backend | runs | operations | faults injected | failures | invariant checks |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [main_row(row) for row in rows]
    liveness = [row for row in rows if row.get("holdsOpened") is not None]
    if liveness:
        lines += [
            "",
            "### Liveness: every hold reaches a final state",
            "",
            "Holds (withdrawals that held funds, deposits that went pending) opened by each fault"
            " run, and how they were finalized: by the callers' own confirm / rollback retries,"
            " or by the hold resolver for those a partner abandoned on purpose.",
            "",
            "| suite | backend | holds opened | finalized by callers | finalized by the"
            " resolver | left pending |",
            "|---|---|---:|---:|---:|---:|",
        ]
        lines += [hold_row(row) for row in liveness]
    lines += failover_table(rows)
    models = [row for row in rows if row.get("examples") is not None]
    if models:
        lines += [
            "",
            "### Model-based test size",
            "",
            "| backend | examples | steps per example (max) | Wallet API calls | seconds |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in models:
            lines.append(
                f"| {row['backend']} | {row['examples']:,} | {row['steps']:,}"
                f" | {row['calls']:,} | {float(row.get('seconds', 0)):.0f} |"
            )
    lines += security_matrix(records or [])
    lines += [
        "",
        "Columns: *operations* are HTTP requests sent (retries included) or cases run; *faults*",
        "are server kills, crashes at the test-only crash point, database outages or PostgreSQL",
        "crashes; *invariant checks* are individual assertions made on the final state (every",
        "acknowledged answer present once, in its announced state, with its balance; ledger",
        "replay; conservation; no negative balance; `qwallet reconcile`).",
        "",
        *SUITES,
    ]
    return "\n".join(lines)


def main_row(row: dict[str, Any]) -> str:
    return (
        f"| {row['suite']} | {row['backend']} | {row['runs']:,} | {row['operations']:,}"
        f" | {row['faults']:,} | {row['failures']:,} | {row['invariantChecks']:,} |"
    )


def hold_row(row: dict[str, Any]) -> str:
    return (
        f"| {row['suite']} | {row['backend']} | {row['holdsOpened']:,}"
        f" | {row.get('holdsFinalizedByCallers', 0):,}"
        f" | {row.get('holdsFinalizedByResolver', 0):,}"
        f" | {row.get('holdsLeftPending', 0):,} |"
    )


FAILOVER_HEADING = "### Failover: no acknowledged answer lost"


def update_page(page: str, rows: list[dict[str, Any]], *, note: str) -> str:
    """``page`` with the rows of the suites in ``rows`` replaced and its failover section
    rendered anew; every other suite's figures are kept as they are.

    For a run of some suites (``-k``) on a page made by a full run: the main table's and the
    holds table's rows of those suites (by suite and backend) are replaced, the failover
    section is replaced when a failover suite ran, the total of failures is summed again from
    the main table, and ``note`` is added to the page's header.
    """
    lines = page.splitlines()
    fresh = {(str(row["suite"]), str(row["backend"])): row for row in rows}

    def key(line: str) -> tuple[str, str] | None:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        return (cells[0], cells[1]) if line.startswith("| ") and len(cells) > 2 else None

    out: list[str] = []
    table = ""
    for line in lines:
        if line.startswith("| suite | backend | runs |"):
            table = "main"
        elif line.startswith("| suite | backend | holds opened |"):
            table = "holds"
        elif not line.startswith("|"):
            table = ""
        found = key(line) if table else None
        if found in fresh and not line.startswith("|---"):
            row = fresh[found]
            if table == "main":
                line = main_row(row)
            elif row.get("holdsOpened") is not None:
                line = hold_row(row)
        out.append(line)
    section = failover_table(rows)
    if section and FAILOVER_HEADING in out:
        start = out.index(FAILOVER_HEADING) - 1  # the blank line before it
        end = next((i for i in range(start + 2, len(out)) if out[i].startswith("### ")), len(out))
        end -= 1 if end < len(out) else 0  # keep the blank line before the next heading
        out[start:end] = section
    if "## What the suites assert" in out:  # the suites' descriptions are the code's, as now
        out[out.index("## What the suites assert") :] = SUITES
    failures = 0
    table = ""
    for line in out:
        if line.startswith("| suite | backend | runs |"):
            table = "main"
            continue
        if table and not line.startswith("|"):
            break
        if table and not line.startswith("|---"):
            failures += int(line.strip().strip("|").split("|")[5].strip().replace(",", ""))
    for index, line in enumerate(out):
        if line.startswith("- failures in all suites:"):
            out[index] = f"- failures in all suites: **{failures}**"
        elif line.startswith("- generated:"):
            out[index] = f"{line}; {note}"
    return "\n".join(out) + ("\n" if page.endswith("\n") else "")


def _seconds(values: list[float]) -> str:
    if not values:
        return "— | —"
    return f"{statistics.median(values):.1f} s | {max(values):.1f} s"


def failover_table(rows: list[dict[str, Any]]) -> list[str]:
    """Failovers survived, acknowledged answers lost or applied twice, recovery times; then the
    recovery per kind of fault with the part of it that the cluster took (a durable write
    possible again directly on a node), and the hold resolver's and payment worker's figures."""
    failover_rows = [row for row in rows if row.get("failovers") is not None]
    if not failover_rows:
        return []
    lines = [
        "",
        "### Failover: no acknowledged answer lost",
        "",
        "Recovery time is from the fault (a kill, a switchover or failover command) to the first"
        " successful withdraw through a server that was never restarted.",
        "",
        "| suite | backend | failovers | acknowledged lost | double-applied | recovery median"
        " | recovery max | settings |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in failover_rows:
        recoveries = [float(value) for value in row.get("recoveriesS", [])]
        lines.append(
            f"| {row['suite']} | {row['backend']} | {row['failovers']:,}"
            f" | {row['acknowledgedLost']:,} | {row['doubleApplied']:,}"
            f" | {_seconds(recoveries)} | {row.get('settings', '')} |"
        )
    faults = [fault for row in failover_rows for fault in row.get("faultList", [])]
    if faults:
        lines += [
            "",
            "Per kind of fault: *cluster* is from the fault to the first commit confirmed by a"
            " synchronous standby, written directly on a node beside the load (Patroni's and"
            " PostgreSQL's part); *outage* is from the first failed durable write to the first"
            " successful withdraw (for a switchover: the switchover time); the rest of the"
            " recovery is qwallet's (its pool finding the new primary) and the caller's next try.",
            "",
            "| fault | runs | failovers | recovery median | recovery max | cluster median"
            " | cluster max | outage median | outage max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        kinds: dict[str, list[dict[str, Any]]] = {}
        for fault in faults:
            kinds.setdefault(str(fault["kind"]), []).append(fault)
        for kind, items in kinds.items():

            def values(key: str, items: list[dict[str, Any]] = items) -> list[float]:
                return [float(item[key]) for item in items if item.get(key) is not None]

            lines.append(
                f"| {kind} | {len(items):,} | {sum(1 for i in items if i.get('failover')):,}"
                f" | {_seconds(values('recoveryS'))} | {_seconds(values('clusterS'))}"
                f" | {_seconds(values('outageS'))} |"
            )
    for row in failover_rows:
        if row.get("watchdogResets") is not None:
            lines += [
                "",
                f"Watchdog ({row['suite']}; emulated, see `tests/reliability/watchdog_device.py`):"
                f" {row['watchdogResets']:,} nodes reset because their Patroni stopped renewing"
                f" the leader key, {row.get('watchdogResetsUnplanned', 0):,} of them outside a"
                f" fault that killed a primary's Patroni.",
            ]
    workers = [row for row in failover_rows if row.get("holdsAbandoned") is not None]
    for row in workers:
        lines += [
            "",
            f"Hold resolver and payment worker in both servers through the faults"
            f" ({row['suite']}): {row['holdsAbandoned']:,} withdrawals abandoned by their"
            f" partner, each finalized by the resolver as the partner's Query Withdrawal"
            f" answer said, with exactly one resolution that moved money;"
            f" {row['ordersDelivered']:,} of {row['ordersPaid']:,} paid orders delivered, the"
            f" studio's delivery hook run once for each; {row['callbacksSent']:,} callbacks"
            f" sent, {row['callbacksResent']:,} of them again once a lease ran out (an attempt"
            f" whose result could not be written during a failover), {row['callbackOverlaps']:,}"
            f" while another for the same order was in flight.",
        ]
    return lines


def security_matrix(records: list[dict[str, Any]]) -> list[str]:
    """The security matrix: one row per attack (test), a column per backend.

    Each cell says whether the running server refused the attack (the regression test passed) and
    how many HTTP requests the test sent. The finding is the number in docs/security.md (``H``:
    the hardening list), the attack the test's name.
    """
    cases: dict[tuple[str, str], dict[str, Any]] = {}
    backends: list[str] = []
    for record in records:
        if record.get("suite") != "security" or "case" not in record:
            continue
        backend = str(record["backend"])
        if backend not in backends:
            backends.append(backend)
        row = cases.setdefault(
            (str(record.get("module", "")), str(record["case"])),
            {"finding": str(record.get("finding", "-")), "cells": {}},
        )
        requests, failures = row["cells"].get(backend, (0, 0))
        row["cells"][backend] = (
            requests + int(record.get("operations", 0)),
            failures + int(record.get("failures", 0)),
        )
    if not cases:
        return []
    refused = sum(1 for row in cases.values() for _, f in row["cells"].values() if f == 0)
    total = sum(len(row["cells"]) for row in cases.values())
    lines = [
        "",
        "### Security matrix",
        "",
        f"Attacks from `tests/security` (docs/security.md): **{refused} of {total}** runs"
        " refused as documented. A cell is *refused* when the regression test passed; the number"
        " is the HTTP requests the test sent through httpx (0: it attacked through raw sockets,"
        " a process it started or the browser).",
        "",
        "| finding | attack | module | " + " | ".join(backends) + " |",
        "|---|---|---|" + "---|" * len(backends),
    ]
    for (module, case), row in sorted(cases.items(), key=_finding_order):
        cells = []
        for backend in backends:
            if backend not in row["cells"]:
                cells.append("—")
                continue
            requests, failures = row["cells"][backend]
            verdict = "refused" if failures == 0 else "**FAILED**"
            cells.append(f"{verdict} ({requests:,})")
        attack = case.replace("|", "\\|")
        lines.append(f"| {row['finding']} | {attack} | `{module}` | " + " | ".join(cells) + " |")
    return lines


def _finding_order(item: tuple[tuple[str, str], dict[str, Any]]) -> tuple[int, str]:
    finding = str(item[1]["finding"])
    return (int(finding) if finding.isdigit() else 1_000, finding)


def _suite_seconds(rows: list[dict[str, Any]]) -> float:
    return float(sum(float(row.get("seconds", 0)) for row in rows))


def verify(
    long: Annotated[bool, typer.Option("--long", help="Long sizes (QWALLET_LONG=1).")] = False,
    select: Annotated[
        str | None, typer.Option("-k", help="pytest -k expression to run a subset.")
    ] = None,
    root: Annotated[
        Path, typer.Option(help="The source checkout holding tests/reliability.")
    ] = Path("."),
    output: Annotated[
        Path | None, typer.Option(help="Where to write the page (default docs/reliability.md).")
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(help="Records file; with --no-run, render an existing one."),
    ] = None,
    run: Annotated[bool, typer.Option("--run/--no-run", help="Run the suites first.")] = True,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Update the existing page (--output) instead of writing a new one: the rows of"
            " the suites this run recorded are replaced, the other suites' figures kept.",
        ),
    ] = False,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Keep the records already in --results and add this run's: a long run can be"
            " made in parts (-k) and rendered as one page.",
        ),
    ] = False,
) -> None:
    """Run the reliability and security suites; regenerate docs/reliability.md from their
    records."""
    root = root.resolve()
    if run and not (root / "tests" / "reliability").is_dir():
        raise typer.BadParameter(f"no tests/reliability under {root} (use --root)")
    records_path = results or Path(tempfile.mkstemp(prefix="qwallet-verify-", suffix=".jsonl")[1])
    command = ["pytest", "-q", "-p", "no:cacheprovider", "tests/reliability", "tests/security"]
    if select:
        command += ["-k", select]
    started = time.monotonic()
    exit_code = 0
    if append and results is None:
        raise typer.BadParameter("--append needs --results (the file the parts add up in)")
    if run:
        if not append or not records_path.exists():
            records_path.write_text("")
        env = {**os.environ, "QWALLET_VERIFY_RESULTS": str(records_path)}
        if long:
            env["QWALLET_LONG"] = "1"
            command += ["--timeout", "7200"]  # the long sizes outlast the 600 s default
        exit_code = subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
            [sys.executable, "-m", *command], cwd=root, env=env, check=False
        ).returncode
    records = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
    page = render(
        aggregate(records),
        mode="long" if long else "CI-sized",
        exit_code=exit_code if run else None,
        seconds=time.monotonic() - started if run else None,
        command="qwallet verify"
        + (" --long" if long else "")
        + (" --append (several runs)" if append else f" -k {select!r}" if select else ""),
        records=records,
    )
    target = output or root / "docs" / "reliability.md"
    if update:
        if not target.exists():
            raise typer.BadParameter(f"--update needs an existing page: {target}")
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        suites = sorted({str(record["suite"]) for record in records})
        page = update_page(
            target.read_text(),
            aggregate(records),
            note=f"{', '.join(suites)} updated {stamp} by `qwallet verify"
            + (" --long" if long else "")
            + (f" -k {select}" if select else "")
            + " --update`",
        )
    target.write_text(page)
    typer.echo(f"wrote {target} ({len(records)} records, pytest exit code {exit_code})")
    if exit_code:
        raise typer.Exit(exit_code)
