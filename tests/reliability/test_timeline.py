"""The failover suite's ``Timeline.after``: how a fault's window of leader changes and direct
writes becomes the cluster's part of a recovery — on recorded entries, without a cluster."""

from __future__ import annotations

from typing import cast

from tests.reliability.patroni_cluster import PatroniCluster, Timeline


def _timeline() -> Timeline:
    # after() reads only the recorded entries; the threads and the cluster stay unused.
    return Timeline(cast(PatroniCluster, None))


def test_a_second_outage_of_the_writes_is_reported_beside_the_first() -> None:
    timeline = _timeline()
    timeline.leaders = [(99.0, "pg0", "pg1"), (105.0, None, None), (105.2, "pg1", None)]
    timeline.leaders.append((118.6, "pg1", "pg2"))
    timeline.writes = [
        (99.5, True, "pg0"),
        (100.3, False, None),
        (105.8, True, "pg1"),  # writable again ...
        (108.4, False, None),  # ... and not, until the standby streams
        (115.0, True, "pg1"),
        (130.0, False, None),  # after the next fault: not this one's
    ]
    split = timeline.after(100.0, 125.0)
    assert split == {
        "leaderLostS": 5.0,
        "leaderRunningS": 5.2,
        "syncStandbyS": 18.6,
        "writesFailedS": 0.3,
        "durableWriteS": 5.8,
        "writeOutagesS": [[0.3, 5.8], [8.4, 15.0]],
    }


def test_an_outage_still_open_at_the_window_s_end_has_no_end() -> None:
    timeline = _timeline()
    timeline.writes = [(100.5, True, "pg0"), (101.0, False, None)]
    split = timeline.after(100.0, 110.0)
    assert split["writeOutagesS"] == [[1.0, None]] and split["durableWriteS"] is None
