"""ClusterTable: the watched copy of the cluster state (memory backend; one etcd restart)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cluster.errors import RegistryUnavailable
from cluster.etcd import EtcdRegistry
from cluster.memory import MemoryRegistry, MemoryStore
from cluster.model import Assignment, AssignmentState, ClusterView, ShardRecord
from cluster.table import ClusterTable
from tools.services import EtcdServer

WAIT = 5.0  # generous: the machine is shared
S1 = ShardRecord("s1", "127.0.0.1:7001")
ACTIVE_ON_S2 = b'{"shard_id": "s2", "state": "active", "epoch": 0, "target": ""}'


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def writer(store: MemoryStore) -> AsyncIterator[MemoryRegistry]:
    registry = MemoryRegistry(store)
    yield registry
    await registry.close()


@pytest.fixture
async def reader(store: MemoryStore) -> AsyncIterator[MemoryRegistry]:
    """The table's own client (a router process)."""
    registry = MemoryRegistry(store)
    yield registry
    await registry.close()


@pytest.fixture
async def table(reader: MemoryRegistry) -> AsyncIterator[ClusterTable]:
    table = ClusterTable(reader, name="test")
    await table.start(timeout=WAIT)
    yield table
    await table.stop()


def owner(view: ClusterView, symbol: str) -> str | None:
    assignment = view.assignments.get(symbol)
    return None if assignment is None else assignment.shard_id


async def test_start_reads_the_current_state(
    writer: MemoryRegistry, reader: MemoryRegistry
) -> None:
    await writer.register_shard(S1, ttl=2)
    await writer.add_symbol("BTC-USD")
    table = ClusterTable(reader, name="test")
    await table.start(timeout=WAIT)
    try:
        assert table.view().shards == {"s1": S1}
        assert table.address("s1") == S1.address
        assert table.address("s9") is None
        assert table.revision == (await writer.snapshot()).revision
    finally:
        await table.stop()


async def test_changes_are_applied(table: ClusterTable, writer: MemoryRegistry) -> None:
    await writer.register_shard(S1, ttl=2)
    await writer.add_symbol("BTC-USD")
    await writer.set_pin("BTC-USD", "s1")
    await writer.set_draining("s1", True)
    created = await writer.create_assignment(Assignment("BTC-USD", "s1", AssignmentState.LOADING))
    view = await table.wait_for(lambda v: "BTC-USD" in v.assignments, WAIT)
    assert view.shards == {"s1": S1}
    assert view.symbols == {"BTC-USD"}
    assert view.pins == {"BTC-USD": "s1"}
    assert view.draining == {"s1"}
    assert table.assignment("BTC-USD") == created
    assert table.assignment("ETH-USD") is None
    await writer.set_pin("BTC-USD", None)
    view = await table.wait_for(lambda v: not v.pins, WAIT)
    assert view.revision == table.revision == (await writer.snapshot()).revision
    assert table.resyncs == 0 and table.watch_losses == 0


async def test_an_event_older_than_a_refresh_is_ignored(
    table: ClusterTable, writer: MemoryRegistry
) -> None:
    seen: list[str] = []
    table.listeners.append(lambda view: seen.append(view.pins.get("BTC-USD", "")))
    # Both pin events sit in the table's watch while a refresh reads the newer state first;
    # the older event must then not bring the old value back.
    await writer.set_pin("BTC-USD", "old")
    await writer.set_pin("BTC-USD", "new")
    await table.refresh()
    assert seen == ["new"]
    await writer.add_symbol("ETH-USD")  # a later change still applies
    await table.wait_for(lambda v: "ETH-USD" in v.symbols, WAIT)
    assert "old" not in seen
    assert table.view().pins == {"BTC-USD": "new"}


async def test_resyncs_after_the_watch_breaks(
    table: ClusterTable, writer: MemoryRegistry, reader: MemoryRegistry
) -> None:
    await writer.add_symbol("A")
    await table.wait_for(lambda v: "A" in v.symbols, WAIT)
    reader.break_watches()
    await writer.add_symbol("B")  # made while the table has no watch
    await table.wait_for(lambda v: "B" in v.symbols, WAIT)
    assert table.watch_losses == 1 and table.resyncs == 1
    await writer.add_symbol("C")  # and it watches again afterwards
    await table.wait_for(lambda v: "C" in v.symbols, WAIT)
    assert table.resyncs == 1


async def test_resyncs_when_its_watch_falls_behind_a_compaction(
    table: ClusterTable, writer: MemoryRegistry
) -> None:
    await writer.add_symbol("A")  # queued for the table, not yet applied
    await writer.add_symbol("B")
    writer.compact((await writer.snapshot()).revision)
    view = await table.wait_for(lambda v: {"A", "B"} <= v.symbols, WAIT)
    assert table.watch_losses == 1 and table.resyncs == 1
    assert view.revision == (await writer.snapshot()).revision


async def test_a_malformed_value_keeps_the_last_good_one(
    table: ClusterTable,
    writer: MemoryRegistry,
    reader: MemoryRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = await writer.create_assignment(Assignment("BTC-USD", "s1", AssignmentState.LOADING))
    await table.wait_for(lambda v: "BTC-USD" in v.assignments, WAIT)
    with caplog.at_level(logging.WARNING, logger="cluster.table"):
        writer.put_raw("assignments/BTC-USD", b"{garbage")
        view = await table.wait_for(lambda v: bool(v.malformed), WAIT)
    assert view.malformed == {"assignments/BTC-USD"}
    assert view.assignments == {"BTC-USD": good}
    assert "malformed value for assignments/BTC-USD" in caplog.text

    reader.break_watches()  # a full resync reads the malformed value again: still kept
    await table.wait_for(lambda _: table.resyncs == 1, WAIT)
    assert table.view().assignments == {"BTC-USD": good}
    assert table.view().malformed == {"assignments/BTC-USD"}

    writer.put_raw(
        "assignments/BTC-USD", b'{"shard_id":"s2","state":"active","epoch":0,"target":""}'
    )
    view = await table.wait_for(lambda v: owner(v, "BTC-USD") == "s2", WAIT)
    assert not view.malformed

    writer.put_raw("pins/ETH-USD", b"")  # malformed with no last good value: stays absent
    view = await table.wait_for(lambda v: bool(v.malformed), WAIT)
    assert view.malformed == {"pins/ETH-USD"} and not view.pins


async def test_a_key_with_an_invalid_name_is_ignored(
    table: ClusterTable, writer: MemoryRegistry, reader: MemoryRegistry
) -> None:
    """Names that no writer of ours would accept (a trailing space, a control character):
    the table neither stops following the watch nor fails to start."""
    for key in ("symbols/ETH-USD ", "pins/BTC-USD\n", "shards/\x00", "assignments/ BTC-USD"):
        writer.put_raw(key, b"1")
    await writer.add_symbol("SOL-USD")
    view = await table.wait_for(lambda v: "SOL-USD" in v.symbols, WAIT)
    assert view.symbols == {"SOL-USD"} and not view.pins and not view.malformed

    second = ClusterTable(reader, name="second")
    await second.start(timeout=WAIT)
    try:
        assert second.view().symbols == {"SOL-USD"}
    finally:
        await second.stop()


async def test_malformed_warnings_are_rate_limited(
    table: ClusterTable, writer: MemoryRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cluster.table"):
        for i in range(5):
            writer.put_raw("pins/BTC-USD", b"")
            await table.wait_for(lambda v, i=i: v.revision >= 2 + i, WAIT)
    assert caplog.text.count("malformed value for pins/BTC-USD") == 1


async def test_listeners_are_called_and_a_failing_one_does_not_stop_others(
    table: ClusterTable, writer: MemoryRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def broken(_view: ClusterView) -> None:
        raise RuntimeError("listener bug")

    table.listeners.extend([broken, lambda view: calls.append(view.revision)])
    with caplog.at_level(logging.ERROR, logger="cluster.table"):
        await writer.add_symbol("A")
        await table.wait_for(lambda v: "A" in v.symbols, WAIT)
        await table.refresh()
    assert calls == [table.revision, table.revision]  # the change, then the resync
    assert "listener failed" in caplog.text


async def test_wait_for_returns_at_once_or_times_out(table: ClusterTable) -> None:
    assert await table.wait_for(lambda v: True, 0) is table.view()
    with pytest.raises(TimeoutError):
        await table.wait_for(lambda v: "never" in v.symbols, 0.05)


async def test_start_fails_when_the_registry_stays_unreachable(reader: MemoryRegistry) -> None:
    reader.set_reachable(False)
    table = ClusterTable(reader, name="test")
    with pytest.raises(RegistryUnavailable):
        await table.start(timeout=0.3)


async def test_start_retries_until_the_registry_answers(reader: MemoryRegistry) -> None:
    reader.set_reachable(False)
    asyncio.get_running_loop().call_later(0.2, reader.set_reachable, True)
    table = ClusterTable(reader, name="test")
    await table.start(timeout=WAIT)
    await table.stop()


async def test_keeps_the_last_view_while_unreachable_and_catches_up(
    table: ClusterTable, writer: MemoryRegistry, reader: MemoryRegistry
) -> None:
    await writer.add_symbol("A")
    before = await table.wait_for(lambda v: "A" in v.symbols, WAIT)
    reader.set_reachable(False)
    await writer.add_symbol("B")
    await table.wait_for(lambda _: table.watch_losses == 1, WAIT)
    with pytest.raises(RegistryUnavailable):
        await table.refresh()
    assert table.view() is before
    reader.set_reachable(True)
    await table.wait_for(lambda v: "B" in v.symbols, WAIT)


async def retry(call: Callable[[], Awaitable[None]], timeout: float) -> None:
    """``call`` until it succeeds (a client reconnecting after a restart); bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except RegistryUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture
async def etcd_registries(etcd_server: EtcdServer) -> AsyncIterator[list[EtcdRegistry]]:
    registries = [EtcdRegistry([etcd_server.endpoint], timeout=1.0) for _ in range(2)]
    yield registries
    for registry in registries:
        await registry.close()


async def test_survives_an_etcd_restart(
    etcd_server: EtcdServer, etcd_registries: list[EtcdRegistry]
) -> None:
    writer, reader = etcd_registries
    table = ClusterTable(reader, name="test")
    await table.start(timeout=WAIT)
    try:
        await writer.add_symbol("A")
        before = await table.wait_for(lambda v: "A" in v.symbols, WAIT)
        etcd_server.stop()
        await table.wait_for(lambda _: table.watch_losses >= 1, WAIT)
        assert table.view() == before  # trading keeps its routes while etcd is down
        etcd_server.start()
        await retry(lambda: writer.add_symbol("B"), WAIT)  # a write made after the restart
        view = await table.wait_for(lambda v: "B" in v.symbols, 20)
        assert view.symbols == {"A", "B"}
    finally:
        await table.stop()


async def test_a_resync_does_not_undo_a_newer_refresh(
    table: ClusterTable, writer: MemoryRegistry, reader: MemoryRegistry
) -> None:
    """The watch breaks; while the table's resync read is in flight, a router's refresh()
    applies a newer view. The older read must not replace it (not even for a moment)."""
    seen: list[tuple[int, bool]] = []
    table.listeners.append(lambda v: seen.append((v.revision, "B" in v.symbols)))
    original = reader.snapshot
    held = asyncio.Event()
    stale: list[ClusterView] = []

    async def first_read_held() -> ClusterView:
        view = await original()
        if not stale:
            stale.append(view)
            await held.wait()
        return view

    reader.snapshot = first_read_held  # type: ignore[method-assign]
    reader.break_watches()
    await _eventually(lambda: bool(stale))
    await writer.add_symbol("B")
    assert "B" in (await table.refresh()).symbols
    held.set()
    await writer.add_symbol("C")  # the watch is back once C shows
    await table.wait_for(lambda v: "C" in v.symbols, WAIT)
    revisions = [revision for revision, _ in seen]
    assert revisions == sorted(revisions), seen
    assert all(has_b for _, has_b in seen), seen  # B, once refreshed in, never went away


async def _eventually(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
