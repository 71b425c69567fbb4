"""Evidence of slow failover recoveries, kept after the run.

The cluster's directory (Patroni's logs, PostgreSQL's output in them, etcd's log) is removed when
the cluster is closed, and pytest keeps only its last few temporary directories: an outlier
found in the records afterwards could not be explained. So when a fault's recovery exceeds the
target, the suite copies every log that can explain it, and a timeline of what the injector and
the cluster watcher saw, into a directory of its own:

- ``QWALLET_FAILOVER_EVIDENCE_DIR`` when set (created if missing), otherwise a fresh temporary
  directory; its path is printed either way.
- ``slow-faults.json``: each slow fault with its moment as wall-clock time (the logs' clock) and
  monotonic time (the timeline's), its probes, and the cluster's split; ``timeline.json``: every
  fault, Patroni's leader / synchronous standby changes and the direct writes, all with
  wall-clock times; then the log files, copied whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EVIDENCE_ENV = "QWALLET_FAILOVER_EVIDENCE_DIR"


def measured_s(record: Mapping[str, Any]) -> float | None:
    """The recovery the target applies to: for the cancel hazard from the primary's loss (the
    freeze before it is part of the fault), otherwise from the fault."""
    recovery = record.get("recoveryS")
    if recovery is None:
        return None
    return float(recovery) - float(record.get("killS") or 0.0)


def slow_faults(
    records: Sequence[Mapping[str, Any]], target_s: float
) -> list[tuple[int, Mapping[str, Any]]]:
    """(index, record) of every fault whose recovery exceeded ``target_s`` or never came."""
    slow = []
    for index, record in enumerate(records):
        measured = measured_s(record)
        if measured is None or measured > target_s:
            slow.append((index, record))
    return slow


def evidence_directory(environ: Mapping[str, str] | None = None) -> Path:
    """Where evidence goes: ``QWALLET_FAILOVER_EVIDENCE_DIR`` or a new temporary directory."""
    configured = (os.environ if environ is None else environ).get(EVIDENCE_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    return Path(tempfile.mkdtemp(prefix="qwallet-failover-evidence-"))


def wall_clock(monotonic_s: float, offset_s: float) -> str:
    """A monotonic moment as the logs' local wall-clock time, to the millisecond."""
    moment = datetime.fromtimestamp(monotonic_s + offset_s, tz=UTC).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + moment.strftime(" %z")


def keep_evidence(
    records: Sequence[Mapping[str, Any]],
    starts: Sequence[float],
    target_s: float,
    logs: Iterable[tuple[str, Path]],
    timeline: Mapping[str, Any],
    directory: Path | None = None,
    offset_s: float | None = None,
) -> Path | None:
    """Copy the evidence when a fault was slow; the directory, or None when none was.

    ``records`` are the faults' records (``recoveryS``, ``killS`` …), ``starts`` their
    monotonic moments; ``logs`` (name in the directory, source) are copied whole, a missing one
    noted in ``missing.txt``; ``offset_s`` turns monotonic time into Unix time."""
    slow = slow_faults(records, target_s)
    if not slow:
        return None
    if offset_s is None:
        offset_s = time.time() - time.monotonic()
    target = directory if directory is not None else evidence_directory()
    target.mkdir(parents=True, exist_ok=True)
    summary = [
        {
            "fault": index,
            "at": wall_clock(starts[index], offset_s),
            "atMonotonic": starts[index],
            "targetS": target_s,
            "measuredS": measured_s(record),
            **record,
        }
        for index, record in slow
    ]
    (target / "slow-faults.json").write_text(json.dumps(summary, indent=2, default=str))
    (target / "timeline.json").write_text(
        json.dumps({"monotonicToUnixS": offset_s, **timeline}, indent=2, default=str)
    )
    missing = []
    for name, source in logs:
        try:
            shutil.copyfile(source, target / name)
        except OSError as error:
            missing.append(f"{name}: {source}: {error}")
    if missing:
        (target / "missing.txt").write_text("\n".join(missing) + "\n")
    return target


def timeline_entries(entries: Iterable[Sequence[Any]], offset_s: float) -> list[list[Any]]:
    """Timeline tuples (monotonic first) with the wall-clock time put in front."""
    return [[wall_clock(float(entry[0]), offset_s), *entry] for entry in entries]


def cluster_logs(cluster_directory: Path, node_names: Sequence[str]) -> list[tuple[str, Path]]:
    """etcd's log and, per node, Patroni's log (PostgreSQL writes its own output into it) and
    any file PostgreSQL's logging collector wrote."""
    found = [("etcd.log", cluster_directory / "etcd" / "etcd.log")]
    for name in node_names:
        found.append((f"{name}-patroni.log", cluster_directory / name / "patroni.log"))
        with contextlib.suppress(OSError):
            for path in sorted((cluster_directory / name / "data" / "log").iterdir()):
                found.append((f"{name}-{path.name}", path))
    return found


__all__ = [
    "EVIDENCE_ENV",
    "cluster_logs",
    "evidence_directory",
    "keep_evidence",
    "measured_s",
    "slow_faults",
    "timeline_entries",
    "wall_clock",
]
