"""Deadlines a caller's timeout gives, as the wire carries them (api/deadlines.py)."""

from __future__ import annotations

import time

from api.deadlines import deadline_after
from api.limits import INT64_MAX

# grpc-timeout allows up to 99,999,999 hours (a non-Python client may send that much;
# grpc-java's longest timeout is 2^63 - 1 ns, ~292 years): past 2262 in ns since the epoch.
TEN_THOUSAND_YEARS = 99_999_999 * 3600.0


def test_a_deadline_is_now_plus_the_timeout() -> None:
    before = time.time_ns()
    deadline = deadline_after(2.5)
    assert before + 2_500_000_000 <= deadline <= time.time_ns() + 2_500_000_000


def test_a_deadline_past_int64_is_the_largest_one() -> None:
    assert deadline_after(TEN_THOUSAND_YEARS) == INT64_MAX
    assert deadline_after(300 * 365 * 86_400.0) == INT64_MAX
