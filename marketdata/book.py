"""L2 books as the market-data format sees them: diffs (publisher side) and a book that
applies snapshots and deltas (subscriber side: routers, tests, clients)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from marketdata.wire import diff_side
from matching.v1 import market_data_pb2

Levels = Sequence[tuple[int, int, int]]  # (price, quantity, order_count), best first


def add_levels(
    out: RepeatedCompositeFieldContainer[market_data_pb2.PriceLevel],
    levels: Iterable[tuple[int, int, int]],
) -> None:
    """Append ``levels`` to a message's repeated field in place: no PriceLevel is built and
    then copied (a 50+50-level snapshot: 51 us against 121 us with a list of PriceLevel
    messages given to the constructor)."""
    add = out.add
    for price, quantity, count in levels:
        level = add()
        level.price = price
        level.quantity = quantity
        level.order_count = count


def snapshot_update(
    symbol: str, seq: int, bids: Levels, asks: Levels, status: int, as_of_unix_nanos: int
) -> market_data_pb2.MarketDataUpdate:
    """A snapshot update of ``bids`` and ``asks`` (best first), built in place."""
    update = market_data_pb2.MarketDataUpdate(symbol=symbol, seq=seq)
    snapshot = update.snapshot
    snapshot.SetInParent()  # an empty book at seq 0 is still a snapshot
    add_levels(snapshot.bids, bids)
    add_levels(snapshot.asks, asks)
    snapshot.symbol_status = status  # type: ignore[assignment]
    snapshot.as_of_unix_nanos = as_of_unix_nanos
    return update


def delta_update(
    symbol: str, seq: int, prev_seq: int, old: tuple[Levels, Levels], new: tuple[Levels, Levels]
) -> market_data_pb2.MarketDataUpdate:
    """The delta that turns the (bids, asks) ``old`` at ``prev_seq`` into ``new`` at ``seq``."""
    update = market_data_pb2.MarketDataUpdate(symbol=symbol, seq=seq)
    delta = update.delta
    delta.SetInParent()  # a delta that changes no level still chains
    delta.prev_seq = prev_seq
    add_levels(delta.bids, diff_side(old[0], new[0]))
    add_levels(delta.asks, diff_side(old[1], new[1]))
    return update


class GapError(Exception):
    """A delta does not follow the book held (prev_seq != seq): re-snapshot."""


@dataclass
class L2Book:
    """A subscriber's copy of one symbol's top-``depth`` book, kept by snapshot + deltas."""

    depth: int
    seq: int = -1  # -1: no snapshot yet
    bids: dict[int, tuple[int, int]] = field(default_factory=dict)
    asks: dict[int, tuple[int, int]] = field(default_factory=dict)

    def apply_snapshot(self, seq: int, snapshot: market_data_pb2.OrderBookSnapshot) -> None:
        self.seq = seq
        self.bids = {lv.price: (lv.quantity, lv.order_count) for lv in snapshot.bids}
        self.asks = {lv.price: (lv.quantity, lv.order_count) for lv in snapshot.asks}

    def apply_delta(self, seq: int, delta: market_data_pb2.OrderBookDelta) -> None:
        if self.seq < 0 or delta.prev_seq != self.seq:
            raise GapError(f"delta {delta.prev_seq}->{seq} does not follow seq {self.seq}")
        for side, levels in ((self.bids, delta.bids), (self.asks, delta.asks)):
            for lv in levels:
                if lv.quantity:
                    side[lv.price] = (lv.quantity, lv.order_count)
                else:
                    side.pop(lv.price, None)
        self.seq = seq

    def top(self) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bids best first, asks best first), at most ``depth`` each."""
        bids = sorted(self.bids.items(), reverse=True)[: self.depth]
        asks = sorted(self.asks.items())[: self.depth]
        return [(p, q, n) for p, (q, n) in bids], [(p, q, n) for p, (q, n) in asks]
