"""The controller over a real in-memory registry: election, placement, and a controller dying
in the middle of a move (the next one completes or rolls it back from the table alone)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

from prometheus_client import REGISTRY

from cluster.controller import Controller, ControllerConfig
from cluster.decisions import Policy
from cluster.memory import MemoryRegistry, MemoryStore
from cluster.model import AssignmentState, ClusterView, ShardRecord
from cluster.placement import rendezvous
from cluster.table import ClusterTable


@asynccontextmanager
async def controller(
    store: MemoryStore, name: str, policy: Policy | None = None
) -> AsyncIterator[Controller]:
    registry = MemoryRegistry(store)
    table = ClusterTable(registry, name=name)
    await table.start(timeout=5.0)
    config = ControllerConfig(name, lease_ttl=2, settle=0.1, policy=policy or Policy())
    ctl = Controller(registry, table, config)
    task = asyncio.create_task(ctl.run())
    try:
        yield ctl
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await table.stop()
        await registry.close()


def _decisions(reason: str) -> float:
    found = REGISTRY.get_sample_value("spotmatch_controller_decisions_total", {"reason": reason})
    return found or 0.0


async def until(
    registry: MemoryRegistry, check: Callable[[ClusterView], bool], timeout: float = 10.0
) -> ClusterView:
    deadline = time.monotonic() + timeout
    while True:
        view = await registry.snapshot()
        if check(view):
            return view
        assert time.monotonic() < deadline, view
        await asyncio.sleep(0.02)


async def test_one_leader_places_symbols_then_a_successor_takes_over() -> None:
    store = MemoryStore()
    admin = MemoryRegistry(store)
    await admin.register_shard(ShardRecord("a", "127.0.0.1:1"), 2)
    await admin.add_symbol("X")
    placed = _decisions("new")
    async with controller(store, "c1") as c1, controller(store, "c2") as c2:
        view = await until(admin, lambda v: "X" in v.assignments)
        assert view.assignments["X"].shard_id == "a"
        assert _decisions("new") == placed + 1  # the metric counts the one placement
        assert view.assignments["X"].state is AssignmentState.LOADING  # a shard activates it
        assert sorted([c1.is_leader, c2.is_leader]) == [False, True]
        leader, follower = (c1, c2) if c1.is_leader else (c2, c1)
        assert view.controller == ("c1" if leader is c1 else "c2")
        admin.expire_controller_lease()
        await until(admin, lambda v: v.controller not in ("", view.controller))
        await asyncio.sleep(0.1)
        assert follower.is_leader
    await admin.close()


async def test_move_left_by_a_dead_controller_is_finished_or_rolled_back() -> None:
    store = MemoryStore()
    admin = MemoryRegistry(store)
    a = await admin.register_shard(ShardRecord("a", "127.0.0.1:1"), 2)
    await admin.register_shard(ShardRecord("b", "127.0.0.1:2"), 2)
    await admin.register_shard(ShardRecord("c", "127.0.0.1:3"), 2)
    for symbol, pin in (("X", "a"), ("Y", "a")):
        await admin.add_symbol(symbol)
        await admin.set_pin(symbol, pin)
    async with controller(store, "c1"):
        view = await until(admin, lambda v: {"X", "Y"} <= v.assignments.keys())
    # c1 is gone. Leave X moving to b and Y moving to a shard that does not exist, as if c1
    # had written them and died; then the source dies too, so no shard can finish X.
    x, y = view.assignments["X"], view.assignments["Y"]
    for current, target in ((x, "b"), (y, "nowhere")):
        active = await admin.cas_assignment(current.revision, current.activated())
        assert active is not None
        assert await admin.cas_assignment(active.revision, active.moving_to(target))
    await admin.set_pin("X", "b")
    await a.close()  # the source leaves: X must go to its target, b
    async with controller(store, "c2"):
        done = await until(
            admin,
            lambda v: (
                v.assignments["X"].shard_id == "b"
                and v.assignments["X"].state is AssignmentState.LOADING
                and v.assignments["Y"].state is not AssignmentState.MOVING
            ),
        )
    assert done.assignments["X"].epoch > x.epoch  # a new ownership: a new, higher epoch
    # Y was moving to a shard that never existed and its source left: it fails over.
    assert done.assignments["Y"].shard_id in ("b", "c")
    assert done.assignments["Y"].state is AssignmentState.LOADING
    await admin.close()


async def test_move_to_a_dead_target_is_rolled_back_by_the_next_controller() -> None:
    store = MemoryStore()
    admin = MemoryRegistry(store)
    await admin.register_shard(ShardRecord("a", "127.0.0.1:1"), 2)
    await admin.add_symbol("X")
    async with controller(store, "c1"):
        view = await until(admin, lambda v: "X" in v.assignments)
    active = await admin.cas_assignment(
        view.assignments["X"].revision, view.assignments["X"].activated()
    )
    assert active is not None
    assert await admin.cas_assignment(active.revision, active.moving_to("gone"))
    async with controller(store, "c2"):
        done = await until(admin, lambda v: v.assignments["X"].state is AssignmentState.ACTIVE)
    assert done.assignments["X"].shard_id == "a"
    assert done.assignments["X"].epoch == active.epoch  # rolled back: same ownership
    await admin.close()


async def test_a_shard_that_joins_takes_moves_only_after_the_join_hold() -> None:
    """Shards there when the term began are settled; one joining later, leaving and
    joining again, or restarted (a new instance under the same id), takes no rebalancing
    move until it has been live for join_hold."""
    store = MemoryStore()
    admin = MemoryRegistry(store)
    a = ShardRecord("a", "127.0.0.1:1")
    c = ShardRecord("c", "127.0.0.1:3")
    await admin.register_shard(a, 2)
    symbol = next(f"S{i}" for i in range(100) if rendezvous(f"S{i}", {"a": a, "c": c}) == "c")
    await admin.add_symbol(symbol)
    async with controller(store, "c1", Policy(join_hold=1.5)):
        await until(admin, lambda v: symbol in v.assignments)
        owner = await admin.get_assignment(symbol)
        assert owner is not None
        activated = await admin.cas_assignment(owner.revision, owner.activated())
        assert activated is not None
        for _ in range(2):  # a first join, then a rejoin
            joined = await admin.register_shard(c, 2)
            began = time.monotonic()
            await asyncio.sleep(0.8)  # several controller ticks
            now = await admin.get_assignment(symbol)
            assert now is not None and now.state is AssignmentState.ACTIVE, now
            view = await until(admin, lambda v: v.assignments[symbol].target == "c")
            assert time.monotonic() - began >= 1.5, view
            assert await admin.cas_assignment(
                view.assignments[symbol].revision, view.assignments[symbol].activated()
            )  # the move rolled back: the symbol is on a again
            await joined.close()
            await until(admin, lambda v: "c" not in v.shards)
            await asyncio.sleep(0.7)  # a controller tick sees it gone
        # A restart inside the lease's TTL re-registers the same key: a new instance.
        await admin.register_shard(replace(c, instance="first"), 2)
        first = await until(admin, lambda v: v.assignments[symbol].target == "c")
        assert await admin.cas_assignment(
            first.assignments[symbol].revision, first.assignments[symbol].activated()
        )
        restarted = await admin.register_shard(replace(c, instance="second"), 2)
        began = time.monotonic()
        await asyncio.sleep(0.8)
        now = await admin.get_assignment(symbol)
        assert now is not None and now.state is AssignmentState.ACTIVE, now
        await until(admin, lambda v: v.assignments[symbol].target == "c")
        assert time.monotonic() - began >= 1.5
        await restarted.close()
    await admin.close()
