"""The reconciliation's batch pacing: slow batches halve the next one, fast ones double it, and
neither leaves the bounds (1 .. the fixed size); a batch that met the statement bound is retried
at a quarter of its size."""

from __future__ import annotations

from qwallet.service import reconcile


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def run_batch(pace: reconcile._Pace, clock: Clock, took_s: float) -> int:
    size = pace.start()
    clock.now_s += took_s
    pace.done()
    return size


def test_starts_at_an_eighth_and_grows_to_the_fixed_size_when_batches_are_fast() -> None:
    clock = Clock()
    pace = reconcile._Pace(500, clock)
    sizes = [run_batch(pace, clock, 0.01) for _ in range(6)]
    assert sizes == [62, 124, 248, 496, 500, 500]


def test_slow_batches_halve_down_to_one_and_recover() -> None:
    clock = Clock()
    pace = reconcile._Pace(500, clock)
    slow = reconcile.BATCH_TARGET_S * 3
    sizes = [run_batch(pace, clock, slow) for _ in range(8)]
    assert sizes == [62, 31, 15, 7, 3, 1, 1, 1]
    # A batch inside the target band keeps its size; a fast one doubles it.
    assert run_batch(pace, clock, reconcile.BATCH_TARGET_S / 2) == 1
    assert pace.size == 1
    run_batch(pace, clock, 0.0)
    assert pace.size == 2


def test_remaining_batches_follow_the_current_size() -> None:
    pace = reconcile._Pace(8, Clock())
    assert pace.size == 1
    assert pace.batches_for(5) == 5
    assert pace.batches_for(0) == 0
    assert pace.batches_for(-3) == 0


def test_a_batch_that_met_the_bound_is_retried_at_a_quarter_and_never_grows_back() -> None:
    clock = Clock()
    pace = reconcile._Pace(512, clock)
    assert pace.start() == 64
    assert pace.timed_out()
    assert pace.size == 16 and pace.largest == 32
    sizes = [run_batch(pace, clock, 0.0) for _ in range(4)]
    assert sizes == [16, 32, 32, 32]


def test_a_single_unit_that_met_the_bound_has_nothing_smaller_to_try() -> None:
    pace = reconcile._Pace(4, Clock())
    assert pace.size == 1
    assert not pace.timed_out()
    assert pace.size == 1
