"""Client order id idempotency: a retry with the same content gets the original result.

The durable guard is the UNIQUE (account, client_order_id) index in Postgres; this index
keeps recent placements in memory (bounded, least recently used out) so that retries are
answered without a query, and so that a retry racing its original inside the pipeline sees
it before it commits. Misses are looked up in Postgres once per batch.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from shard.engine import PlaceOrder, Report

Key = tuple[str, str]  # (account, client_order_id)


class Fingerprint(NamedTuple):
    symbol: str
    side: int
    order_type: int
    time_in_force: int
    price: int
    quantity: int
    post_only: bool
    stp: int


def fingerprint(cmd: PlaceOrder) -> Fingerprint:
    return Fingerprint(
        cmd.symbol,
        int(cmd.side),
        int(cmd.order_type),
        int(cmd.time_in_force),
        cmd.price,
        cmd.quantity,
        bool(cmd.post_only),
        int(cmd.stp),
    )


class Placement(NamedTuple):
    fingerprint: Fingerprint
    report: Report


class Replay(NamedTuple):
    """The outcome of a retry: the original placement's report, not a new execution."""

    report: Report


class IdempotencyIndex:
    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[Key, Placement] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Placement | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def add(self, key: Key, placement: Placement) -> None:
        self._entries[key] = placement
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def discard(self, key: Key) -> None:
        self._entries.pop(key, None)
