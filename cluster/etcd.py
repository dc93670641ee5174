"""The Registry over etcd v3 (aetcd 1.0.0, asyncio gRPC).

Every aetcd/gRPC failure becomes RegistryUnavailable (WatchLost for watches): callers never see
aetcd's exceptions. A snapshot is one range read of the prefix, so its header revision makes it
consistent. Watch events arrive one by one from aetcd; they are regrouped per revision (one
etcd transaction = one revision = one batch). Lease keeping (registrations, the controller) is
ours, as aetcd has none: refresh every TTL/3, and when the lease is gone or has not been
refreshed for longer than its TTL, a registration grants a new lease and registers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import aetcd
import grpc

from cluster import codec
from cluster.errors import (
    ClusterError,
    InvalidRequest,
    MalformedValue,
    RegistryUnavailable,
    WatchLost,
)
from cluster.leases import CAMPAIGN_POLL, KeptLeadership, KeptRegistration
from cluster.model import Assignment, Change, ChangeKind, ClusterView, ShardRecord
from cluster.registry import DEFAULT_PREFIX

log = logging.getLogger(__name__)

T = TypeVar("T")

# gRPC channel: reconnect quickly after an etcd restart (the default backoff grows to 120 s),
# and ping a silent connection so a watch on a hung server fails instead of waiting forever.
# etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.http2.max_pings_without_data": 0,
}
_FAILURES = (aetcd.exceptions.ClientError, grpc.RpcError, TimeoutError, OSError)
_CONNECTION_FAILURES = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    TimeoutError,
    OSError,
)
CLOSE_TIMEOUT = 1.0  # seconds to close a client before giving up on it
_END = object()  # end of an aetcd watch stream


class EtcdRegistry:
    """cluster.registry.Registry on etcd; ``timeout`` bounds every call (seconds)."""

    def __init__(
        self, endpoints: Sequence[str], *, prefix: str = DEFAULT_PREFIX, timeout: float = 2.0
    ) -> None:
        if not endpoints:
            raise InvalidRequest("no etcd endpoint")
        self._endpoints = [_host_port(e) for e in endpoints]
        self._prefix = prefix.encode()
        self._timeout = timeout
        self._client: aetcd.Client | None = None
        self._first_endpoint = 0
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        """Connect to the first endpoint that answers (calls also connect lazily)."""
        await self._connected()

    async def close(self) -> None:
        """Stop lease refreshing (leases then expire by TTL) and close the connection."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await _close_quietly(client)

    # -- reads ------------------------------------------------------------------------------

    async def snapshot(self) -> ClusterView:
        result = await self._call("snapshot", lambda c: c.get_prefix(self._prefix))
        builder = codec.ViewBuilder()
        for kv in result:
            builder.add_kv(self._relative(kv.key), bytes(kv.value), kv.mod_revision)
        return builder.view(result.header.revision)

    async def get_assignment(self, symbol: str) -> Assignment | None:
        key = codec.key_for(ChangeKind.ASSIGNMENT, symbol)
        got = await self._call("get assignment", lambda c: c.get(self._key(key)))
        if got is None:
            return None
        value = codec.decode(ChangeKind.ASSIGNMENT, symbol, bytes(got.value), got.mod_revision)
        if not isinstance(value, Assignment):  # decode returns an Assignment for this kind
            raise MalformedValue(key)
        return value

    async def watch(self, from_revision: int) -> AsyncIterator[list[Change]]:
        try:
            client = await self._connected()
            async with asyncio.timeout(self._timeout):
                stream = await client.watch_prefix(self._prefix, start_revision=from_revision)
        except aetcd.exceptions.RevisionCompactedError as exc:
            raise WatchLost(f"revision {from_revision} compacted: {exc}") from exc
        except (ClusterError, *_FAILURES) as exc:
            raise WatchLost(f"watch failed: {exc!r}") from exc
        events: asyncio.Queue[object] = asyncio.Queue()
        pump = asyncio.create_task(_pump(stream, events))
        try:
            while True:
                items = [await events.get()]
                while not events.empty():
                    items.append(events.get_nowait())
                for batch in self._batches(items):
                    yield batch
        finally:
            pump.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await stream.cancel()

    # -- writes -----------------------------------------------------------------------------

    async def register_shard(self, record: ShardRecord, ttl: int) -> KeptRegistration:
        key = codec.key_for(ChangeKind.SHARD, record.shard_id)
        registration = KeptRegistration(self, key, codec.encode_shard(record), ttl)
        await registration.register()
        self.spawn(registration.keep())
        return registration

    async def set_draining(self, shard_id: str, draining: bool) -> None:
        key = codec.key_for(ChangeKind.DRAIN, shard_id)
        await self._write(key, codec.FLAG if draining else None)

    async def add_symbol(self, symbol: str) -> None:
        await self._write(codec.key_for(ChangeKind.SYMBOL, symbol), codec.FLAG)

    async def set_pin(self, symbol: str, shard_id: str | None) -> None:
        value = None if shard_id is None else codec.encode_text(shard_id)
        await self._write(codec.key_for(ChangeKind.PIN, symbol), value)

    async def create_assignment(self, assignment: Assignment) -> Assignment | None:
        return await self.cas_assignment(0, assignment)

    async def cas_assignment(
        self, expected_revision: int, assignment: Assignment
    ) -> Assignment | None:
        """See Registry; ``expected_revision`` 0 means "no assignment yet" (create)."""
        key = codec.key_for(ChangeKind.ASSIGNMENT, assignment.symbol)
        revision = await self.put_if(key, codec.encode_assignment(assignment), expected_revision)
        if revision is None:
            return None
        epoch = assignment.epoch or revision
        return Assignment(
            assignment.symbol,
            assignment.shard_id,
            assignment.state,
            epoch,
            assignment.target,
            revision,
        )

    async def campaign(self, candidate_id: str, ttl: int) -> KeptLeadership:
        value = codec.encode_text(candidate_id)
        while True:
            try:
                leadership = await self._try_to_lead(value, ttl)
            except RegistryUnavailable as exc:
                log.debug("campaign of %s: %s", candidate_id, exc)
            else:
                if leadership is not None:
                    return leadership
            await asyncio.sleep(CAMPAIGN_POLL)

    async def _try_to_lead(self, value: bytes, ttl: int) -> KeptLeadership | None:
        """Take the free controller key on a new lease; None if someone holds it."""
        key = self._key(codec.CONTROLLER_KEY)
        if await self._call("get", lambda c: c.get(key)) is not None:
            return None
        lease = await self.grant(ttl)
        if await self.put_if(codec.CONTROLLER_KEY, value, 0, lease) is None:
            await self.revoke(lease)
            return None
        leadership = KeptLeadership(self, lease, ttl)
        self.spawn(leadership.keep())
        return leadership

    # -- test and maintenance hooks ---------------------------------------------------------

    async def compact(self, revision: int) -> None:
        await self._call("compact", lambda c: c.compact(revision, physical=True))

    async def put_raw(self, key: str, value: bytes) -> int:
        """Store ``value`` under the relative ``key`` as is (e.g. a malformed value)."""
        put = await self._call("put", lambda c: c.put(self._key(key), value))
        return int(put.header.revision)

    async def expire_lease(self, shard_id: str) -> None:
        """Revoke the lease of ``shard_id``'s registration: its owner has lost it."""
        await self._revoke_key_lease(codec.key_for(ChangeKind.SHARD, shard_id))

    async def expire_controller_lease(self) -> None:
        await self._revoke_key_lease(codec.CONTROLLER_KEY)

    # -- used by registrations and leaderships ----------------------------------------------

    async def grant(self, ttl: int) -> int:
        lease = await self._call("lease grant", lambda c: c.lease(ttl))
        return int(lease.id)

    async def revoke(self, lease: int) -> None:
        await self._call("lease revoke", lambda c: c.revoke_lease(lease))

    async def keepalive(self, lease: int, timeout: float) -> bool | None:
        """True if refreshed, False if the lease is gone, None if etcd did not answer (in
        ``timeout`` seconds, at most the registry's own timeout)."""
        try:
            reply = await self._call(
                "lease keepalive", lambda c: c.refresh_lease(lease), min(timeout, self._timeout)
            )
        except RegistryUnavailable:
            return None
        return None if reply is None else bool(reply.TTL > 0)

    async def put_leased(self, key: str, value: bytes, lease: int) -> None:
        await self._call("put", lambda c: c.put(self._key(key), value, lease=lease))

    async def put_if(
        self, key: str, value: bytes, expected_revision: int, lease: int = 0
    ) -> int | None:
        """Put if the key's mod_revision is ``expected_revision`` (0: absent); the new
        revision, or None if the compare failed."""
        full = self._key(key)

        async def txn(c: aetcd.Client) -> tuple[bool, list[Any]]:
            tx = c.transactions
            if expected_revision == 0:
                compare = tx.version(full) == 0
            else:
                compare = tx.mod(full) == expected_revision
            put = tx.put(full, value, lease=lease or None)
            result: tuple[bool, list[Any]] = await c.transaction(
                compare=[compare], success=[put], failure=[]
            )
            return result

        succeeded, responses = await self._call("transaction", txn)
        if not succeeded:
            return None
        return int(responses[0].response_put.header.revision)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- internals --------------------------------------------------------------------------

    def _key(self, relative: str) -> bytes:
        return self._prefix + relative.encode()

    def _relative(self, key: bytes) -> str:
        return key[len(self._prefix) :].decode(errors="replace")

    async def _write(self, key: str, value: bytes | None) -> None:
        if value is None:
            await self._call("delete", lambda c: c.delete(self._key(key)))
        else:
            await self._call("put", lambda c: c.put(self._key(key), value))

    async def _revoke_key_lease(self, key: str) -> None:
        got = await self._call("get", lambda c: c.get(self._key(key)))
        if got is None or not got.lease:
            raise InvalidRequest(f"{key} is not attached to a lease")
        await self.revoke(int(got.lease))

    async def _call(
        self, what: str, op: Callable[[aetcd.Client], Awaitable[T]], timeout: float = 0.0
    ) -> T:
        """Run one etcd call under the timeout (the registry's unless given); failures
        become RegistryUnavailable."""
        client = await self._connected()
        try:
            async with asyncio.timeout(timeout or self._timeout):
                return await op(client)
        except _FAILURES as exc:
            if isinstance(exc, _CONNECTION_FAILURES):
                self._failed(client)
            raise RegistryUnavailable(f"etcd {what} failed: {exc!r}") from exc

    async def _connected(self) -> aetcd.Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await self._first_answering()
            return self._client

    async def _first_answering(self) -> aetcd.Client:
        """Try the endpoints in order (from the one after the last that failed)."""
        errors = []
        count = len(self._endpoints)
        for i in range(count):
            index = (self._first_endpoint + i) % count
            host, port = self._endpoints[index]
            client = aetcd.Client(
                host=host, port=port, timeout=self._timeout, options=CHANNEL_OPTIONS
            )
            try:
                async with asyncio.timeout(self._timeout):
                    await client.get(self._key(codec.CONTROLLER_KEY))
            except _FAILURES as exc:
                errors.append(f"{host}:{port}: {exc!r}")
                await _close_quietly(client)
                continue
            self._first_endpoint = index
            return client
        raise RegistryUnavailable("no etcd endpoint answered: " + "; ".join(errors))

    def _failed(self, client: aetcd.Client) -> None:
        """With several endpoints, a connection failure makes the next one reconnect elsewhere; with
        one, gRPC reconnects the same channel by itself."""
        if len(self._endpoints) > 1 and self._client is client:
            self._client = None
            self._first_endpoint = (self._first_endpoint + 1) % len(self._endpoints)
            self.spawn(_close_quietly(client))

    def _batches(self, items: list[object]) -> Iterator[list[Change]]:
        """Group consecutive events by revision; WatchLost where the stream ended."""
        batch: list[Change] = []
        for item in items:
            if item is _END or isinstance(item, BaseException):
                if batch:  # deliver what came before the error first
                    yield batch
                raise WatchLost(f"watch ended: {item!r}")
            event: Any = item  # an aetcd.rtypes.Event
            kv = event.kv
            deleted = event.kind == "DELETE"
            raw = None if deleted else bytes(kv.value)
            change = codec.change_of(self._relative(kv.key), raw, kv.mod_revision)
            if change is None:
                continue
            if batch and change.revision != batch[0].revision:
                yield batch
                batch = []
            batch.append(change)
        if batch:
            yield batch


async def _pump(stream: Any, events: asyncio.Queue[object]) -> None:
    """Move aetcd's events into ``events``; each etcd response lands there whole, as aetcd
    queues a response's events without yielding to the loop."""
    try:
        async for event in stream:
            events.put_nowait(event)
    except Exception as exc:
        events.put_nowait(exc)
    events.put_nowait(_END)


async def _close_quietly(client: aetcd.Client) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await client.close()


def _host_port(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.removeprefix("http://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidRequest(f"etcd endpoint {endpoint!r} is not host:port")
    return host, int(port)
