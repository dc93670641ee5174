"""What only the etcd backend has: endpoints, outages, pauses, transactions as one batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aetcd
import pytest

from cluster.errors import InvalidRequest, RegistryUnavailable, WatchLost
from cluster.etcd import EtcdRegistry
from cluster.model import Assignment, AssignmentState, ChangeKind, ShardRecord
from cluster.registry import DEFAULT_PREFIX
from tools.services import EtcdServer, free_port

TTL = 2
TIMEOUT = 1.0  # per etcd call
S1 = ShardRecord("s1", "127.0.0.1:7001")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        await asyncio.sleep(0.1)


async def has_shard(registry: EtcdRegistry, shard_id: str) -> bool:
    try:
        return shard_id in (await registry.snapshot()).shards
    except RegistryUnavailable:
        return False


@pytest.fixture
async def registry(etcd_server: EtcdServer) -> AsyncIterator[EtcdRegistry]:
    registry = EtcdRegistry([etcd_server.endpoint], timeout=TIMEOUT)
    await registry.connect()
    yield registry
    await registry.close()


def test_endpoints_must_be_host_port() -> None:
    with pytest.raises(InvalidRequest):
        EtcdRegistry([])
    with pytest.raises(InvalidRequest):
        EtcdRegistry(["localhost"])
    EtcdRegistry(["http://127.0.0.1:2379", "127.0.0.1:2380"])  # both forms are accepted


async def test_connect_skips_an_endpoint_that_does_not_answer(etcd_server: EtcdServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    registry = EtcdRegistry([dead, etcd_server.endpoint], timeout=TIMEOUT)
    try:
        await registry.connect()
        await registry.add_symbol("BTC-USD")
        assert (await registry.snapshot()).symbols == {"BTC-USD"}
    finally:
        await registry.close()


async def test_connect_fails_cleanly_when_no_endpoint_answers() -> None:
    registry = EtcdRegistry([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"], timeout=0.5)
    try:
        with pytest.raises(RegistryUnavailable, match="no etcd endpoint answered"):
            await asyncio.wait_for(registry.connect(), 10)
    finally:
        await registry.close()


async def test_calls_to_a_stopped_etcd_raise_registry_unavailable(
    etcd_server: EtcdServer, registry: EtcdRegistry
) -> None:
    created = await registry.create_assignment(Assignment("A", "s1", AssignmentState.LOADING))
    assert created is not None
    etcd_server.stop()
    calls = [
        registry.snapshot(),
        registry.add_symbol("B"),
        registry.set_pin("A", "s2"),
        registry.cas_assignment(created.revision, created.activated()),
        registry.get_assignment("A"),
        registry.register_shard(S1, TTL),
    ]
    for call in calls:
        with pytest.raises(RegistryUnavailable):
            await asyncio.wait_for(call, 10)
    with pytest.raises(WatchLost):
        async for _ in registry.watch(1):
            pass


async def test_a_watch_is_lost_when_etcd_stops(
    etcd_server: EtcdServer, registry: EtcdRegistry
) -> None:
    start = (await registry.snapshot()).revision + 1
    seen: list[str] = []

    async def follow() -> None:
        async for batch in registry.watch(start):
            seen.extend(c.name for c in batch)

    watcher = asyncio.create_task(follow())
    await registry.add_symbol("A")
    await eventually(lambda: _true(seen == ["A"]), 5)
    etcd_server.stop()
    with pytest.raises(WatchLost):
        await asyncio.wait_for(watcher, 10)


async def _true(value: bool) -> bool:
    return value


async def test_one_transaction_is_one_batch(
    etcd_server: EtcdServer, registry: EtcdRegistry
) -> None:
    start = (await registry.snapshot()).revision + 1
    async with aetcd.Client(port=etcd_server.client_port, timeout=TIMEOUT) as client:
        tx = client.transactions
        puts = [tx.put(f"{DEFAULT_PREFIX}symbols/{s}".encode(), b"1") for s in ("A", "B", "C")]
        await client.transaction(compare=[], success=puts, failure=[])
        await client.put(f"{DEFAULT_PREFIX}symbols/D".encode(), b"1")
    batches = []
    async for batch in registry.watch(start):
        batches.append([(c.kind, c.name) for c in batch])
        if len(batches) == 2:
            break
    symbols = ChangeKind.SYMBOL
    assert batches == [[(symbols, "A"), (symbols, "B"), (symbols, "C")], [(symbols, "D")]]


async def test_a_registration_comes_back_after_etcd_was_paused_past_its_ttl(
    etcd_server: EtcdServer, registry: EtcdRegistry
) -> None:
    registration = await registry.register_shard(S1, TTL)
    etcd_server.pause()
    try:
        await eventually(lambda: _true(not registration.registered.is_set()), 4 * TTL)
    finally:
        etcd_server.resume()
    await eventually(lambda: _true(registration.registered.is_set()), 5 * TTL)
    assert registration.lease_losses == 1
    await eventually(lambda: has_shard(registry, "s1"), 2 * TTL)


async def test_a_registration_comes_back_after_an_etcd_restart(
    etcd_server: EtcdServer, registry: EtcdRegistry
) -> None:
    registration = await registry.register_shard(S1, TTL)
    etcd_server.stop()
    await eventually(lambda: _true(not registration.registered.is_set()), 4 * TTL)
    etcd_server.start()
    await eventually(lambda: _true(registration.registered.is_set()), 5 * TTL)
    await eventually(lambda: has_shard(registry, "s1"), 2 * TTL)
    # and it stays: the new lease is being refreshed
    await asyncio.sleep(TTL + 1)
    assert await has_shard(registry, "s1")


async def test_leadership_is_lost_when_etcd_is_unreachable_past_the_ttl(
    etcd_server: EtcdServer, registry: EtcdRegistry
) -> None:
    leadership = await registry.campaign("c1", TTL)
    etcd_server.pause()
    try:
        await asyncio.wait_for(leadership.lost.wait(), 4 * TTL)
    finally:
        etcd_server.resume()
