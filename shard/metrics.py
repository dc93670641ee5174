"""A shard's Prometheus metrics (DESIGN section 9; served by telemetry.metrics).

Counted once per committed batch, from what the batch answered: commands by outcome (an
engine reject code, ``accepted``, ``replayed``, or the reason a command was refused
unexecuted), batch sizes, and the time from a batch's transaction start to its COMMIT.
Counted once per call: its time from commands taken in to answered. Counted at each change
of a symbol's custody (served, recovering, moving, released), so moves, failovers, reloads
and fencing show. Gauges (queued commands, symbols by state) are read when scraped.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import Counter, Gauge, Histogram

from persistence.rows import BatchRows
from shard.admission import Outcome
from shard.engine import RejectCode, Report
from shard.errors import CommandFailure
from shard.ownership import RELEASED, SERVED, Ownership, SymbolState
from shard.pipeline import Commit, Committed, Pipeline, StartCommit
from shard.system_cancels import HeldReports
from telemetry.metrics import CALL_BUCKETS, reject_label

COMMANDS = Counter(
    "spotmatch_shard_commands_total",
    "Commands answered after their batch committed, by outcome",
    ["shard", "outcome"],
)
BATCH_COMMANDS = Histogram(
    "spotmatch_shard_batch_commands",
    "Commands per committed batch",
    ["shard"],
    buckets=(1, 5, 20, 50, 100, 200, 500, 1000, 2000, 4096),
)
COMMIT_SECONDS = Histogram(
    "spotmatch_shard_commit_seconds",
    "From a batch's transaction start (right after matching) to its COMMIT returning",
    ["shard"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FAILED_COMMITS = Counter(
    "spotmatch_shard_failed_commits_total",
    "Batch transactions that failed (fenced, Postgres down, any error): nothing acknowledged",
    ["shard"],
)
SYMBOL_CHANGES = Counter(
    "spotmatch_shard_symbol_changes_total",
    "Changes of a symbol's custody: served (taken, or back after a reload or a rolled-back"
    " move), recovering (after a failed commit), moving (handing over), released",
    ["shard", "change"],
)
CHANGES = (SERVED, SymbolState.RECOVERING.value, SymbolState.MOVING.value, RELEASED)
REQUEST_SECONDS = Histogram(
    "spotmatch_shard_request_seconds",
    "From a call's (or stream message's) commands taken in to all of them answered, after"
    " their commit: unary, batch and trade calls of shard-aware clients; execute messages"
    " of routers",
    ["shard", "kind"],
    buckets=CALL_BUCKETS,
)
REQUEST_KINDS = ("unary", "batch", "trade", "execute")
QUEUED = Gauge("spotmatch_shard_queued_commands", "Commands waiting to be matched", ["shard"])
SYMBOLS = Gauge("spotmatch_shard_symbols", "Symbols held, by state", ["shard", "state"])
HELD_CANCELS = Gauge(
    "spotmatch_shard_held_system_cancels",
    "System-cancel reports held for routers not told yet (decision 0023)",
    ["shard"],
)
DROPPED_CANCELS = Counter(
    "spotmatch_shard_dropped_system_cancels_total",
    "Held system-cancel reports dropped past the hold's cap before their hold time ran out",
    ["shard"],
)

_ACCEPTED = "accepted"


def _outcome_names() -> dict[object, str]:
    names: dict[object, str] = {
        code: code.name.lower() for code in RejectCode if code is not RejectCode.NONE
    }
    names[RejectCode.NONE] = _ACCEPTED
    return names


class ShardMetrics:
    def __init__(self, shard_id: str) -> None:
        self._shard = shard_id
        self._names = _outcome_names()
        self._batch = BATCH_COMMANDS.labels(shard_id)
        self._commit = COMMIT_SECONDS.labels(shard_id)
        self._failed = FAILED_COMMITS.labels(shard_id)

    def watch(self, pipeline: Pipeline, ownership: Ownership, held: HeldReports) -> None:
        """Read the gauges from these when scraped; count each committed batch."""
        QUEUED.labels(self._shard).set_function(lambda: pipeline.queued_commands)
        HELD_CANCELS.labels(self._shard).set_function(lambda: len(held))
        held.on_drop = DROPPED_CANCELS.labels(self._shard).inc
        for state in SymbolState:
            SYMBOLS.labels(self._shard, state.value).set_function(
                lambda state=state: ownership.count(state)  # type: ignore[misc]
            )
        pipeline.after_commit.append(self.on_commit)
        changes = {change: SYMBOL_CHANGES.labels(self._shard, change) for change in CHANGES}
        ownership.listeners.append(lambda change: changes[change].inc())

    def on_commit(self, committed: Iterator[Committed]) -> None:
        """The pipeline's after-commit hook: one tally per batch."""
        tally: Tally[str] = Tally()
        for _, outcome, _ in committed:
            tally[self._name(outcome)] += 1
        for name, count in tally.items():
            COMMANDS.labels(self._shard, name).inc(count)
        total = tally.total()
        if total:
            self._batch.observe(total)

    def _name(self, outcome: Outcome) -> str:
        if type(outcome) is Report:
            return self._names[outcome.reject_code]
        if isinstance(outcome, CommandFailure):
            return reject_label(outcome.reason)
        return "replayed"

    def request_timers(self) -> dict[str, Callable[[float], None]]:
        """What the servicers give each call's seconds, by kind (shard.results)."""
        return {kind: REQUEST_SECONDS.labels(self._shard, kind).observe for kind in REQUEST_KINDS}

    def timed(self, start: StartCommit) -> StartCommit:
        """``start`` whose commits are timed, and whose failures counted."""

        def started(rows: BatchRows) -> Commit:
            return _TimedCommit(start(rows), self._commit.observe, self._failed.inc)

        return started

    def close(self) -> None:
        for metric in (BATCH_COMMANDS, COMMIT_SECONDS, FAILED_COMMITS, QUEUED, HELD_CANCELS,
                       DROPPED_CANCELS):  # fmt: skip
            metric.remove(self._shard)
        for state in SymbolState:
            SYMBOLS.remove(self._shard, state.value)
        for change in CHANGES:
            SYMBOL_CHANGES.remove(self._shard, change)
        for kind in REQUEST_KINDS:
            REQUEST_SECONDS.remove(self._shard, kind)


class _TimedCommit:
    def __init__(
        self, inner: Commit, committed: Callable[[float], None], failed: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._committed = committed
        self._failed = failed
        self._started = time.perf_counter()

    async def commit(self) -> None:
        try:
            await self._inner.commit()
        except BaseException:
            self._failed()
            raise
        self._committed(time.perf_counter() - self._started)

    async def abort(self) -> None:
        await self._inner.abort()
