"""Market-data updates encoded straight to bytes (compiled: tools/hot_path.py).

A shard publishes, per symbol and round, a 50+50-level snapshot, a delta and the trades
(shard/publisher_messages.py). Built as message objects first, a round's encoding cost
~200 us per symbol; written as bytes, ~125 us (decision 0012). These functions write
the bytes the generated classes would (fields in number order, proto3 defaults omitted), so
every reader parses them as before; ``tests/marketdata/test_wire.py`` checks each against
the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

from api.protowire import bytes_field, int_field, varint

Level = tuple[int, int, int]  # (price, quantity, order_count)

# Field keys (number << 3 | wire type) of market_data.proto and gateway.proto.
_UPDATE_SYMBOL = b"\x0a"  # MarketDataUpdate.symbol = 1
_UPDATE_SEQ = b"\x10"  # MarketDataUpdate.seq = 2
_UPDATE_SNAPSHOT = b"\x1a"  # MarketDataUpdate.snapshot = 3
_UPDATE_DELTA = b"\x22"  # MarketDataUpdate.delta = 4
_UPDATE_TRADES = b"\x2a"  # MarketDataUpdate.trades = 5
_SNAPSHOT_BIDS = b"\x0a"  # OrderBookSnapshot.bids = 1
_SNAPSHOT_ASKS = b"\x12"  # OrderBookSnapshot.asks = 2
_SNAPSHOT_STATUS = b"\x18"  # OrderBookSnapshot.symbol_status = 3
_SNAPSHOT_AS_OF = b"\x20"  # OrderBookSnapshot.as_of_unix_nanos = 4
_DELTA_PREV_SEQ = b"\x08"  # OrderBookDelta.prev_seq = 1
_DELTA_BIDS = b"\x12"  # OrderBookDelta.bids = 2
_DELTA_ASKS = b"\x1a"  # OrderBookDelta.asks = 3
_PRICE = b"\x08"  # PriceLevel.price = 1, PublicTrade.price = 1
_QUANTITY = b"\x10"  # PriceLevel.quantity = 2, PublicTrade.quantity = 2
_COUNT = b"\x18"  # PriceLevel.order_count = 3
_TAKER_SIDE = b"\x18"  # PublicTrade.taker_side = 3
_MATCH_INDEX = b"\x20"  # PublicTrade.match_index = 4
_TRADE_TIME = b"\x28"  # PublicTrade.time_unix_nanos = 5
_TRADES = b"\x0a"  # PublicTrades.trades = 1
_RESPONSE_UPDATES = b"\x0a"  # StreamMarketDataResponse.updates = 1


def diff_side(old: Sequence[Level], new: Sequence[Level]) -> list[Level]:
    """Levels to send so that ``old`` becomes ``new``: changed or new levels with their new
    totals, removed ones with quantity 0 (order by price, the order of ``new`` then removals)."""
    before: dict[int, tuple[int, int]] = {}
    for price, quantity, count in old:
        before[price] = (quantity, count)
    out: list[Level] = []
    after: set[int] = set()
    for level in new:
        price, quantity, count = level
        after.add(price)
        if before.get(price) != (quantity, count):
            out.append(level)
    for price, _, _ in old:
        if price not in after:
            out.append((price, 0, 0))
    return out


def levels(tag: bytes, side: Sequence[Level]) -> bytes:
    """Each level as one ``tag`` entry of a repeated PriceLevel field."""
    parts: list[bytes] = []
    for price, quantity, count in side:
        body = int_field(_PRICE, price) + int_field(_QUANTITY, quantity) + int_field(_COUNT, count)
        parts.append(tag)  # three appends: no bytes object for the entry as a whole
        parts.append(varint(len(body)))
        parts.append(body)
    return b"".join(parts)


def snapshot_update(
    symbol: str,
    seq: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
    status: int,
    as_of_unix_nanos: int,
) -> bytes:
    """A MarketDataUpdate holding the snapshot of ``bids`` and ``asks`` (best first)."""
    snapshot = (
        levels(_SNAPSHOT_BIDS, bids)
        + levels(_SNAPSHOT_ASKS, asks)
        + int_field(_SNAPSHOT_STATUS, status)
        + int_field(_SNAPSHOT_AS_OF, as_of_unix_nanos)
    )
    return _update(symbol, seq, _UPDATE_SNAPSHOT, snapshot)


def delta_update(
    symbol: str,
    seq: int,
    prev_seq: int,
    old: tuple[Sequence[Level], Sequence[Level]],
    new: tuple[Sequence[Level], Sequence[Level]],
) -> bytes:
    """A MarketDataUpdate holding the delta that turns (bids, asks) ``old`` at ``prev_seq``
    into ``new`` at ``seq`` (set even when no level changed: it still chains)."""
    delta = (
        int_field(_DELTA_PREV_SEQ, prev_seq)
        + levels(_DELTA_BIDS, diff_side(old[0], new[0]))
        + levels(_DELTA_ASKS, diff_side(old[1], new[1]))
    )
    return _update(symbol, seq, _UPDATE_DELTA, delta)


def trades_update(
    symbol: str, seq: int, taker_side: int, fills: Sequence[tuple[int, int]], time_unix_nanos: int
) -> bytes:
    """A MarketDataUpdate holding the public trades of one command: ``fills`` are its
    (price, quantity) in execution order, numbered by ``match_index``."""
    parts: list[bytes] = []
    side = int_field(_TAKER_SIDE, taker_side)
    time = int_field(_TRADE_TIME, time_unix_nanos)
    for index, (price, quantity) in enumerate(fills):
        body = (
            int_field(_PRICE, price)
            + int_field(_QUANTITY, quantity)
            + side
            + int_field(_MATCH_INDEX, index)
            + time
        )
        parts.append(_TRADES + varint(len(body)) + body)
    return _update(symbol, seq, _UPDATE_TRADES, b"".join(parts))


def response_entry(update: bytes) -> bytes:
    """An encoded MarketDataUpdate as one ``updates`` entry of a StreamMarketDataResponse:
    a response is its entries joined (routers queue entries per subscriber)."""
    return bytes_field(_RESPONSE_UPDATES, update)


def response(updates: Sequence[bytes]) -> bytes:
    """A StreamMarketDataResponse of encoded MarketDataUpdates."""
    return b"".join([response_entry(update) for update in updates])


def _update(symbol: str, seq: int, tag: bytes, body: bytes) -> bytes:
    name = symbol.encode()
    head = bytes_field(_UPDATE_SYMBOL, name) if name else b""
    return head + int_field(_UPDATE_SEQ, seq) + bytes_field(tag, body)
