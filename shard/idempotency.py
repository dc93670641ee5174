"""Client order id idempotency: a retry with the same content gets the original result.

The durable guard is the claim of each id in Postgres (persistence.claims), made once per
batch for the ids missing here, before the batch is matched; this index keeps recent
placements in memory (bounded, oldest out) so that retries are answered without a query,
and so that a retry racing its original inside the pipeline sees it before it commits.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from persistence.claims import Key  # (account, client_order_id), as claimed in Postgres
from shard.engine import PlaceOrder, Report


class Fingerprint(NamedTuple):
    """What a retry must repeat exactly: a PlaceOrder without its account and client order
    id, in the command's own field order (so ``fingerprint`` is one slice)."""

    symbol: str
    side: int
    quantity: int
    price: int
    order_type: int
    time_in_force: int
    post_only: bool
    stp: int


def fingerprint(cmd: PlaceOrder) -> tuple[object, ...]:
    """Compares equal to the Fingerprint of the same content (enum fields are int-valued)."""
    return cmd[:1] + cmd[2:9]


class Placement(NamedTuple):
    fingerprint: tuple[object, ...]  # a Fingerprint, or a command's fingerprint()
    report: Report


class Replay(NamedTuple):
    """The outcome of a retry: the original placement's report, not a new execution."""

    report: Report


class IdempotencyIndex:
    """Recent placements by key, the oldest dropped past ``capacity`` (insertion order:
    retries come soon after their original, so recency of use adds nothing)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[Key, Placement] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Placement | None:
        return self._entries.get(key)

    def add(self, key: Key, placement: Placement) -> None:
        entries = self._entries
        entries[key] = placement
        if len(entries) > self._capacity:
            entries.popitem(last=False)

    def discard(self, key: Key) -> None:
        self._entries.pop(key, None)
