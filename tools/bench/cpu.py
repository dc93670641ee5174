"""CPU time of benchmarked processes, read from /proc (Linux): what each order costs them.

A process and its children (Postgres: the postmaster and its backends) are measured
together. A child that exits during a measurement takes its CPU time with it, so measure
over phases where the set of processes is stable (the shard's pooled connections are).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields after the command name


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its direct children, as of now."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        # fields[1] is the parent pid; [11], [12] are utime, stime (stat fields 4, 14, 15).
        if int(entry.name) == root or int(fields[1]) == root:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


class CpuMeter:
    """CPU seconds spent by named process trees between ``start`` and ``stop``."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self._roots = dict(roots)
        self._started: dict[str, float] = {}

    def start(self) -> None:
        self._started = {name: tree_cpu_seconds(pid) for name, pid in self._roots.items()}

    def stop(self) -> dict[str, float]:
        return {
            name: tree_cpu_seconds(pid) - self._started[name] for name, pid in self._roots.items()
        }


def per_order_by_kind(cpu_seconds: Mapping[str, float], orders: int) -> dict[str, float]:
    """Microseconds of CPU per order, summed by kind: the name up to its first "-" (so
    "shard-1" and "shard-2" count as "shard")."""
    totals: dict[str, float] = {}
    for name, seconds in cpu_seconds.items():
        kind = name.split("-", 1)[0]
        totals[kind] = totals.get(kind, 0.0) + seconds
    return {kind: round(s / orders * 1e6, 1) if orders else 0.0 for kind, s in totals.items()}
