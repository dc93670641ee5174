"""Deadlines on the wire: ns since the epoch in an int64 (orders.proto deadline_unix_nanos)."""

from __future__ import annotations

import time

from .limits import INT64_MAX


def deadline_after(seconds: float) -> int:
    """Now plus ``seconds``, as a deadline the wire can carry. gRPC lets a caller ask for
    any timeout (grpc-java's longest is ~292 years), and past ~2262 the sum no longer fits
    an int64: it is pinned to the largest deadline, which never comes."""
    return min(INT64_MAX, time.time_ns() + int(seconds * 1e9))
