"""The controller: one elected instance turns the cluster's state into assignment changes.

It runs inside a shard process (``--controller``) or alone (``spotmatch controller``). Every
candidate campaigns; the leader watches the table and, after a short quiet period (debounce),
applies ``decide()``: each decision is a compare-and-swap on the assignment's revision, so a
decision made from a stale view loses and is re-made from the next view. The controller keeps no
state of its own beyond timers: a new leader picks up any half-finished move from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Counter

from cluster.decisions import Decision, Policy, decide
from cluster.errors import ClusterError
from cluster.model import ClusterView
from cluster.registry import DEFAULT_LEASE_TTL, Registry
from cluster.table import ClusterTable

log = logging.getLogger(__name__)

# Served by whichever process runs the controller (telemetry.metrics): moves, failovers,
# placements, each one assignment change that won its compare-and-swap.
DECISIONS = Counter(
    "spotmatch_controller_decisions_total",
    "Assignment changes the elected controller made, by reason (failover, rebalance, ...)",
    ["reason"],
)


@dataclass(frozen=True)
class ControllerConfig:
    controller_id: str
    lease_ttl: int = DEFAULT_LEASE_TTL
    debounce: float = 0.1  # quiet time after a change before acting
    tick: float = 0.5  # re-evaluate this often even without changes (move timeouts)
    settle: float = 1.0  # after election, wait this long for shards to (re)register
    policy: Policy = field(default_factory=Policy)


class Controller:
    def __init__(self, registry: Registry, table: ClusterTable, config: ControllerConfig) -> None:
        self._registry = registry
        self._table = table
        self._config = config
        self._changed = asyncio.Event()
        self._first_seen: dict[tuple[str, int], float] = {}
        # shard id -> (instance, first seen); None: no view yet in this term
        self._live_since: dict[str, tuple[str, float]] | None = None
        self.is_leader = False
        self.decisions_applied = 0
        table.listeners.append(lambda _view: self._changed.set())

    async def run(self) -> None:
        """Campaign, lead until the term is lost, campaign again; forever."""
        while True:
            try:
                leadership = await self._registry.campaign(
                    self._config.controller_id, self._config.lease_ttl
                )
            except ClusterError as exc:
                log.warning("controller campaign failed (%s); retrying", exc)
                await asyncio.sleep(self._config.lease_ttl / 3)
                continue
            log.info("controller %s elected", self._config.controller_id)
            self.is_leader = True
            try:
                await self._lead(leadership.lost)
            finally:
                self.is_leader = False
                with contextlib.suppress(ClusterError):
                    await leadership.resign()
            log.warning("controller %s lost its term", self._config.controller_id)

    async def _lead(self, lost: asyncio.Event) -> None:
        self._live_since = None
        await _wait_any(lost, self._config.settle)
        while not lost.is_set():
            self._changed.clear()
            await self.step(self._table.view())
            await _wait_any(self._changed, self._config.tick, lost)
            await asyncio.sleep(self._config.debounce)

    async def step(self, view: ClusterView) -> list[Decision]:
        """Decide from ``view`` and apply; returns what was applied."""
        decisions = decide(view, self._stuck_times(view), self._config.policy, self._held(view))
        applied = []
        for decision in decisions:
            if await self._apply(decision):
                applied.append(decision)
        self.decisions_applied += len(applied)
        return applied

    async def _apply(self, decision: Decision) -> bool:
        try:
            if decision.expected_revision == 0:
                stored = await self._registry.create_assignment(decision.assignment)
            else:
                stored = await self._registry.cas_assignment(
                    decision.expected_revision, decision.assignment
                )
        except ClusterError as exc:
            log.warning("controller: %s %s failed: %s", decision.reason, decision.symbol, exc)
            return False
        if stored is None:
            return False  # someone changed it first: the next view decides again
        DECISIONS.labels(decision.reason).inc()
        log.info(
            "controller: %s -> %s %s",
            decision.reason,
            stored.shard_id,
            stored.state.value,
            extra={"symbol": decision.symbol, "epoch": stored.epoch},
        )
        return True

    def _held(self, view: ClusterView) -> frozenset[str]:
        """Live shards that joined, or restarted (a new instance), less than ``join_hold``
        ago. The shards of a term's first view count as settled: a new leader cannot know
        when they joined, and holding every shard would stall pins and drains for the
        whole hold after each election."""
        now = time.monotonic()
        seen = self._live_since
        joined = now if seen is not None else float("-inf")
        live: dict[str, tuple[str, float]] = {}
        for shard_id, record in view.shards.items():
            before = (seen or {}).get(shard_id)
            if before is None or before[0] != record.instance:
                before = (record.instance, joined)
            live[shard_id] = before
        self._live_since = live
        hold = self._config.policy.join_hold
        return frozenset(s for s, (_, t) in live.items() if now - t < hold)

    def _stuck_times(self, view: ClusterView) -> dict[tuple[str, int], float]:
        now = time.monotonic()
        keys = {(s, a.revision) for s, a in view.assignments.items() if not a.routable()}
        self._first_seen = {k: self._first_seen.get(k, now) for k in keys}
        return {k: now - t for k, t in self._first_seen.items()}


async def _wait_any(
    event: asyncio.Event, timeout: float, also: asyncio.Event | None = None
) -> None:
    waits = [asyncio.ensure_future(event.wait())]
    if also is not None:
        waits.append(asyncio.ensure_future(also.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
