"""A shard in a cluster: registered under a lease, following the assignment table.

For each symbol assigned to this shard (or still held by it) one task at a time converges the
shard's custody to the assignment:

    LOADING on me  -> fence with the assignment's epoch, load, serve, then CAS it to ACTIVE
    ACTIVE on me   -> serve (take it if not held, e.g. after a restart; resume after a rollback)
    MOVING from me -> pause, commit what is in flight, CAS to LOADING on the target, drop it
    someone else's -> drop it (if a commit raced the new owner, Postgres fenced it anyway)

Nothing here guards Postgres: the epoch fence in every batch transaction does. etcd being
down stalls only these transitions; symbols already served keep trading.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from cluster.errors import ClusterError
from cluster.model import AssignmentState, ClusterView, ShardRecord
from cluster.registry import Registration, Registry
from cluster.table import ClusterTable
from persistence.errors import FencedError, PersistenceError
from shard.custody import SymbolCustody
from shard.ownership import SymbolState

log = logging.getLogger(__name__)

_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)


class ClusterMember:
    def __init__(
        self,
        registry: Registry,
        table: ClusterTable,
        custody: SymbolCustody,
        address: str,
        lease_ttl: int,
    ) -> None:
        self._registry = registry
        self._table = table
        self._custody = custody
        self._me = custody.shard_id
        self._address = address
        self._ttl = lease_ttl
        self._instance = uuid.uuid4().hex  # this process's registration (ShardRecord)
        self._dirty: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.registration: Registration | None = None

    async def start(self, timeout: float) -> None:
        await self._table.start(timeout)
        self.registration = await self._registry.register_shard(
            ShardRecord(self._me, self._address, instance=self._instance), self._ttl
        )
        self._table.listeners.append(self._on_change)
        self._on_change(self._table.view())

    async def stop(self) -> None:
        """Leave the cluster: revoke the lease so the controller fails over at once."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self.registration is not None:
            try:
                await self.registration.close()
            except ClusterError as exc:
                log.warning("could not revoke the lease (%s); it will expire", exc)

    def _on_change(self, view: ClusterView) -> None:
        ownership = self._custody.ownership
        ownership.set_hints(
            {s: a.shard_id for s, a in view.assignments.items() if a.shard_id != self._me}
        )
        ownership.set_known(set(view.symbols) | set(view.assignments))
        mine = {s for s, a in view.assignments.items() if a.shard_id == self._me}
        for symbol in mine.union(ownership.owned()):
            self._dirty.add(symbol)
            if symbol not in self._tasks:
                self._tasks[symbol] = asyncio.create_task(self._converge(symbol))

    async def _converge(self, symbol: str) -> None:
        attempt = 0
        try:
            while symbol in self._dirty:
                self._dirty.discard(symbol)
                try:
                    async with self._custody.guard(symbol):
                        await self._step(symbol)
                    attempt = 0
                except (PersistenceError, ClusterError) as exc:
                    delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                    log.warning("%s; retrying in %.1fs", exc, delay, extra={"symbol": symbol})
                    attempt += 1
                    self._dirty.add(symbol)
                    await asyncio.sleep(delay)
        finally:
            self._tasks.pop(symbol, None)

    async def _step(self, symbol: str) -> None:
        assignment = self._table.assignment(symbol)
        owned = self._custody.ownership.get(symbol)
        if assignment is None or assignment.shard_id != self._me:
            if owned is not None:
                self._custody.drop(symbol, assignment.shard_id if assignment else "")
                log.info("released the symbol (now %s)", assignment, extra={"symbol": symbol})
            return
        if assignment.state is AssignmentState.MOVING:
            await self._hand_over(symbol, assignment.revision, assignment.target)
            return
        if owned is None or owned.epoch != assignment.epoch:
            try:
                await self._custody.take(symbol, assignment.epoch)
            except FencedError:
                log.warning(
                    "the assignment's epoch is stale; waiting",
                    extra={"symbol": symbol, "epoch": assignment.epoch},
                )
                return
        elif owned.state is SymbolState.MOVING:
            self._custody.resume(symbol)  # the move was rolled back
        if assignment.state is AssignmentState.LOADING:
            await self._registry.cas_assignment(assignment.revision, assignment.activated())

    async def _hand_over(self, symbol: str, revision: int, target: str) -> None:
        current = self._table.assignment(symbol)
        if current is None or current.revision != revision:
            return
        if target not in self._table.view().shards:
            return  # never hand to a shard that is not live: the controller rolls it back
        await self._custody.quiesce(symbol)
        stored = await self._registry.cas_assignment(revision, current.handed_to(target))
        if stored is None:
            self._dirty.add(symbol)  # lost to the controller (abort or force): look again
            return
        self._custody.drop(symbol, target)
        log.info("handed the symbol to %s", target, extra={"symbol": symbol, "epoch": stored.epoch})
