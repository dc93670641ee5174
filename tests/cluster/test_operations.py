"""Operator actions (cluster/operations.py) against a real in-memory registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from cluster import operations as ops
from cluster.errors import InvalidRequest
from cluster.memory import MemoryRegistry, MemoryStore
from cluster.model import Assignment, AssignmentState, ShardRecord
from cluster.registry import Registration

ACTIVE, MOVING, LOADING = AssignmentState.ACTIVE, AssignmentState.MOVING, AssignmentState.LOADING
TTL = 30  # long: no lease expires during a test
WAIT = 10.0  # generous bound of every wait in a test


@dataclass
class Cluster:
    registry: MemoryRegistry
    registrations: dict[str, Registration]

    async def place(self, symbol: str, shard_id: str) -> Assignment:
        """Add ``symbol`` to the catalog and make it ACTIVE on ``shard_id``."""
        await self.registry.add_symbol(symbol)
        created = await self.registry.create_assignment(Assignment(symbol, shard_id, ACTIVE))
        assert created is not None
        return created


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    registry = MemoryRegistry(MemoryStore())
    registrations = {
        shard_id: await registry.register_shard(ShardRecord(shard_id, f"127.0.0.1:{7100 + n}"), TTL)
        for n, shard_id in enumerate(("a", "b", "c"))
    }
    yield Cluster(registry, registrations)
    for registration in registrations.values():
        await registration.close()
    await registry.close()


# --- move --------------------------------------------------------------------------------


async def test_move_writes_moving_with_the_same_epoch_and_pins_the_target(cluster: Cluster) -> None:
    before = await cluster.place("BTC-USD", "a")
    result = await ops.move(cluster.registry, "BTC-USD", "b")
    assert (result.from_shard, result.to_shard, result.outcome) == ("a", "b", "started")
    stored = await cluster.registry.get_assignment("BTC-USD")
    assert stored is not None
    assert (stored.shard_id, stored.state, stored.target) == ("a", MOVING, "b")
    assert stored.epoch == before.epoch  # the source keeps its fencing epoch until it hands over
    assert stored.revision > before.revision
    view = await cluster.registry.snapshot()
    assert view.pins["BTC-USD"] == "b"


async def _play_shards(registry: MemoryRegistry, symbol: str, *, complete: bool) -> None:
    """What the shards do with a MOVING symbol: the source hands over (LOADING on the target)
    and the target activates it; or (complete=False) the move is rolled back to the source."""
    async with asyncio.timeout(WAIT):
        while True:
            current = await registry.get_assignment(symbol)
            assert current is not None
            if current.state is MOVING:
                break
            await registry.store.wait_change(WAIT)
        if complete:
            loading = await registry.cas_assignment(
                current.revision, current.handed_to(current.target)
            )
            assert loading is not None
            assert await registry.cas_assignment(loading.revision, loading.activated())
        else:
            assert await registry.cas_assignment(current.revision, current.activated())


async def test_move_with_wait_reports_completion_and_the_observed_pause(cluster: Cluster) -> None:
    await cluster.place("BTC-USD", "a")
    shards = asyncio.create_task(_play_shards(cluster.registry, "BTC-USD", complete=True))
    result = await ops.move(cluster.registry, "BTC-USD", "c", wait=WAIT)
    await shards
    assert result.completed
    assert result.final is not None
    assert (result.final.shard_id, result.final.state) == ("c", ACTIVE)
    assert result.observed_pause is not None
    assert 0 <= result.observed_pause < WAIT


async def test_move_with_wait_reports_a_rollback(cluster: Cluster) -> None:
    await cluster.place("BTC-USD", "a")
    shards = asyncio.create_task(_play_shards(cluster.registry, "BTC-USD", complete=False))
    result = await ops.move(cluster.registry, "BTC-USD", "b", wait=WAIT)
    await shards
    assert result.outcome == "rolled back"
    assert result.final is not None
    assert result.final.shard_id == "a"
    assert result.observed_pause is None


async def test_move_with_wait_times_out_while_nobody_hands_over(cluster: Cluster) -> None:
    await cluster.place("BTC-USD", "a")
    result = await ops.move(cluster.registry, "BTC-USD", "b", wait=0.05)
    assert result.outcome == "timed out"
    assert result.final is not None
    assert result.final.state is MOVING


async def test_move_refusals(cluster: Cluster) -> None:
    reg = cluster.registry
    await cluster.place("BTC-USD", "a")
    await cluster.place("ETH-USD", "a")
    await cluster.place("SOL-USD", "gone")  # held by a shard whose lease expired
    await reg.add_symbol("NEW-USD")  # in the catalog, not placed yet
    await reg.set_draining("c", True)
    await ops.move(reg, "ETH-USD", "b")  # now MOVING
    cases = {
        ("XRP-USD", "b"): "unknown symbol 'XRP-USD'",
        ("NEW-USD", "b"): "not placed on a shard yet",
        ("ETH-USD", "c"): "is moving to b",
        ("BTC-USD", "nope"): "unknown shard 'nope'",
        ("BTC-USD", "gone"): "shard 'gone' is not live",
        ("BTC-USD", "c"): "shard 'c' is draining",
        ("BTC-USD", "a"): "already on 'a'",
    }
    for (symbol, target), message in cases.items():
        with pytest.raises(InvalidRequest, match=message):
            await ops.move(reg, symbol, target)
    stored = await reg.get_assignment("BTC-USD")
    assert stored is not None
    assert stored.state is ACTIVE  # no refusal wrote anything


async def test_concurrent_moves_from_the_same_revision_exactly_one_wins(cluster: Cluster) -> None:
    await cluster.place("BTC-USD", "a")
    view = await cluster.registry.snapshot()
    outcomes = await asyncio.gather(
        ops.move(cluster.registry, "BTC-USD", "b", view=view),
        ops.move(cluster.registry, "BTC-USD", "c", view=view),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, ops.MoveResult)]
    lost = [o for o in outcomes if isinstance(o, InvalidRequest)]
    assert len(won) == 1
    assert len(lost) == 1
    assert "conflict" in str(lost[0])
    stored = await cluster.registry.get_assignment("BTC-USD")
    assert stored is not None
    assert stored.target == won[0].to_shard
    assert (await cluster.registry.snapshot()).pins["BTC-USD"] == won[0].to_shard


# --- pins -------------------------------------------------------------------------------


async def test_pin_and_unpin(cluster: Cluster) -> None:
    await cluster.place("BTC-USD", "a")
    pinned = await ops.pin(cluster.registry, "BTC-USD", "b")
    assert (pinned.shard_id, pinned.previous, pinned.owner) == ("b", "", "a")
    assert pinned.will_move_to == "b"
    assert (await cluster.registry.snapshot()).pins == {"BTC-USD": "b"}
    unpinned = await ops.unpin(cluster.registry, "BTC-USD")
    assert (unpinned.shard_id, unpinned.previous) == ("", "b")
    assert (await cluster.registry.snapshot()).pins == {}
    again = await ops.unpin(cluster.registry, "BTC-USD")  # not pinned: nothing to do
    assert again.previous == ""


async def test_pin_refusals(cluster: Cluster) -> None:
    await cluster.place("BTC-USD", "a")
    await cluster.registry.set_draining("c", True)
    for symbol, shard, message in (
        ("XRP-USD", "b", "unknown symbol"),
        ("BTC-USD", "zz", "unknown shard 'zz'"),
        ("BTC-USD", "c", "draining"),
    ):
        with pytest.raises(InvalidRequest, match=message):
            await ops.pin(cluster.registry, symbol, shard)
    with pytest.raises(InvalidRequest, match="unknown symbol"):
        await ops.unpin(cluster.registry, "XRP-USD")
    assert (await cluster.registry.snapshot()).pins == {}


# --- drains and rebalance ------------------------------------------------------------------


async def test_drain_lists_the_moves_and_the_rebalance_plan_empties_the_shard(
    cluster: Cluster,
) -> None:
    for n in range(12):
        await cluster.place(f"S{n}-USD", "a")
    result = await ops.drain(cluster.registry, "a")
    assert result.draining
    assert not result.was_draining
    assert len(result.moves) == 12
    view = await cluster.registry.snapshot()
    assert view.draining == frozenset({"a"})
    plan = ops.plan_rebalance(view)
    assert sorted(m.symbol for m in plan) == sorted(f"S{n}-USD" for n in range(12))
    assert {m.from_shard for m in plan} == {"a"}
    assert {m.to_shard for m in plan} <= {"b", "c"}
    assert {m.reason for m in plan} == {"drain"}
    applied = await ops.apply_rebalance(cluster.registry, plan, view)
    assert (len(applied.applied), applied.conflicted) == (12, [])
    after = await cluster.registry.snapshot()
    assert all(a.state is MOVING for a in after.assignments.values())


async def test_apply_rebalance_reports_moves_whose_assignment_changed(cluster: Cluster) -> None:
    await cluster.place("BTC-USD", "a")
    await cluster.place("ETH-USD", "a")
    await ops.drain(cluster.registry, "a")
    view = await cluster.registry.snapshot()
    plan = ops.plan_rebalance(view)
    await ops.move(cluster.registry, "BTC-USD", "b")  # someone else moves it first
    result = await ops.apply_rebalance(cluster.registry, plan, view)
    assert [m.symbol for m in result.applied] == ["ETH-USD"]
    assert [m.symbol for m in result.conflicted] == ["BTC-USD"]


async def test_drain_refusals_warnings_and_undrain(cluster: Cluster) -> None:
    with pytest.raises(InvalidRequest, match="unknown shard 'zz'"):
        await ops.drain(cluster.registry, "zz")
    await cluster.place("BTC-USD", "a")
    await ops.pin(cluster.registry, "BTC-USD", "a")
    pinned_stays = await ops.drain(cluster.registry, "a")
    assert pinned_stays.moves == []
    assert "pinned" in pinned_stays.warning
    await ops.drain(cluster.registry, "b")
    last = await ops.drain(cluster.registry, "c")
    assert "no live shard" in last.warning
    undrained = await ops.undrain(cluster.registry, "b")
    assert (undrained.draining, undrained.was_draining) == (False, True)
    assert (await cluster.registry.snapshot()).draining == frozenset({"a", "c"})


async def test_undrain_a_dead_shard_that_kept_its_drain_mark(cluster: Cluster) -> None:
    await cluster.registry.set_draining("old", True)  # known only by its mark
    await ops.undrain(cluster.registry, "old")
    assert (await cluster.registry.snapshot()).draining == frozenset()


# --- symbols and status --------------------------------------------------------------------


async def test_add_symbol_reports_its_future_shard_and_refuses_duplicates(cluster: Cluster) -> None:
    shard = await ops.add_symbol(cluster.registry, "BTC-USD")
    assert shard in {"a", "b", "c"}
    assert "BTC-USD" in (await cluster.registry.snapshot()).symbols
    with pytest.raises(InvalidRequest, match="already exists"):
        await ops.add_symbol(cluster.registry, "BTC-USD")


async def test_status_lists_shards_assignments_pins_and_unplaced_symbols(cluster: Cluster) -> None:
    await cluster.place("BTC-USD", "a")
    await cluster.place("ETH-USD", "gone")
    await cluster.registry.add_symbol("NEW-USD")
    await ops.pin(cluster.registry, "BTC-USD", "a")
    await cluster.registry.set_draining("c", True)
    report = ops.status(await cluster.registry.snapshot())
    shards = {s.shard_id: s for s in report.shards}
    assert sorted(shards) == ["a", "b", "c", "gone"]
    assert (shards["a"].live, shards["a"].symbols, shards["a"].address) == (
        True,
        ["BTC-USD"],
        "127.0.0.1:7100",
    )
    assert (shards["gone"].live, shards["gone"].symbol_count) == (False, 1)
    assert shards["c"].draining
    btc = next(a for a in report.assignments if a.symbol == "BTC-USD")
    assert (btc.shard_id, btc.state, btc.pin) == ("a", "active", "a")
    assert btc.epoch > 0
    assert report.unplaced == ["NEW-USD"]
    assert report.revision > 0
