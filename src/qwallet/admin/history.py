"""Errors by code over time, sampled in memory from the Prometheus request counter.

The Wallet API counts every answer in ``qwallet_requests_total{endpoint, code}``. The console
keeps the totals per non-zero code every ``interval_ms`` (and whenever the dashboard is opened
after that long), and charts the differences between samples. The history covers this process
only and starts with it; Prometheus holds the long-term series.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from qwallet.clock import Clock
from qwallet.monitoring import instruments

COLORS = ("#c0392b", "#2471a3", "#d68910", "#7d3c98", "#138d75", "#566573", "#a04000")


def error_totals() -> dict[str, int]:
    totals: dict[str, int] = {}
    for metric in instruments.REQUESTS.collect():
        for sample in metric.samples:
            code = sample.labels.get("code", "0")
            if sample.name.endswith("_total") and code != "0":
                totals[code] = totals.get(code, 0) + int(sample.value)
    return totals


@dataclass(frozen=True, slots=True)
class Sample:
    at_ms: int
    totals: dict[str, int]


class ErrorHistory:
    def __init__(self, clock: Clock, *, interval_ms: int = 60_000, max_samples: int = 120):
        self.clock = clock
        self.interval_ms = interval_ms
        self.samples: deque[Sample] = deque(maxlen=max_samples)

    def sample(self, *, force: bool = False) -> None:
        now_ms = self.clock.now_ms()
        if force or not self.samples or now_ms - self.samples[-1].at_ms >= self.interval_ms:
            self.samples.append(Sample(now_ms, error_totals()))

    def chart(self, width: int = 720, height: int = 200, pad: int = 32) -> dict[str, Any]:
        """Polylines of errors per interval, by code, ready for an inline SVG."""
        samples = list(self.samples)
        steps = [
            (b.at_ms, {code: b.totals[code] - a.totals.get(code, 0) for code in b.totals})
            for a, b in itertools.pairwise(samples)
        ]
        codes = sorted({code for _, deltas in steps for code in deltas})
        peak = max([1, *(value for _, deltas in steps for value in deltas.values())])
        span = max(len(steps) - 1, 1)
        series = []
        for index, code in enumerate(codes):
            points = " ".join(
                f"{pad + (width - 2 * pad) * i / span:.1f},"
                f"{height - pad - (height - 2 * pad) * deltas.get(code, 0) / peak:.1f}"
                for i, (_, deltas) in enumerate(steps)
            )
            series.append(
                {
                    "code": code,
                    "color": COLORS[index % len(COLORS)],
                    "points": points,
                    "total": sum(deltas.get(code, 0) for _, deltas in steps),
                }
            )
        return {
            "width": width,
            "height": height,
            "pad": pad,
            "peak": peak,
            "series": series,
            "steps": len(steps),
            "first_ms": steps[0][0] if steps else None,
            "last_ms": steps[-1][0] if steps else None,
            "totals": samples[-1].totals if samples else {},
        }
