"""Throughput and latency over time: a load run cut into fixed buckets (0.5 s by default).

Each answer a load generator received is (arrival time, commands answered, latency); a bucket
holds the answers that arrived in it: orders acknowledged, orders/s, and the p50/p99 latency
of those answers (None when nothing arrived: a stall shows as a gap, not as a zero latency).
Buckets cover the phase's planned duration; answers arriving after it (the drain of what was
still in flight when sending stopped) are left out, so the last bucket is not a fake drop.
"""

from __future__ import annotations

import math
from typing import Any

from .load import LoadResult, percentile

BUCKET_S = 0.5
MAX_BUCKETS = 10_000  # bounded output, whatever the duration


def timeline(
    result: LoadResult, started: float, duration_s: float, width: float = BUCKET_S
) -> list[dict[str, Any]]:
    """Buckets of ``width`` seconds from ``started`` (a perf_counter value), in order."""
    n = min(MAX_BUCKETS, max(1, math.ceil(duration_s / width - 1e-9)))
    orders = [0] * n
    latencies: list[list[float]] = [[] for _ in range(n)]
    for (at, count), latency in zip(result.acks, result.latencies_ms, strict=True):
        i = int((at - started) / width)
        if 0 <= i < n and at - started < duration_s:
            orders[i] += count
            latencies[i].append(latency)
    buckets = []
    for i, lat in enumerate(latencies):
        covered = min(width, duration_s - i * width)  # the last bucket may be shorter
        buckets.append(
            {
                "t": round(i * width, 3),
                "orders": orders[i],
                "orders_per_sec": round(orders[i] / covered) if covered > 0 else 0,
                "p50_ms": round(percentile(lat, 0.50), 2) if lat else None,
                "p99_ms": round(percentile(lat, 0.99), 2) if lat else None,
            }
        )
    return buckets
