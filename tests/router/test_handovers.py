"""router/handovers.py: which symbols wait for their old owner's release marker, and what
ends the wait (the marker, the old owner's stream ending, the time bound)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from cluster.model import Assignment, AssignmentState, ClusterView, ShardRecord
from router.handovers import Handovers

BTC, ETH = "BTC-USDT", "ETH-USDT"
ACTIVE, MOVING, LOADING = AssignmentState.ACTIVE, AssignmentState.MOVING, AssignmentState.LOADING


@dataclass
class _Link:  # what Handovers reads of a ShardLink
    shard_id: str
    receiving: bool = True
    streams: int = 1


class _Harness:
    def __init__(self, wait_seconds: float = 30.0) -> None:
        self.links = {name: _Link(name) for name in ("a", "b")}
        self.members = {"a", "b"}
        self.settled = 0
        self.handovers = Handovers(wait_seconds, self._link_of, self._settle)
        self.ended: list[str] = []
        self.handovers.on_end = self.ended.append

    def _link_of(self, shard_id: str) -> Any:
        return self.links.get(shard_id)

    def _settle(self) -> None:
        self.settled += 1

    def view(self, owners: dict[str, tuple[str, AssignmentState]]) -> None:
        assignments = {
            symbol: Assignment(symbol, shard, state, epoch=7)
            for symbol, (shard, state) in owners.items()
        }
        shards = {name: ShardRecord(name, "127.0.0.1:1") for name in self.members}
        self.handovers.observe(ClusterView(shards=shards, assignments=assignments))

    def released(self, shard_id: str, *symbols: str) -> None:
        self.handovers.released(self.links[shard_id], list(symbols))  # type: ignore[arg-type]


async def test_an_owner_change_waits_for_the_old_owners_marker() -> None:
    h = _Harness()
    h.view({BTC: ("a", ACTIVE), ETH: ("a", ACTIVE)})
    assert not h.handovers.waiting(BTC)
    h.view({BTC: ("a", MOVING), ETH: ("a", ACTIVE)})  # same owner: nothing to wait for
    assert not h.handovers.waiting(BTC)
    h.view({BTC: ("b", LOADING), ETH: ("a", ACTIVE)})
    assert h.handovers.waiting(BTC) and not h.handovers.waiting(ETH)
    h.released("b", BTC)  # from the new owner: not the marker awaited
    assert h.handovers.waiting(BTC) and h.settled == 0
    h.released("a", BTC)
    assert not h.handovers.waiting(BTC) and h.settled == 1
    assert h.ended == ["marker"]


async def test_a_marker_that_came_before_the_table_changed_is_not_awaited_again() -> None:
    h = _Harness()
    h.view({BTC: ("a", MOVING)})
    h.released("a", BTC)  # the old owner let go before this router's watch said so
    h.view({BTC: ("b", LOADING)})
    assert not h.handovers.waiting(BTC)
    h.view({BTC: ("b", ACTIVE)})
    h.view({BTC: ("a", LOADING)})  # back to a: b's marker is awaited now
    assert h.handovers.waiting(BTC)
    h.released("b", BTC)
    assert not h.handovers.waiting(BTC)


async def test_the_wait_ends_with_the_old_owners_stream() -> None:
    h = _Harness()
    h.view({BTC: ("a", ACTIVE), ETH: ("a", ACTIVE)})
    h.view({BTC: ("b", ACTIVE), ETH: ("b", ACTIVE)})
    assert h.handovers.waiting(BTC) and h.handovers.waiting(ETH)
    h.links["a"].streams = 2  # broke and reconnected: the old stream's reports are gone
    assert not h.handovers.waiting(BTC)
    await asyncio.sleep(0)
    assert h.settled == 1  # what waited in the buffer is sent now, not at the next change
    h.links["a"].receiving = False
    assert not h.handovers.waiting(ETH)
    await asyncio.sleep(0)
    assert h.settled == 2
    assert h.ended == ["stream", "stream"]


async def test_a_shard_that_left_membership_is_waited_for_while_its_stream_is_open() -> None:
    h = _Harness()
    h.view({BTC: ("a", ACTIVE)})
    h.members.discard("a")  # its lease expired; the link detaches, its stream still open
    h.view({BTC: ("a", ACTIVE)})
    h.view({BTC: ("b", LOADING)})
    assert h.handovers.waiting(BTC)
    h.released("a", BTC)  # what it owed, then the marker
    assert not h.handovers.waiting(BTC)


async def test_no_wait_when_the_old_owner_is_unreachable_or_unknown() -> None:
    h = _Harness()
    h.links["a"].receiving = False
    h.view({BTC: ("a", ACTIVE), ETH: ("c", ACTIVE)})  # no link to c at all
    h.view({BTC: ("b", ACTIVE), ETH: ("b", ACTIVE)})
    assert not h.handovers.waiting(BTC) and not h.handovers.waiting(ETH)


async def test_the_wait_is_bounded_in_time_from_when_the_new_owner_is_active() -> None:
    h = _Harness(wait_seconds=0.05)
    h.view({BTC: ("a", ACTIVE)})
    h.view({BTC: ("b", LOADING)})
    await asyncio.sleep(0.2)  # the new owner loading: its load does not use up the wait
    assert h.handovers.waiting(BTC)
    h.view({BTC: ("b", ACTIVE)})
    assert h.handovers.waiting(BTC)
    await asyncio.sleep(0.2)
    assert not h.handovers.waiting(BTC) and h.settled == 1  # the buffers were told to drain
    assert h.ended == ["timeout"]


async def test_a_symbol_removed_from_the_table_is_forgotten() -> None:
    h = _Harness()
    h.view({BTC: ("a", ACTIVE)})
    h.view({})
    h.view({BTC: ("b", ACTIVE)})  # first seen again on b: no previous owner to wait for
    assert not h.handovers.waiting(BTC)
