"""An in-process Registry with etcd's semantics, for tests and single-process runs.

One ``MemoryStore`` is the server: a key space with a global revision (one per write, like an
etcd transaction), per-key mod_revision, leases that really expire (asyncio timers), a bounded
history for watches and compaction. Each ``MemoryRegistry(store)`` is a client, so a test can
model a router, several shards and a controller sharing one cluster state. Values are stored in
the same encoding as in etcd (cluster/codec.py), so malformed values behave the same way.

Test hooks model etcd's failures: ``compact``, ``break_watches``, ``put_raw``,
``expire_lease`` / ``expire_controller_lease`` (lease loss) and ``set_reachable`` (this client
is cut off from the store: calls fail, watches break, its leases are not refreshed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from cluster import codec
from cluster.errors import InvalidRequest, MalformedValue, RegistryUnavailable, WatchLost
from cluster.leases import CAMPAIGN_POLL, KeptLeadership, KeptRegistration
from cluster.model import Assignment, Change, ChangeKind, ClusterView, ShardRecord

log = logging.getLogger(__name__)

HISTORY_LIMIT = 10_000  # revisions kept for watches; older ones are compacted away


@dataclass
class _Entry:
    value: bytes
    mod_revision: int
    lease: int = 0


@dataclass
class _Lease:
    ttl: int
    keys: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class _Watch:
    """One watch's undelivered batches; a lost watch holds only its WatchLost."""

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.pending: deque[tuple[int, list[Change]]] = deque()
        self.error: WatchLost | None = None
        self.ready = asyncio.Event()

    def push(self, revision: int, changes: list[Change]) -> None:
        if self.error is None:
            self.pending.append((revision, changes))
            self.ready.set()

    def lose(self, reason: str) -> None:
        self.pending.clear()
        self.error = WatchLost(reason)
        self.ready.set()

    async def next(self) -> list[Change]:
        while not self.pending:
            if self.error is not None:
                raise self.error
            self.ready.clear()
            await self.ready.wait()
        return self.pending.popleft()[1]


class MemoryStore:
    """The shared key space (the "server"). All methods are synchronous and atomic."""

    def __init__(self) -> None:
        self.revision = 1  # an empty etcd is at revision 1 too
        self.compacted = 0  # watches from below this revision are lost
        self._kv: dict[str, _Entry] = {}
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(1)
        self._history: deque[tuple[int, list[Change]]] = deque()
        self._watches: set[_Watch] = set()
        self._pulse = asyncio.Event()

    def get(self, key: str) -> _Entry | None:
        return self._kv.get(key)

    def items(self) -> list[tuple[str, _Entry]]:
        return sorted(self._kv.items())

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        if lease and lease not in self._leases:
            raise RegistryUnavailable(f"lease {lease} not found")
        return self._commit([(key, value, lease)])

    def delete(self, key: str) -> int:
        return self._commit([(key, None, 0)])

    def put_if(self, key: str, value: bytes, expected_revision: int, lease: int = 0) -> int | None:
        """Put if the key's mod_revision is ``expected_revision`` (0: the key is absent)."""
        entry = self._kv.get(key)
        if (entry.mod_revision if entry else 0) != expected_revision:
            return None
        return self.put(key, value, lease)

    def grant(self, ttl: int) -> int:
        lease_id = next(self._lease_ids)
        self._leases[lease_id] = _Lease(ttl)
        self._arm(lease_id)
        return lease_id

    def keepalive(self, lease_id: int) -> bool:
        """Restart the lease's TTL; False if it no longer exists."""
        if lease_id not in self._leases:
            return False
        self._arm(lease_id)
        return True

    def revoke(self, lease_id: int) -> None:
        """Delete the lease and, in one revision, every key attached to it."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        if lease.timer is not None:
            lease.timer.cancel()
        self._commit([(key, None, 0) for key in sorted(lease.keys)])

    def lease_of(self, key: str) -> int:
        entry = self._kv.get(key)
        return entry.lease if entry else 0

    def open_watch(self, from_revision: int, owner: object) -> _Watch:
        if 0 < from_revision < self.compacted:
            raise WatchLost(f"revision {from_revision} compacted (below {self.compacted})")
        watch = _Watch(owner)
        for revision, changes in self._history:
            if revision >= from_revision:
                watch.push(revision, changes)
        self._watches.add(watch)
        return watch

    def close_watch(self, watch: _Watch) -> None:
        self._watches.discard(watch)

    def compact(self, revision: int) -> None:
        """Forget history below ``revision``; watches still behind it are lost (as in etcd)."""
        self.compacted = max(self.compacted, min(revision, self.revision))
        while self._history and self._history[0][0] < self.compacted:
            self._history.popleft()
        for watch in list(self._watches):
            if watch.pending and watch.pending[0][0] < self.compacted:
                watch.lose("watch fell behind a compaction")

    def break_watches(self, owner: object | None = None) -> None:
        """Every current watch (of ``owner``, or all) raises WatchLost."""
        for watch in list(self._watches):
            if owner is None or watch.owner is owner:
                watch.lose("watch broken")
                self._watches.discard(watch)

    async def wait_change(self, timeout: float) -> None:
        """Return after the next write, or after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._pulse.wait()

    def _arm(self, lease_id: int) -> None:
        lease = self._leases[lease_id]
        if lease.timer is not None:
            lease.timer.cancel()
        loop = asyncio.get_running_loop()
        lease.timer = loop.call_later(lease.ttl, self.revoke, lease_id)

    def _commit(self, ops: list[tuple[str, bytes | None, int]]) -> int:
        """Apply puts (bytes) and deletes (None) in one new revision; no-op deletes are skipped."""
        ops = [op for op in ops if op[1] is not None or op[0] in self._kv]
        if not ops:
            return self.revision
        self.revision += 1
        changes: list[Change] = []
        for key, value, lease in ops:
            self._detach(key)
            if value is None:
                del self._kv[key]
            else:
                self._kv[key] = _Entry(value, self.revision, lease)
                if lease:
                    self._leases[lease].keys.add(key)
            change = codec.change_of(key, value, self.revision)
            if change is not None:
                changes.append(change)
        self._publish(changes)
        return self.revision

    def _detach(self, key: str) -> None:
        entry = self._kv.get(key)
        if entry is not None and entry.lease in self._leases:
            self._leases[entry.lease].keys.discard(key)

    def _publish(self, changes: list[Change]) -> None:
        if changes:
            self._history.append((self.revision, changes))
            if len(self._history) > HISTORY_LIMIT:
                self.compact(self._history[1][0])
            for watch in self._watches:
                watch.push(self.revision, changes)
        self._pulse.set()
        self._pulse = asyncio.Event()


class MemoryRegistry:
    """A client of a MemoryStore, implementing cluster.registry.Registry."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        self._reachable = True
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- Registry ---------------------------------------------------------------------------

    async def snapshot(self) -> ClusterView:
        self._check()
        builder = codec.ViewBuilder()
        for key, entry in self.store.items():
            builder.add_kv(key, entry.value, entry.mod_revision)
        return builder.view(self.store.revision)

    async def watch(self, from_revision: int) -> AsyncIterator[list[Change]]:
        if not self._reachable or self._closed:
            raise WatchLost("registry unreachable")
        watch = self.store.open_watch(from_revision, owner=self)
        try:
            while True:
                yield await watch.next()
        finally:
            self.store.close_watch(watch)

    async def register_shard(self, record: ShardRecord, ttl: int) -> KeptRegistration:
        key = codec.key_for(ChangeKind.SHARD, record.shard_id)
        registration = KeptRegistration(self, key, codec.encode_shard(record), ttl)
        await registration.register()
        self._spawn(registration.keep())
        return registration

    async def set_draining(self, shard_id: str, draining: bool) -> None:
        self._write(codec.key_for(ChangeKind.DRAIN, shard_id), codec.FLAG if draining else None)

    async def add_symbol(self, symbol: str) -> None:
        self._write(codec.key_for(ChangeKind.SYMBOL, symbol), codec.FLAG)

    async def set_pin(self, symbol: str, shard_id: str | None) -> None:
        value = None if shard_id is None else codec.encode_text(shard_id)
        self._write(codec.key_for(ChangeKind.PIN, symbol), value)

    async def create_assignment(self, assignment: Assignment) -> Assignment | None:
        return await self.cas_assignment(0, assignment)

    async def cas_assignment(
        self, expected_revision: int, assignment: Assignment
    ) -> Assignment | None:
        """See Registry; ``expected_revision`` 0 means "no assignment yet" (create)."""
        self._check()
        key = codec.key_for(ChangeKind.ASSIGNMENT, assignment.symbol)
        revision = self.store.put_if(key, codec.encode_assignment(assignment), expected_revision)
        if revision is None:
            return None
        return replace(assignment, epoch=assignment.epoch or revision, revision=revision)

    async def get_assignment(self, symbol: str) -> Assignment | None:
        self._check()
        entry = self.store.get(codec.key_for(ChangeKind.ASSIGNMENT, symbol))
        if entry is None:
            return None
        value = codec.decode(ChangeKind.ASSIGNMENT, symbol, entry.value, entry.mod_revision)
        if not isinstance(value, Assignment):  # decode returns an Assignment for this kind
            raise MalformedValue(f"assignments/{symbol}")
        return value

    async def campaign(self, candidate_id: str, ttl: int) -> KeptLeadership:
        value = codec.encode_text(candidate_id)
        while True:
            if self._closed:
                raise RegistryUnavailable("registry client closed")
            if self._reachable and self.store.get(codec.CONTROLLER_KEY) is None:
                lease = self.store.grant(ttl)
                if self.store.put_if(codec.CONTROLLER_KEY, value, 0, lease) is not None:
                    leadership = KeptLeadership(self, lease, ttl)
                    self._spawn(leadership.keep())
                    return leadership
                self.store.revoke(lease)
            await self.store.wait_change(CAMPAIGN_POLL)

    async def close(self) -> None:
        """Stop this client's refresh tasks (its leases then expire) and break its watches."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.store.break_watches(owner=self)

    # -- test hooks -------------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        self.store.compact(revision)

    def break_watches(self) -> None:
        self.store.break_watches()

    def put_raw(self, key: str, value: bytes) -> int:
        """Store ``value`` under the relative ``key`` as is (e.g. a malformed value)."""
        return self.store.put(key, value)

    def expire_lease(self, shard_id: str) -> None:
        """The lease of ``shard_id``'s registration expires now (its key disappears)."""
        self._expire_key_lease(codec.key_for(ChangeKind.SHARD, shard_id))

    def expire_controller_lease(self) -> None:
        self._expire_key_lease(codec.CONTROLLER_KEY)

    def set_reachable(self, reachable: bool) -> None:
        """Cut this client off (calls raise RegistryUnavailable, watches break) or reconnect."""
        self._reachable = reachable
        if not reachable:
            self.store.break_watches(owner=self)

    # -- lease calls (cluster.leases.LeaseBackend) -------------------------------------------

    async def grant(self, ttl: int) -> int:
        self._check()
        return self.store.grant(ttl)

    async def keepalive(self, lease: int, timeout: float) -> bool | None:
        if not self._reachable or self._closed:
            return None
        return self.store.keepalive(lease)

    async def put_leased(self, key: str, value: bytes, lease: int) -> None:
        self._check()
        self.store.put(key, value, lease)

    async def revoke(self, lease: int) -> None:
        self._check()
        self.store.revoke(lease)

    # -- internals --------------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise RegistryUnavailable("registry client closed")
        if not self._reachable:
            raise RegistryUnavailable("registry unreachable")

    def _write(self, key: str, value: bytes | None) -> None:
        self._check()
        if value is None:
            self.store.delete(key)
        else:
            self.store.put(key, value)

    def _expire_key_lease(self, key: str) -> None:
        lease = self.store.lease_of(key)
        if not lease:
            raise InvalidRequest(f"{key} is not attached to a lease")
        self.store.revoke(lease)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
