"""Held system-cancel reports (shard/system_cancels.py): each router gets one once, within
the hold time; the hold is bounded in time and count."""

from __future__ import annotations

from matching.v1 import orders_pb2
from shard.system_cancels import HeldReports


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def report(seq: int) -> orders_pb2.CommandResult:
    return orders_pb2.CommandResult(report=orders_pb2.ExecutionReport(account="mm", seq=seq))


def seqs(results: list[orders_pb2.CommandResult]) -> list[int]:
    return [r.report.seq for r in results]


def test_each_router_takes_a_held_report_once_unless_it_was_told_at_commit() -> None:
    held = HeldReports(hold_seconds=60, cap=10, clock=Clock())
    held.hold("mm", report(1), had={"r2"})
    held.hold("mm", report(2), had=set())
    assert seqs(held.take("mm", "r1")) == [1, 2]
    assert held.take("mm", "r1") == []
    assert seqs(held.take("mm", "r2")) == [2]
    assert held.take("other", "r1") == []


def test_held_reports_expire_after_the_hold_time() -> None:
    clock = Clock()
    held = HeldReports(hold_seconds=60, cap=10, clock=clock)
    held.hold("mm", report(1), had=set())
    clock.now = 30.0
    held.hold("mm", report(2), had=set())
    clock.now = 60.0
    assert seqs(held.take("mm", "r1")) == [2]
    clock.now = 90.0
    assert held.take("mm", "r3") == [] and len(held) == 0


def test_the_hold_is_capped_oldest_first() -> None:
    held = HeldReports(hold_seconds=60, cap=3, clock=Clock())
    for seq in range(1, 6):
        held.hold("mm" if seq % 2 else "mm2", report(seq), had=set())
    assert len(held) == 3
    assert seqs(held.take("mm", "r1")) == [3, 5]
    assert seqs(held.take("mm2", "r1")) == [4]
