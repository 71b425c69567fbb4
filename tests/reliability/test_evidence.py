"""The failover suite's evidence of slow recoveries (``evidence.py``): which faults count as
slow, where the evidence goes, and what is copied — on real files, without a cluster."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from tests.reliability.evidence import (
    EVIDENCE_ENV,
    cluster_logs,
    evidence_directory,
    keep_evidence,
    slow_faults,
    wall_clock,
)

TARGET_S = 7.0


def test_slow_means_over_the_target_or_never_recovered() -> None:
    records = [
        {"kind": "switchover", "recoveryS": 4.8},
        {"kind": "primary machine lost", "recoveryS": 7.0},  # on the target: met
        {"kind": "primary machine lost", "recoveryS": 15.2},
        {"kind": "failover", "recoveryS": None},
        # The cancel hazard counts from the primary's loss, 2.5 s after the freeze.
        {"kind": "cancel hazard + primary lost", "recoveryS": 8.2, "killS": 2.5},
        {"kind": "cancel hazard + primary lost", "recoveryS": 10.0, "killS": 2.5},
    ]
    assert [index for index, _ in slow_faults(records, TARGET_S)] == [2, 3, 5]


def _cluster_directory(root: Path) -> Path:
    (root / "etcd").mkdir(parents=True)
    (root / "etcd" / "etcd.log").write_text("etcd says\n")
    for name in ("pg0", "pg1"):
        (root / name / "data" / "log").mkdir(parents=True)
        (root / name / "patroni.log").write_text(f"{name} patroni\n")
    (root / "pg1" / "data" / "log" / "postgresql.log").write_text("pg1 postgres\n")
    return root


def test_a_slow_fault_keeps_every_log_and_the_timeline(tmp_path: Path) -> None:
    cluster = _cluster_directory(tmp_path / "cluster")
    server_log = tmp_path / "server-0.log"
    server_log.write_text("server 0\n")
    logs = cluster_logs(cluster, ["pg0", "pg1", "pg2"])  # pg2 never started: no log
    logs += [("qwallet-server-0.log", server_log)]
    offset = time.time() - time.monotonic()
    records = [{"kind": "switchover", "recoveryS": 4.8}, {"kind": "failover", "recoveryS": 15.2}]
    starts = [100.0, 200.0]
    kept = keep_evidence(
        records,
        starts,
        TARGET_S,
        logs,
        {"leaders": [[wall_clock(201.0, offset), 201.0, "pg1", None]]},
        directory=tmp_path / "evidence",
        offset_s=offset,
    )
    assert kept == tmp_path / "evidence"
    names = sorted(path.name for path in kept.iterdir())
    assert names == [
        "etcd.log",
        "missing.txt",
        "pg0-patroni.log",
        "pg1-patroni.log",
        "pg1-postgresql.log",
        "qwallet-server-0.log",
        "slow-faults.json",
        "timeline.json",
    ]
    assert (kept / "pg1-postgresql.log").read_text() == "pg1 postgres\n"
    assert "pg2-patroni.log" in (kept / "missing.txt").read_text()
    slow = json.loads((kept / "slow-faults.json").read_text())
    assert [(item["fault"], item["kind"], item["measuredS"]) for item in slow] == [
        (1, "failover", 15.2)
    ]
    assert slow[0]["at"] == wall_clock(200.0, offset)
    timeline = json.loads((kept / "timeline.json").read_text())
    assert timeline["monotonicToUnixS"] == offset and timeline["leaders"][0][2] == "pg1"


def test_no_slow_fault_keeps_nothing(tmp_path: Path) -> None:
    kept = keep_evidence(
        [{"kind": "switchover", "recoveryS": 4.8}],
        [100.0],
        TARGET_S,
        [("etcd.log", tmp_path / "etcd.log")],
        {},
        directory=tmp_path / "evidence",
    )
    assert kept is None and not (tmp_path / "evidence").exists()


def test_the_directory_comes_from_the_environment_or_is_a_fresh_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = tmp_path / "kept" / "here"
    assert evidence_directory({EVIDENCE_ENV: str(wanted)}) == wanted and wanted.is_dir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)
    first, second = evidence_directory({}), evidence_directory({})
    assert first != second
    assert first.parent == tmp_path / "tmp" and first.name.startswith("qwallet-failover-evidence-")
