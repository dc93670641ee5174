"""One Registry contract, checked against both backends (memory, and a real etcd)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from cluster.errors import MalformedValue, WatchLost
from cluster.model import Assignment, AssignmentState, Change, ChangeKind, ShardRecord
from tests.cluster.registry_backends import TTL, AnyRegistry, Backend, backend_fixture

backend = backend_fixture()

S1 = ShardRecord("s1", "127.0.0.1:7001", 2.0, instance="a1b2")  # round-trips through both
S2 = ShardRecord("s2", "127.0.0.1:7002")
EXPIRY_WAIT = 4 * TTL  # a lease expires after its TTL; etcd checks expiry every ~0.5 s


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        await asyncio.sleep(0.05)


async def shard_present(registry: AnyRegistry, shard_id: str) -> bool:
    return shard_id in (await registry.snapshot()).shards


async def collect(registry: AnyRegistry, from_revision: int, count: int) -> list[list[Change]]:
    """The first batches from a watch holding ``count`` changes in all."""
    batches: list[list[Change]] = []
    async for batch in registry.watch(from_revision):
        batches.append(batch)
        if sum(len(b) for b in batches) >= count:
            break
    return batches


# -- membership --------------------------------------------------------------------------


async def test_a_registered_shard_is_in_the_snapshot(backend: Backend) -> None:
    registration = await backend.registry.register_shard(S1, TTL)
    assert registration.registered.is_set()
    assert registration.lease_losses == 0
    view = await (await backend.client()).snapshot()
    assert view.shards == {"s1": S1}
    assert view.revision > 1


async def test_closing_a_registration_removes_the_shard_at_once(backend: Backend) -> None:
    registration = await backend.registry.register_shard(S1, TTL)
    await backend.registry.register_shard(S2, TTL)
    await registration.close()
    assert not registration.registered.is_set()
    assert set((await backend.registry.snapshot()).shards) == {"s2"}


async def test_an_unrefreshed_lease_expires_and_removes_the_shard(backend: Backend) -> None:
    registration = await backend.registry.register_shard(S1, TTL)
    registration.stop_refresh()
    await eventually(lambda: _absent(backend.registry, "s1"), EXPIRY_WAIT)


async def _absent(registry: AnyRegistry, shard_id: str) -> bool:
    return not await shard_present(registry, shard_id)


async def test_refreshing_keeps_the_shard_past_several_ttls(backend: Backend) -> None:
    await backend.registry.register_shard(S1, TTL)
    deadline = time.monotonic() + 3 * TTL
    checks = 0
    while time.monotonic() < deadline:
        assert await shard_present(backend.registry, "s1"), f"gone after {checks} checks"
        checks += 1
        await asyncio.sleep(0.25)
    assert checks >= 3 * TTL  # the loop really ran across the TTLs


async def test_a_lost_lease_is_replaced_and_the_shard_registers_again(backend: Backend) -> None:
    registration = await backend.registry.register_shard(S1, TTL)
    await backend.expire_lease("s1")
    assert not await shard_present(backend.registry, "s1")
    await eventually(lambda: shard_present(backend.registry, "s1"), EXPIRY_WAIT)
    await eventually(lambda: _is_set(registration.registered), TTL)
    assert registration.lease_losses == 1


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()


# -- drains, symbols, pins ---------------------------------------------------------------


async def test_drain_flag_is_set_and_cleared(backend: Backend) -> None:
    await backend.registry.set_draining("s1", True)
    assert (await backend.registry.snapshot()).draining == {"s1"}
    await backend.registry.set_draining("s1", False)
    assert (await backend.registry.snapshot()).draining == frozenset()


async def test_symbols_form_the_catalog(backend: Backend) -> None:
    for symbol in ("BTC-USD", "ETH-USD", "BTC-USD"):
        await backend.registry.add_symbol(symbol)
    assert (await backend.registry.snapshot()).symbols == {"BTC-USD", "ETH-USD"}


async def test_pins_are_set_replaced_and_removed(backend: Backend) -> None:
    await backend.registry.set_pin("BTC-USD", "s1")
    await backend.registry.set_pin("ETH-USD", "s1")
    await backend.registry.set_pin("BTC-USD", "s2")
    assert (await backend.registry.snapshot()).pins == {"BTC-USD": "s2", "ETH-USD": "s1"}
    await backend.registry.set_pin("BTC-USD", None)
    await backend.registry.set_pin("SOL-USD", None)  # removing an absent pin is fine
    assert (await backend.registry.snapshot()).pins == {"ETH-USD": "s1"}


# -- assignments -------------------------------------------------------------------------


def loading(symbol: str, shard_id: str) -> Assignment:
    return Assignment(symbol, shard_id, AssignmentState.LOADING)


async def test_an_assignment_is_created_only_once(backend: Backend) -> None:
    first = await backend.registry.create_assignment(loading("BTC-USD", "s1"))
    assert first is not None
    assert first.revision > 0
    assert first.epoch == first.revision  # epoch 0 resolves to the write's revision
    assert await backend.registry.create_assignment(loading("BTC-USD", "s2")) is None
    assert await backend.registry.get_assignment("BTC-USD") == first
    assert (await backend.registry.snapshot()).assignments == {"BTC-USD": first}


async def test_cas_with_the_current_revision_wins_and_a_stale_one_loses(backend: Backend) -> None:
    created = await backend.registry.create_assignment(loading("BTC-USD", "s1"))
    assert created is not None
    active = await backend.registry.cas_assignment(created.revision, created.activated())
    assert active is not None
    assert active.revision > created.revision
    assert active.state is AssignmentState.ACTIVE
    assert active.epoch == created.epoch  # a later write copies the epoch: same ownership
    stale = await backend.registry.cas_assignment(created.revision, created.moving_to("s2"))
    assert stale is None
    assert await backend.registry.get_assignment("BTC-USD") == active


async def test_a_new_owner_gets_a_newer_epoch_kept_through_activation(backend: Backend) -> None:
    created = await backend.registry.create_assignment(loading("BTC-USD", "s1"))
    assert created is not None
    active = await backend.registry.cas_assignment(created.revision, created.activated())
    assert active is not None
    moving = await backend.registry.cas_assignment(active.revision, active.moving_to("s2"))
    assert moving is not None
    expected = (AssignmentState.MOVING, "s2", created.epoch)
    assert (moving.state, moving.target, moving.epoch) == expected
    handed = await backend.registry.cas_assignment(moving.revision, moving.handed_to("s2"))
    assert handed is not None
    assert handed.epoch == handed.revision > moving.revision  # new ownership, new epoch
    done = await backend.registry.cas_assignment(handed.revision, handed.activated())
    assert done is not None
    assert (done.shard_id, done.epoch) == ("s2", handed.epoch)
    assert (await (await backend.client()).get_assignment("BTC-USD")) == done


async def test_two_concurrent_cas_on_one_revision_exactly_one_wins(backend: Backend) -> None:
    created = await backend.registry.create_assignment(loading("BTC-USD", "s1"))
    assert created is not None
    other = await backend.client()
    results = await asyncio.gather(
        backend.registry.cas_assignment(created.revision, created.moving_to("s2")),
        other.cas_assignment(created.revision, created.moving_to("s3")),
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await backend.registry.get_assignment("BTC-USD") == winners[0]


async def test_concurrent_creates_exactly_one_wins(backend: Backend) -> None:
    other = await backend.client()
    results = await asyncio.gather(
        backend.registry.create_assignment(loading("ETH-USD", "s1")),
        other.create_assignment(loading("ETH-USD", "s2")),
    )
    assert sum(r is not None for r in results) == 1


async def test_get_assignment_of_an_unknown_symbol_is_none(backend: Backend) -> None:
    assert await backend.registry.get_assignment("NOPE") is None


# -- watch ---------------------------------------------------------------------------------


async def test_watch_delivers_every_change_in_revision_order(backend: Backend) -> None:
    start = (await backend.registry.snapshot()).revision + 1
    writer = await backend.client()
    watcher = asyncio.create_task(collect(backend.registry, start, count=6))
    registration = await writer.register_shard(S1, TTL)
    await writer.add_symbol("BTC-USD")
    await writer.set_pin("BTC-USD", "s1")
    created = await writer.create_assignment(loading("BTC-USD", "s1"))
    await writer.set_draining("s1", True)
    await registration.close()  # the leased key is deleted
    batches = await asyncio.wait_for(watcher, 10)

    changes = [c for batch in batches for c in batch]
    assert [(c.kind, c.name, c.deleted) for c in changes] == [
        (ChangeKind.SHARD, "s1", False),
        (ChangeKind.SYMBOL, "BTC-USD", False),
        (ChangeKind.PIN, "BTC-USD", False),
        (ChangeKind.ASSIGNMENT, "BTC-USD", False),
        (ChangeKind.DRAIN, "s1", False),
        (ChangeKind.SHARD, "s1", True),
    ]
    revisions = [c.revision for c in changes]
    assert revisions == sorted(revisions) and len(set(revisions)) == 6
    assert all(len({c.revision for c in batch}) == 1 for batch in batches)
    assert changes[0].value == S1 and changes[2].value == "s1"
    assert changes[3].value == created and changes[5].value is None


async def test_watch_replays_history_from_a_past_revision(backend: Backend) -> None:
    start = (await backend.registry.snapshot()).revision + 1
    await backend.registry.add_symbol("A")
    await backend.registry.add_symbol("B")
    batches = await asyncio.wait_for(collect(backend.registry, start, count=2), 10)
    assert [c.name for batch in batches for c in batch] == ["A", "B"]


async def test_an_expired_lease_is_a_watched_delete(backend: Backend) -> None:
    registration = await backend.registry.register_shard(S1, TTL)
    start = (await backend.registry.snapshot()).revision + 1
    watcher = asyncio.create_task(collect(backend.registry, start, count=1))
    registration.stop_refresh()
    [[change]] = await asyncio.wait_for(watcher, EXPIRY_WAIT)
    assert (change.kind, change.name, change.deleted) == (ChangeKind.SHARD, "s1", True)


async def test_watching_from_a_compacted_revision_is_lost(backend: Backend) -> None:
    for symbol in ("A", "B", "C"):
        await backend.registry.add_symbol(symbol)
    current = (await backend.registry.snapshot()).revision
    await backend.compact(current)
    with pytest.raises(WatchLost):
        await asyncio.wait_for(collect(backend.registry, 2, count=1), 10)
    batches = await asyncio.wait_for(collect(backend.registry, current, count=1), 10)
    assert batches[0][0].name == "C"  # from the compaction revision on is still there


# -- malformed values ----------------------------------------------------------------------

MALFORMED = [
    ("assignments/BTC-USD", b"{not json"),
    ("assignments/BTC-USD", b'["s1", "active", 3]'),
    ("assignments/BTC-USD", b'{"shard_id": "s1", "state": "gone", "epoch": 1, "target": ""}'),
    ("assignments/BTC-USD", b'{"shard_id": "s1", "state": "active", "epoch": "1", "target": ""}'),
    ("assignments/BTC-USD", b'{"shard_id": "s1", "state": "active", "epoch": true, "target": ""}'),
    ("assignments/BTC-USD", b'{"shard_id": "s1", "state": "moving", "epoch": 1, "target": ""}'),
    ("assignments/BTC-USD", b'{"shard_id": "s1", "state": "active", "epoch": 99999, "target": ""}'),
    ("shards/s1", b'{"shard_id": "s2", "address": "h:1", "weight": 1}'),
    ("shards/s1", b'{"shard_id": "s1", "address": "h:1", "weight": -1}'),
    ("shards/s1", b'{"shard_id": "s1", "address": "", "weight": 1}'),
    ("pins/BTC-USD", b""),
    ("pins/BTC-USD", b"\xff\xfe"),
    ("drain/s1", b"yes"),
    ("symbols/BTC-USD", b"0"),
    ("controller", b" "),
]


@pytest.mark.parametrize(("key", "raw"), MALFORMED)
async def test_malformed_values_are_flagged_not_decoded(
    backend: Backend, key: str, raw: bytes
) -> None:
    start = (await backend.registry.snapshot()).revision + 1
    revision = await backend.put_raw(key, raw)
    [[change]] = await asyncio.wait_for(collect(backend.registry, start, count=1), 10)
    assert change.malformed and change.value is None and not change.deleted
    assert change.revision == revision
    view = await backend.registry.snapshot()
    assert view.malformed == {key}
    assert not view.shards and not view.pins and not view.assignments and not view.controller
    assert not view.draining and not view.symbols


async def test_get_assignment_of_a_malformed_value_raises(backend: Backend) -> None:
    await backend.put_raw("assignments/BTC-USD", b"{}")
    with pytest.raises(MalformedValue):
        await backend.registry.get_assignment("BTC-USD")


async def test_keys_outside_the_layout_are_ignored(backend: Backend) -> None:
    await backend.put_raw("unknown/thing", b"x")
    await backend.put_raw("shards/a/b", b"x")
    view = await backend.registry.snapshot()
    assert not view.shards and not view.malformed


# -- election --------------------------------------------------------------------------------


async def test_one_candidate_wins_the_next_wins_after_a_resign(backend: Backend) -> None:
    first = await backend.registry.campaign("c1", TTL)
    assert (await backend.registry.snapshot()).controller == "c1"
    other = await backend.client()
    second = asyncio.create_task(other.campaign("c2", TTL))
    done, _ = await asyncio.wait({second}, timeout=1.0)
    assert not done, "a second controller was elected while the first holds the key"
    await first.resign()
    leadership = await asyncio.wait_for(second, 5)
    assert not leadership.lost.is_set()
    assert (await backend.registry.snapshot()).controller == "c2"
    assert not first.lost.is_set()  # resigning is not losing


async def test_a_lost_controller_lease_sets_lost_and_another_wins(backend: Backend) -> None:
    first = await backend.registry.campaign("c1", TTL)
    other = await backend.client()
    second = asyncio.create_task(other.campaign("c2", TTL))
    await backend.expire_controller_lease()
    await asyncio.wait_for(first.lost.wait(), 2 * TTL)
    leadership = await asyncio.wait_for(second, 5)
    assert not leadership.lost.is_set()
    assert (await backend.registry.snapshot()).controller == "c2"
